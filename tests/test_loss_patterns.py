"""loss_patterns (MPO): plane parametrisation, objective, fitting, evaluation, summaries and figures."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from lossatlas.analysis import loss_patterns as lp_analysis
from lossatlas.analysis import loss_patterns_mpo as lp

torch.set_num_threads(1)


def _mlp(generator: torch.Generator | None = None, d_in: int = 2, hidden: int = 8, classes: int = 3):
    model = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    if generator is not None:
        for m in model:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight, generator=generator)
                torch.nn.init.zeros_(m.bias)
    return model


def _plane(seed: int = 0, scale: float = 0.1, **kw):
    return lp.make_plane(lambda g: _mlp(g, **kw), scale, seed)


# ------------------------------------------------------------------------------------------------ the plane


def test_gram_schmidt_gives_orthogonal_equal_norm_direction():
    g = torch.Generator().manual_seed(0)
    w_up, phi = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    phi = phi + 3 * w_up  # strongly correlated, so the projection matters
    w_right = lp.gram_schmidt_equal_norm(phi, w_up)
    assert abs(float(w_right @ w_up)) < 1e-10
    assert float(w_right.norm()) == pytest.approx(float(w_up.norm()), rel=1e-12)
    # Eq. 2 by hand: the component of φ orthogonal to w_up, rescaled to ‖w_up‖.
    w_hat = phi - (phi @ w_up) / (w_up @ w_up) * w_up
    torch.testing.assert_close(w_right, w_hat / w_hat.norm() * w_up.norm())


def test_plane_weights_follow_eq1_and_gradients_reach_all_four_groups():
    plane = _plane()
    coords = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-3.0, 4.0]])
    w = plane.weights(coords)
    w_right = plane.w_right()
    expected = plane.w_origin + plane.scale * (2.0 * w_right - 1.0 * plane.w_up)
    torch.testing.assert_close(w[1], expected)
    torch.testing.assert_close(w[0], plane.w_origin.detach())
    assert abs(float(w_right.detach() @ plane.w_up.detach())) < 1e-4 * float(plane.w_up.detach().norm()) ** 2
    assert float(w_right.norm()) == pytest.approx(float(plane.w_up.norm()), rel=1e-5)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    plane.logits(coords, x).square().sum().backward()
    for name in ("w_origin", "w_up", "phi_right", "scale"):
        grad = getattr(plane, name).grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_vectorised_points_equal_one_network_per_point():
    plane = _plane(seed=3)
    coords = torch.from_numpy(lp.cell_coordinates(3, 4))
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = plane.logits(coords, x)
        weights = plane.weights(coords)
    assert logits.shape == (12, 7, 3)
    for k in (0, 5, 11):
        net = _mlp()
        torch.nn.utils.vector_to_parameters(weights[k], net.parameters())
        torch.testing.assert_close(logits[k], net(x))


@pytest.mark.parametrize("grid", [2, 20])
def test_optimiser_holds_3n_plus_1_numbers_whatever_k(grid):
    plane = _plane()
    n = plane.n_weights
    assert n == sum(p.numel() for p in _mlp().parameters())
    optimizer = torch.optim.Adam(plane.parameters(), lr=1e-3)
    coords = torch.from_numpy(lp.cell_coordinates(grid, grid))  # K = grid² points
    plane.logits(coords, torch.ones(4, 2)).mean().backward()
    optimizer.step()
    trainable = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    moments = sum(state["exp_avg"].numel() for state in optimizer.state.values())
    assert trainable == moments == 3 * n + 1


def test_bn_uses_batch_statistics_on_the_plane():
    def factory(generator):
        model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                                    torch.nn.Linear(4, 2))
        torch.nn.init.normal_(model[1].weight, generator=generator)
        return model

    plane = lp.make_plane(factory, 0.1, 0)
    assert plane.template.training is False  # eval mode, yet BN normalises with the batch's statistics
    coords = torch.zeros(1, 2)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = plane.logits(coords, x)[0]
        shifted = plane.logits(coords, x + 5.0)[0]  # a constant shift is removed by batch normalisation
    torch.testing.assert_close(full, shifted, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- objective


def test_objective_clamps_white_cells_at_threshold():
    ce_black = torch.tensor([1.0, 3.0], requires_grad=True)
    ce_white = torch.tensor([2.0, 4.0], requires_grad=True)
    loss = lp.mpo_objective(ce_black, ce_white, 2.5)
    assert float(loss) == pytest.approx((1.0 + 3.0) / 2 - (2.0 + 2.5) / 2)
    loss.backward()
    torch.testing.assert_close(ce_black.grad, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(ce_white.grad, torch.tensor([-0.5, 0.0]))  # above the clamp: no gradient
    terms = lp.mpo_cell_terms(torch.tensor([1.0, 3.0, 2.0, 4.0]), torch.tensor([True, True, False, False]), 2, 2,
                              2.5)
    assert float(terms.sum()) == pytest.approx(float(loss))  # per-cell shares add up to eq. 3
    empty = torch.zeros(0)
    assert float(lp.mpo_objective(torch.tensor([2.0]), empty, 2.5)) == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------- patterns


def test_trainable_cells_skip_cells_surrounded_by_their_own_colour():
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:4, 1:4] = True  # a 3×3 black square in a white 5×5 grid
    usable = lp.trainable_cells(mask)
    assert not usable[2, 2]  # centre: all 8 neighbours black
    assert usable[1, 1] and usable[0, 0] and usable[0, 2]  # touch the other colour (diagonally for (0, 0))
    assert usable.sum() == 8 + 16  # the black ring of 8 and all 16 white cells touch the other colour
    one_colour = np.ones((4, 4), dtype=bool)
    assert lp.trainable_cells(one_colour).all()


def test_pictures_masks_and_coordinates():
    for name in lp.PICTURES + ("text:A",):
        picture = lp.draw_picture(name, 64)
        assert picture.shape == (64, 64) and picture.dtype == bool and 0 < picture.mean() < 1, name
    checker = lp.downsample_picture(lp.draw_picture("checker", 64), 4)
    assert checker.tolist() == [[False, True, False, True], [True, False, True, False]] * 2
    with pytest.raises(ValueError, match="unknown picture"):
        lp.draw_picture("icon_from_the_web")
    masks = np.stack([lp.random_mask(30, 0.3, s) for s in range(20)])
    assert masks.mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(lp.random_mask(10, 0.5, 7), lp.random_mask(10, 0.5, 7))
    coords = lp.cell_coordinates(3, 4)
    assert coords[0].tolist() == [-2.0, 1.0] and coords[-1].tolist() == [1.0, -1.0]  # (α right, β up)


# ---------------------------------------------------------------------------------------- fitting a plane


def _blobs(n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centres[y] + 0.4 * torch.randn(n, 2, generator=g), y


def test_trained_plane_has_lower_loss_on_black_than_white_cells():
    x, y = _blobs()
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True  # left half black
    plane = _plane(seed=1)
    settings = lp.FitSettings(iterations=150, lr=0.01, batch_size=64, cells_per_update=4)
    history = lp.fit_plane(plane, x, y, mask, settings, seed=0)
    assert history["objective"][-1] < history["objective"][0]
    ce, acc = lp.evaluate_plane(plane, torch.from_numpy(lp.cell_coordinates(4, 4)), x, y, batch_size=64)
    black, white = mask.reshape(-1), ~mask.reshape(-1)
    assert ce[black].mean() < 0.5 * ce[white].mean()
    assert acc[black].mean() > acc[white].mean() + 0.3


def test_fitting_planes_together_equals_fitting_each_alone():
    x, y = _blobs(seed=1)
    masks = [lp.random_mask(3, 0.5, 1), lp.random_mask(3, 0.3, 2)]
    settings = lp.FitSettings(iterations=5, lr=0.01, batch_size=32, cells_per_update=2)
    together = [_plane(seed=s) for s in (0, 1)]
    lp.fit_planes(together, x, y, masks, settings, seed=4)
    alone = _plane(seed=0)
    lp.fit_plane(alone, x, y, masks[0], settings, seed=4)
    torch.testing.assert_close(alone.w_origin, together[0].w_origin)
    torch.testing.assert_close(alone.scale, together[0].scale)
    # Accumulating gradients over passes of 3 cells is exact (eq. 3 is a sum of per-cell terms).
    chunked = [_plane(seed=s) for s in (0, 1)]
    lp.fit_planes(chunked, x, y, masks, lp.FitSettings(**{**settings.__dict__, "cells_per_pass": 3}), seed=4)
    for a, b in zip(chunked, together, strict=True):
        torch.testing.assert_close(a.phi_right, b.phi_right)


# -------------------------------------------------------------------------------------- summaries, figures


def _write_bn_run(path, fills, black, white, seed, size=3):
    masks = np.stack([lp.random_mask(size, p, lp.mask_seed(p, seed)) for p in fills])
    with h5py.File(path, "w") as f:
        f.attrs["spec"] = json.dumps({"seed": seed, "architecture": {"name": "a"}})
        f["fill_probabilities"] = np.asarray(fills)
        f["masks"] = masks
        f["test_ce"] = np.full(masks.shape, 1.5) + masks
        f["test_acc"] = np.full(masks.shape, 0.5)
        f["acc_black"] = np.asarray(black)
        f["acc_white"] = np.asarray(white)


def test_bn_summary_means_and_stds_by_hand(tmp_path):
    fills = [0.1, 0.5]
    paths = {}
    for variant, rows in (("without_bn", [([0.9, 0.8], [0.2, 0.4]), ([0.7, 0.8], [0.2, 0.2])]),
                          ("with_bn", [([0.9, 0.9], [0.5, 0.6]), ([0.9, 0.9], [0.7, 0.6])])):
        paths[variant] = []
        for seed, (black, white) in enumerate(rows):
            path = tmp_path / f"{variant}_{seed}.h5"
            _write_bn_run(path, fills, black, white, seed)
            paths[variant].append(str(path))
    s = lp_analysis.summarize_bn_experiment(paths["without_bn"], paths["with_bn"], str(tmp_path / "s.json"),
                                   str(tmp_path / "s.csv"))
    # without BN, p = 0.1: Δ = 0.7 and 0.5 → mean 0.6, sample std √0.02.
    assert s["without_bn"]["delta_mean"][0] == pytest.approx(0.6)
    assert s["without_bn"]["delta_std"][0] == pytest.approx(np.sqrt(0.02))
    assert s["with_bn"]["acc_white_mean"] == pytest.approx([0.6, 0.6])
    assert s["delta_with_minus_without"] == pytest.approx([0.3 - 0.6, 0.3 - 0.5])
    assert s["bn_delta_smaller_fraction"] == 1.0
    assert json.loads((tmp_path / "s.json").read_text())["fill_probabilities"] == fills
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 2 * len(fills)


def _write_search(path, picture="ring", grid=6):
    mask = lp.downsample_picture(lp.draw_picture(picture, 64), grid)
    rng = np.random.default_rng(0)
    summary = {"test": {"acc_black": 0.9, "acc_white": 0.2, "acc_gap": 0.7, "ce_black": 0.3, "ce_white": 3.0},
               "train": {"acc_black": 0.9, "acc_white": 0.2, "acc_gap": 0.7, "ce_black": 0.3, "ce_white": 3.0},
               "train_test_log_ce_pearson": 0.95, "search": picture, "final_scale": 0.1}
    with h5py.File(path, "w") as f:
        f.attrs["spec"] = json.dumps({"picture": picture, "grid": grid, "dataset": "digits",
                                      "architecture": {"name": "lp_mlp"}})
        f.attrs["summary"] = json.dumps(summary)
        f["picture"] = lp.draw_picture(picture, 64)
        f["mask"] = mask
        for split in ("train", "test"):
            f[f"{split}/ce"] = np.where(mask, 0.3, 3.0) * rng.uniform(0.8, 1.2, mask.shape)
            f[f"{split}/acc"] = np.where(mask, 0.9, 0.2)
        f["log/iteration"] = np.arange(3)
        f["log/objective"] = np.zeros(3)


def test_analysis_writes_every_figures_data_and_every_figure_renders(tmp_path):
    from lossatlas.figure_data import read_figure_data
    from lossatlas.figures import loss_patterns as figs

    searches = {}
    for name, picture in (("s1", "ring"), ("s2", "cross")):
        searches[name] = str(tmp_path / f"{name}.h5")
        _write_search(searches[name], picture)
    runs = {}
    for variant in ("without_bn", "with_bn"):
        runs[variant] = [str(tmp_path / f"{variant}.h5")]
        _write_bn_run(runs[variant][0], [0.1, 0.5], [0.9, 0.8], [0.3, 0.4], seed=0)
    figures = {"fig01a": "s1", "fig01b": "s2", "fig02": "s1", "fig05": ["s1", "s2"], "fig06": ["s2"]}
    data = {name: str(tmp_path / f"{name}.h5") for name in figs.FIGURES}
    lp_analysis.loss_patterns_analysis(figures, searches, runs, 0.5, bn_json=str(tmp_path / "bn.json"),
                                       bn_csv=str(tmp_path / "bn.csv"), searches_json=str(tmp_path / "by.json"),
                                       figure_data=data)
    fig03 = read_figure_data(data["fig03b_without_bn"])
    assert fig03["fill_probability"] == 0.5 and fig03["without_bn"]["acc_black"] == pytest.approx(0.8)
    fig05 = read_figure_data(data["fig05_more_test_loss_surfaces"])["searches"]
    assert [fig05[k]["spec"]["picture"] for k in ("0", "1")] == ["ring", "cross"]
    assert read_figure_data(data["fig01b_test_loss_surface"])["searches"]["0"]["spec"]["picture"] == "cross"
    assert list(lp_analysis.FIGURE_DATA) == list(figs.FIGURES)  # one data function per figure file
    for name in figs.FIGURES:
        out = tmp_path / f"{name}.png"
        figs.draw(name, {"data": data[name]}, str(out))
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no run at fill probability"):
        lp_analysis.loss_patterns_analysis(figures, searches, runs, 0.3, bn_json=str(tmp_path / "bn.json"),
                                           bn_csv=str(tmp_path / "bn.csv"),
                                           searches_json=str(tmp_path / "by.json"), figure_data=data)


# ------------------------------------------------------------------------------------ with the real models


def test_plane_over_mpo_cnn_with_offset_bn():
    plane = lp.plane_for({"name": "t", "model": "mpo_cnn", "channels": [2, 3], "batchnorm": True,
                          "bn_scale_offset": 0.5, "pool": 1, "hidden": 4}, (1, 8, 8), 10, 0.1, 0, "cpu")
    gammas = [name for name in plane.param_names if name.endswith(".weight") and "1." in name[:3]]
    assert gammas, plane.param_names
    offsets = np.cumsum([0] + plane.param_numels)
    i = plane.param_names.index(gammas[0])
    gamma_up = plane.w_up.detach()[offsets[i] : offsets[i + 1]]
    assert float(gamma_up.abs().max()) <= 0.5  # App. C: scale parameters centred at zero
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    logits = plane.logits(torch.from_numpy(lp.cell_coordinates(2, 2)), x)
    assert logits.shape == (4, 6, 10) and torch.isfinite(logits).all()


def test_uint8_images_are_scaled_and_standardised():
    from types import SimpleNamespace

    x = np.array([[[[0, 255]]], [[[51, 102]]]], dtype=np.uint8)  # (2, 1, 1, 2)
    data = SimpleNamespace(task="classification", path="fake.h5", x_train=x, y_train=np.array([0, 1]),
                           x_test=x, y_test=np.array([1, 0]), attrs={"channel_mean": [0.5], "channel_std": [0.25]})
    xt, yt = lp.split_tensors(data, "train", "cpu")
    torch.testing.assert_close(xt[0, 0, 0], torch.tensor([-2.0, 2.0]))  # (0 − 0.5)/0.25, (1 − 0.5)/0.25
    assert yt.dtype == torch.int64
    xs, ys = lp.split_tensors(data, "test", "cpu", max_examples=1)
    assert xs.shape == (1, 1, 1, 2) and len(ys) == 1


def test_search_and_bn_jobs_end_to_end(tmp_path):
    from lossatlas.datasets import build_source_dataset

    data = str(tmp_path / "blobs.h5")
    build_source_dataset("blobs", {"source": "gaussian_mixture", "n_samples": 300, "n_features": 4,
                                   "n_classes": 3, "class_sep": 2.0, "cluster_std": 0.5, "test_fraction": 0.3,
                                   "seed": 0}, data)
    fit = {"iterations": 20, "lr": 0.01, "batch_size": 32, "cells_per_update": 3}
    arch = {"name": "m", "model": "mlp", "hidden": [8]}
    spec = {"search": "s", "picture": "cross", "picture_size": 32, "grid": 5, "dataset": "blobs",
            "architecture": arch, "fit": fit, "eval_examples": 50, "seed": 0, "device": "cpu"}
    summary = lp.run_search(spec, data, str(tmp_path / "s.h5"), str(tmp_path / "s.json"))
    assert summary["trainable_numbers"] == 3 * summary["n_weights"] + 1
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["test/ce"].shape == f["train/acc"].shape == f["mask"].shape == (5, 5)
        assert len(f["log/objective"]) == 3  # iterations 0, 10 and the last
    paths = {}
    for variant, bn in (("without_bn", False), ("with_bn", True)):
        bn_spec = {"variant": variant, "architecture": {**arch, "batchnorm": bn}, "dataset": "blobs",
                   "mask_size": 4, "fill_probabilities": [0.3, 0.5], "seed": 0, "fit": fit,
                   "eval_examples": None, "device": "cpu"}
        paths[variant] = str(tmp_path / f"{variant}.h5")
        lp.run_bn_experiment(bn_spec, data, paths[variant])
    with h5py.File(paths["without_bn"]) as f, h5py.File(paths["with_bn"]) as g:
        np.testing.assert_array_equal(f["masks"][()], g["masks"][()])  # same random masks for both models
        assert f["test_acc"].shape == (2, 4, 4) and f["acc_black"].shape == (2,)
    s = lp_analysis.summarize_bn_experiment([paths["without_bn"]], [paths["with_bn"]], str(tmp_path / "b.json"),
                                   str(tmp_path / "b.csv"))
    assert s["fill_probabilities"] == [0.3, 0.5] and np.isnan(s["with_bn"]["delta_std"]).all()  # one run
