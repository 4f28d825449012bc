"""lossatlas.image_augment: the released CIFAR-10 pattern search's training augmentation (pad-crop, flip, erasing)."""

from __future__ import annotations

import math

import pytest
import torch

from lossatlas import image_augment as aug

torch.set_num_threads(1)

OFFICIAL = {"pad_crop": 4, "hflip": 0.5, "random_erasing": {"p": 0.5, "scale": [0.25, 0.25], "ratio": [1.0, 1.0]}}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 16, c: int = 3, h: int = 12, w: int = 10) -> torch.Tensor:
    """Distinct positive values everywhere, so any shift, mirror or fill shows."""
    return torch.arange(1, b * c * h * w + 1, dtype=torch.float32).reshape(b, c, h, w)


def test_pad_crop_shifts_content_within_the_padding_and_fills_the_border():
    x, pad = _images(), 3
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = aug.pad_crop(x, pad, _gen(), fill)
    assert out.shape == x.shape
    shifted = 0
    for b in range(len(x)):
        padded = fill.view(-1, 1, 1).expand(3, 12 + 2 * pad, 10 + 2 * pad).clone()
        padded[:, pad:pad + 12, pad:pad + 10] = x[b]
        windows = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(padded[:, dy:dy + 12, dx:dx + 10], out[b])]
        assert len(windows) == 1  # each output is one window of the padded image
        shifted += windows[0] != (pad, pad)
    assert shifted > len(x) // 2  # the option is not ignored: most images move
    assert (out == fill.view(1, -1, 1, 1)).any()  # border pixels carry the fill value, channel by channel
    assert torch.equal(aug.pad_crop(x, 0, _gen(), fill), x)


def test_hflip_mirrors_with_the_stated_probability():
    x = _images(b=200)
    assert torch.equal(aug.hflip(x, 1.0, _gen()), x.flip(-1))
    assert torch.equal(aug.hflip(x, 0.0, _gen()), x)
    out = aug.hflip(x, 0.5, _gen())
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert (flipped ^ kept).all()  # each image is either mirrored or left alone
    assert 70 < int(flipped.sum()) < 130


def test_random_erasing_official_setting_fills_a_16_by_16_square():
    x = torch.randn(64, 3, 32, 32, generator=_gen(5)).abs() + 1.0  # all ≥ 1: the fill (−1) cannot occur by chance
    out = aug.random_erasing(x, 1.0, (0.25, 0.25), (1.0, 1.0), _gen(), fill=-1.0)
    for o, xi in zip(out, x, strict=True):
        erased = (o == -1.0).all(dim=0)
        rows, cols = erased.any(dim=1).nonzero().flatten(), erased.any(dim=0).nonzero().flatten()
        assert len(rows) == len(cols) == 16 and erased.sum() == 256  # one filled 16×16 square: a quarter
        assert rows[-1] - rows[0] == 15 and cols[-1] - cols[0] == 15
        assert torch.equal(o[:, ~erased], xi[:, ~erased])  # the rest untouched
    assert torch.equal(aug.random_erasing(x, 0.0, (0.25, 0.25), (1.0, 1.0), _gen()), x)


def test_random_erasing_boxes_respect_scale_ratio_and_probability():
    h, w, scale, ratio = 40, 40, (0.05, 0.2), (0.5, 2.0)
    boxes = aug.erasing_boxes(400, h, w, 0.5, scale, ratio, _gen(3))
    erased = boxes[:, 2] > 0
    assert 150 < int(erased.sum()) < 250  # p = 0.5
    for top, left, bh, bw in boxes[erased].tolist():
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
        # rounding each side moves the area and ratio a little: allow half a pixel on each side
        assert scale[0] * h * w * 0.8 <= bh * bw <= scale[1] * h * w * 1.2
        assert ratio[0] * 0.8 <= bh / bw <= ratio[1] * 1.25
    sides = boxes[erased][:, 2:].float()
    assert (sides[:, 0] != sides[:, 1]).any()  # aspect ratios vary
    assert not boxes[~erased].any()


def test_same_seed_same_batch_different_seed_different_batch():
    x = _images(b=32, h=16, w=16)
    a = aug.augment_batch(x, OFFICIAL, _gen(7), fill=0.0)
    b = aug.augment_batch(x, OFFICIAL, _gen(7), fill=0.0)
    c = aug.augment_batch(x, OFFICIAL, _gen(8), fill=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    g = _gen(1)
    assert torch.equal(aug.augment_batch(x, None, g), x) and torch.equal(aug.augment_batch(x, {}, g), x)
    assert torch.equal(g.get_state(), _gen(1).get_state())  # nothing drawn when augmentation is off


def test_augment_batch_needs_images_and_known_keys():
    with pytest.raises(ValueError, match="fit.augment"):
        aug.augment_batch(torch.zeros(4, 10), {"hflip": 0.5}, _gen())
    with pytest.raises(ValueError, match="flip"):
        aug.augment_batch(_images(), {"flip": 0.5}, _gen())
    assert aug.augment_errors({"random_erasing": {"p": 0.5, "scale": [0.3, 0.1]}}, "k") != []
    assert aug.augment_errors(OFFICIAL, "k") == []


def test_erasing_follows_torchvision_rule_for_the_square_case():
    """scale (0.25, 0.25), ratio (1, 1): sqrt(0.25·32·32) = 16 per side (the released code's comment says 8×8)."""
    boxes = aug.erasing_boxes(50, 32, 32, 1.0, (0.25, 0.25), (1.0, 1.0), _gen())
    assert (boxes[:, 2] == 16).all() and (boxes[:, 3] == 16).all()
    assert boxes[:, 0].max() <= 16 and boxes[:, 1].max() <= 16 and len(set(boxes[:, 0].tolist())) > 1
    assert math.isclose(16 * 16 / (32 * 32), 0.25)
