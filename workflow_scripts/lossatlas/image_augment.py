"""Training-batch image augmentation for the loss-patterns pattern search (``studies.loss_patterns`` ``fit.augment``).

The released CIFAR-10 pattern search (universome/loss-patterns, src/trainers/mask_trainer.py, ``init_dataloaders``,
dataset ``CIFAR10``) trains on images padded by 4 and randomly cropped back to 32×32, flipped left-right with
probability 0.5, and erased with probability 0.5 in a square of a quarter of the image (``scale (0.25, 0.25)``,
``ratio (1, 1)``: 16×16 on CIFAR-10; the code's comment says 8×8), in that order, before normalisation; the
padding and the erased square are black (pixel value 0). The paper (papers/loss_patterns_mpo.txt) mentions no
augmentation.

These functions are written here for batches of already standardised images ``x`` (B, C, H, W): ``fill`` is the
value a black pixel has after standardisation (per channel, shape (C,), or a scalar), so padding and erasing write
what the released code writes. Every random number comes from the ``torch.Generator`` passed in (drawn on the
CPU, then moved to ``x``'s device), so a fit stays a pure function of its config and seed. Each image draws its
own crop offset, flip and erasing rectangle, as a per-image transform of a data loader does.
"""

from __future__ import annotations

import math
from typing import Any

import torch

AUGMENT_KEYS = ("pad_crop", "hflip", "random_erasing")
# torchvision RandomErasing's defaults, for keys a config leaves out
ERASING_DEFAULTS = {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3)}
ERASING_ATTEMPTS = 10  # torchvision's RandomErasing tries 10 rectangles before giving up on an image


def _fill(x: torch.Tensor, fill) -> torch.Tensor:
    """``fill`` as a (1, C, 1, 1) tensor on x's device and dtype (a scalar fills every channel alike)."""
    f = torch.as_tensor(0.0 if fill is None else fill, dtype=x.dtype, device=x.device)
    return f.reshape(1, -1, 1, 1) if f.ndim else f.reshape(1, 1, 1, 1)


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what}: needs image batches (B, C, H, W), got shape {tuple(x.shape)}")


def pad_crop(x: torch.Tensor, padding: int, generator: torch.Generator, fill=0.0) -> torch.Tensor:
    """Pad each image by ``padding`` pixels of ``fill`` on every side, then crop an H×W window at a uniformly
    drawn offset (0 … 2·padding in each direction, independently per image): the released CIFAR-10 loader's
    ``Pad(padding=4)`` + ``RandomCrop(size=(32, 32))`` (src/trainers/mask_trainer.py). ``padding`` 0 returns x."""
    _check_images(x, "pad_crop")
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = _fill(x, fill).expand(b, c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, :, padding:padding + h, padding:padding + w] = x
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def hflip(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (independently per image): the released loader's
    ``RandomHorizontalFlip(p=0.5)`` (src/trainers/mask_trainer.py). ``p`` 0 returns x."""
    _check_images(x, "hflip")
    if p <= 0:
        return x
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def erasing_boxes(n: int, height: int, width: int, p: float, scale, ratio,
                  generator: torch.Generator) -> torch.Tensor:
    """(n, 4) int64 boxes (top, left, box height, box width) of random erasing; height 0 = image not erased.

    Per image, as torchvision's ``RandomErasing`` (the released loader's ``RandomErasing(p=0.5, scale=(0.25,
    0.25), ratio=(1., 1.))``, src/trainers/mask_trainer.py) draws them: with probability ``p`` up to 10 tries
    of an area fraction ~ U[scale], a log aspect ratio (h/w) ~ U[log ratio], side lengths rounded from
    sqrt(area·ratio) and sqrt(area/ratio); the first box that fits strictly inside the image is placed at a
    uniform position; if none fits the image is left alone."""
    boxes = torch.zeros((n, 4), dtype=torch.int64)
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for i in range(n):
        if float(torch.rand((), generator=generator)) >= p:
            continue
        for _ in range(ERASING_ATTEMPTS):
            u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
            target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
            aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
            bh, bw = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < bh < height and 0 < bw < width:
                top = int(torch.randint(0, height - bh + 1, (), generator=generator))
                left = int(torch.randint(0, width - bw + 1, (), generator=generator))
                boxes[i] = torch.tensor([top, left, bh, bw])
                break
    return boxes


def random_erasing(x: torch.Tensor, p: float, scale, ratio, generator: torch.Generator, fill=0.0) -> torch.Tensor:
    """Set a random rectangle of each image (with probability ``p``) to ``fill`` in every channel; boxes as
    ``erasing_boxes`` draws them (the released loader's ``RandomErasing``, value 0 = a black pixel before
    normalisation: src/trainers/mask_trainer.py)."""
    _check_images(x, "random_erasing")
    if p <= 0:
        return x
    b, _, h, w = x.shape
    boxes = erasing_boxes(b, h, w, p, scale, ratio, generator).to(x.device)
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_rows = (r >= boxes[:, :1]) & (r < boxes[:, :1] + boxes[:, 2:3])  # (B, H)
    in_cols = (c >= boxes[:, 1:2]) & (c < boxes[:, 1:2] + boxes[:, 3:4])  # (B, W)
    inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
    return torch.where(inside, _fill(x, fill), x)


def augment_errors(cfg: Any, where: str) -> list[str]:
    """Problems of one ``fit.augment`` value (the schema checks types; this names unknown keys and bad ranges
    for callers that build settings without it)."""
    if cfg is None:
        return []
    if not isinstance(cfg, dict):
        return [f"{where}: a mapping of {', '.join(AUGMENT_KEYS)} (or null), not {cfg!r}"]
    errs = [f"{where}: unknown key '{k}' (known: {', '.join(AUGMENT_KEYS)})" for k in cfg if k not in AUGMENT_KEYS]
    if int(cfg.get("pad_crop", 0) or 0) < 0:
        errs.append(f"{where}.pad_crop: must be ≥ 0")
    if not 0 <= float(cfg.get("hflip", 0) or 0) <= 1:
        errs.append(f"{where}.hflip: a probability in [0, 1]")
    erase = cfg.get("random_erasing")
    if erase is not None:
        errs += [f"{where}.random_erasing: unknown key '{k}'" for k in erase if k not in ERASING_DEFAULTS]
        for key in ("scale", "ratio"):
            lo, hi = erase.get(key, ERASING_DEFAULTS[key])
            if not 0 < lo <= hi:
                errs.append(f"{where}.random_erasing.{key}: needs 0 < low ≤ high, got [{lo}, {hi}]")
    return errs


def augment_batch(x: torch.Tensor, cfg: dict | None, generator: torch.Generator, fill=0.0) -> torch.Tensor:
    """Apply ``cfg`` (``fit.augment``: pad_crop pixels, hflip probability, random_erasing {p, scale, ratio}) to a
    training batch in the released loader's order: pad-crop, flip, erase. None / {} returns x unchanged (and
    draws nothing from ``generator``)."""
    if not cfg:
        return x
    errs = augment_errors(cfg, "fit.augment")
    if errs:
        raise ValueError("; ".join(errs))
    _check_images(x, "fit.augment")
    x = pad_crop(x, int(cfg.get("pad_crop", 0) or 0), generator, fill)
    x = hflip(x, float(cfg.get("hflip", 0) or 0), generator)
    erase = cfg.get("random_erasing")
    if erase:
        erase = {**ERASING_DEFAULTS, **erase}
        x = random_erasing(x, float(erase["p"]), tuple(erase["scale"]), tuple(erase["ratio"]), generator, fill)
    return x
