"""loss_patterns (MPO): plane parametrisation, objective, fitting, evaluation, summaries and figures."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from lossatlas import loss_patterns_specs as lp_specs
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


def _write_bn_run(path, fills, black, white, seed, size=3, dropped_at=None):
    masks = np.stack([lp.random_mask(size, p, lp.mask_seed(p, seed)) for p in fills])
    with h5py.File(path, "w") as f:
        f.attrs["spec"] = json.dumps({"seed": seed, "architecture": {"name": "a"}})
        if dropped_at is not None:
            f["dropped_at"] = np.asarray(dropped_at)
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
    s = lp_analysis.summarize_bn_experiment({"paper": paths}, str(tmp_path / "s.json"),
                                            str(tmp_path / "s.csv"))["paper"]
    # without BN, p = 0.1: Δ = 0.7 and 0.5 → mean 0.6, sample std √0.02.
    assert s["without_bn"]["delta_mean"][0] == pytest.approx(0.6)
    assert s["without_bn"]["delta_std"][0] == pytest.approx(np.sqrt(0.02))
    assert s["with_bn"]["acc_white_mean"] == pytest.approx([0.6, 0.6])
    assert s["delta_with_minus_without"] == pytest.approx([0.3 - 0.6, 0.3 - 0.5])
    assert s["bn_delta_smaller_fraction"] == 1.0
    assert s["mean_delta_with_minus_without"] == pytest.approx(np.mean([0.3 - 0.6, 0.3 - 0.5]))
    assert s["dropped_runs"] == 0 and s["fits"] == 8
    assert json.loads((tmp_path / "s.json").read_text())["paper"]["fill_probabilities"] == fills
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 2 * len(fills)


def test_bn_summary_leaves_out_and_counts_dropped_runs(tmp_path):
    """A plane the run selection dropped (dropped_at >= 0) enters no mean and is counted; a p whose runs were
    all dropped gives NaN and is left out of the mean Δ_BN − Δ_noBN."""
    fills = [0.1, 0.5]
    paths = {"without_bn": [], "with_bn": []}
    rows = {"without_bn": [([0.9, 0.8], [0.2, 0.4], [-1, -1]), ([0.7, 0.8], [0.2, 0.2], [-1, 40])],
            "with_bn": [([0.9, 0.9], [0.5, 0.6], [-1, 30]), ([0.1, 0.9], [0.9, 0.6], [20, 30])]}
    for variant, runs in rows.items():
        for seed, (black, white, dropped) in enumerate(runs):
            path = tmp_path / f"{variant}_{seed}.h5"
            _write_bn_run(path, fills, black, white, seed, dropped_at=dropped)
            paths[variant].append(str(path))
    s = lp_analysis.summarize_bn_experiment({"paper": paths, "official": paths}, str(tmp_path / "s.json"),
                                            str(tmp_path / "s.csv"))["official"]
    assert s["without_bn"]["kept"] == [2, 1] and s["with_bn"]["dropped"] == [1, 2]
    # with BN at p = 0.1 only seed 0 is kept (Δ 0.4, not the mean with seed 1's −0.8); at p = 0.5 none.
    assert s["with_bn"]["delta_mean"][0] == pytest.approx(0.4) and np.isnan(s["with_bn"]["delta_mean"][1])
    assert np.isnan(s["with_bn"]["delta_std"][0])  # one kept run
    assert s["without_bn"]["delta_mean"] == pytest.approx([0.6, 0.4])
    assert s["dropped_runs"] == 4 and s["fits"] == 8 and s["p_compared"] == 1
    assert s["mean_delta_with_minus_without"] == pytest.approx(0.4 - 0.6)
    csv = (tmp_path / "s.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * 2 * len(fills) and csv[-1].startswith("official,0.5,with_bn,2,0,")


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
    runs = {"paper": {}, "official": {}}
    for variant in ("without_bn", "with_bn"):
        runs["paper"][variant] = [str(tmp_path / f"{variant}.h5")]
        _write_bn_run(runs["paper"][variant][0], [0.1, 0.5], [0.9, 0.8], [0.3, 0.4], seed=0)
        runs["official"][variant] = [str(tmp_path / f"{variant}_official.h5")]
        _write_bn_run(runs["official"][variant][0], [0.1, 0.5], [0.5, 0.8], [0.3, 0.4], seed=0,
                      dropped_at=[-1, 10])
    figures = {"fig01a": "s1", "fig01b": "s2", "fig02": "s1", "fig05": ["s1", "s2"], "fig06": ["s2"]}
    data = {name: str(tmp_path / f"{name}.h5") for name in figs.FIGURES}
    lp_analysis.loss_patterns_analysis(figures, searches, runs, 0.5, bn_json=str(tmp_path / "bn.json"),
                                       bn_csv=str(tmp_path / "bn.csv"), searches_json=str(tmp_path / "by.json"),
                                       figure_data=data)
    fig03 = read_figure_data(data["fig03b_without_bn"])
    assert fig03["fill_probability"] == 0.5 and fig03["without_bn"]["acc_black"] == pytest.approx(0.8)
    fig04 = read_figure_data(data["fig04a_accuracy_difference"])
    assert set(fig04) == {"paper", "official"} and fig04["official"]["dropped_runs"] == 2
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
    paths = {"paper": {}, "official": {}}
    protocols = {"paper": {}, "official": {"mask_frame": True, "delta_cells": "trainable",
                                           "fit": {"white_ce_clamp": 5.0, "grad_clip": 100.0,
                                                   "min_train_acc_gap": 0.01, "gap_check_every": 5}}}
    for protocol, settings in protocols.items():
        for variant, bn in (("without_bn", False), ("with_bn", True)):
            bn_spec = {"protocol": protocol, "variant": variant, "architecture": {**arch, "batchnorm": bn},
                       "dataset": "blobs", "mask_size": 6, "fill_probabilities": [0.3, 0.5], "seed": 0,
                       "fit": {**fit, **settings.get("fit", {})}, "eval_examples": None, "device": "cpu",
                       "mask_frame": settings.get("mask_frame", False),
                       "delta_cells": settings.get("delta_cells", "all")}
            paths[protocol][variant] = [str(tmp_path / f"{protocol}_{variant}.h5")]
            lp.run_bn_experiment(bn_spec, data, paths[protocol][variant][0])
    with h5py.File(paths["paper"]["without_bn"][0]) as f, h5py.File(paths["paper"]["with_bn"][0]) as g:
        np.testing.assert_array_equal(f["masks"][()], g["masks"][()])  # same random masks for both models
        assert f["test_acc"].shape == (2, 6, 6) and f["acc_black"].shape == (2,)
        assert (f["dropped_at"][()] == -1).all()  # no run selection in the paper protocol
    with h5py.File(paths["official"]["with_bn"][0]) as f:
        masks = f["masks"][()]
        assert not masks[:, 0, :].any() and masks[:, 1, 1:-1].all()  # the released generator's frame
        acc_b, acc_w = lp.fig4_cell_means(f["test_acc"][0], masks[0], "trainable")
        assert f["acc_black"][0] == pytest.approx(acc_b) and f["acc_white"][0] == pytest.approx(acc_w)
        assert f["dropped_at"].shape == (2,)
    s = lp_analysis.summarize_bn_experiment(paths, str(tmp_path / "b.json"), str(tmp_path / "b.csv"))
    assert s["paper"]["fill_probabilities"] == [0.3, 0.5] and np.isnan(s["paper"]["with_bn"]["delta_std"]).all()
    assert s["official"]["without_bn"]["delta_cells"] == "trainable"


# ------------------------------------------------------------------------- the released code's protocol


def test_framed_random_mask_has_the_released_frame():
    plain = lp.random_mask(10, 0.9, seed=3)
    framed = lp.random_mask(10, 0.9, seed=3, frame=True)
    assert plain[0].any()  # fully random: the outer ring is drawn like every other cell
    ring = np.ones((10, 10), dtype=bool)
    ring[1:-1, 1:-1] = False
    assert not framed[ring].any()  # outer ring white
    second = np.zeros((10, 10), dtype=bool)
    second[1:-1, 1:-1] = True
    second[2:-2, 2:-2] = False
    assert framed[second].all()  # next ring black
    assert 0.6 < framed[2:-2, 2:-2].mean() < 1.0  # random 6×6 interior at p = 0.9
    assert lp.random_mask(10, 0.0, seed=3, frame=True).sum() == second.sum()
    with pytest.raises(ValueError, match="size >= 4"):
        lp.random_mask(3, 0.5, seed=0, frame=True)


def test_fig4_means_over_trainable_cells_only():
    mask = np.zeros((6, 6), dtype=bool)
    mask[:, :3] = True  # left half black: only columns 2 and 3 touch the other colour
    acc = np.where(mask, 0.9, 0.1)
    acc[:, 2], acc[:, 3] = 0.5, 0.4  # the boundary columns
    assert lp.fig4_cell_means(acc, mask, "all") == pytest.approx(((0.9 * 2 + 0.5) / 3, (0.4 + 0.1 * 2) / 3))
    assert lp.fig4_cell_means(acc, mask, "trainable") == pytest.approx((0.5, 0.4))
    with pytest.raises(ValueError, match="delta_cells"):
        lp.fig4_cell_means(acc, mask, "boundary")


def _fit_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def test_run_selection_drops_planes_below_the_gap_and_freezes_them():
    x, y = _fit_data()
    masks = [lp.random_mask(5, 0.5, seed=1, frame=True)] * 2
    base = {"iterations": 12, "lr": 0.01, "batch_size": 16, "cells_per_update": 3, "log_every": 1}
    kept = lp.fit_planes([_plane(seed=0)], x, y, masks[:1], lp.FitSettings(**base), seed=0)[0]
    assert kept["dropped_at"] == -1 and kept["train_acc_gap"] == []
    planes = [_plane(seed=0), _plane(seed=1)]
    # A gap of 2 is impossible (accuracies lie in [0, 1]): every plane goes at the first check after the warmup,
    # here the end of iteration 7 (checks every 4 iterations, the first one after 12 × 0.5 = 6 iterations).
    settings = lp.FitSettings(**base, min_train_acc_gap=2.0, gap_warmup_fraction=0.5, gap_check_every=4)
    logs = lp.fit_planes(planes, x, y, masks, settings, seed=0)
    assert [h["dropped_at"] for h in logs] == [7, 7] and logs[0]["gap_iteration"] == [7]
    assert logs[0]["iteration"] == list(range(8))  # every plane dropped: the fit ends after iteration 7
    # A threshold of −1 keeps every plane, and checks are logged.
    logs = lp.fit_planes([_plane(seed=0)], x, y, masks[:1], lp.FitSettings(**base, min_train_acc_gap=-1.0,
                                                                              gap_check_every=4), seed=0)
    assert logs[0]["dropped_at"] == -1 and logs[0]["gap_iteration"] == [3, 7, 11]
    assert all(-1.0 <= g <= 1.0 for g in logs[0]["train_acc_gap"])


def test_dropped_plane_stops_training():
    x, y = _fit_data()
    mask = lp.random_mask(5, 0.5, seed=1, frame=True)
    base = {"iterations": 12, "lr": 0.01, "batch_size": 16, "cells_per_update": 3}
    short, full = _plane(seed=0), _plane(seed=0)
    lp.fit_planes([short], x, y, [mask], lp.FitSettings(**{**base, "iterations": 4}), seed=0)
    lp.fit_planes([full], x, y, [mask], lp.FitSettings(**base, min_train_acc_gap=2.0, gap_warmup_fraction=0.0,
                                                        gap_check_every=4), seed=0)
    # Dropped at the end of iteration 3: the plane holds the weights of a 4-iteration fit.
    torch.testing.assert_close(full.w_origin, short.w_origin)


def test_gradient_clipping_changes_the_fit():
    x, y = _fit_data()
    mask = lp.random_mask(5, 0.5, seed=1)
    base = {"iterations": 6, "lr": 0.01, "batch_size": 16, "cells_per_update": 3}
    free, clipped, loose = _plane(seed=0), _plane(seed=0), _plane(seed=0)
    lp.fit_planes([free], x, y, [mask], lp.FitSettings(**base), seed=0)
    lp.fit_planes([clipped], x, y, [mask], lp.FitSettings(**base, grad_clip=1e-4), seed=0)
    lp.fit_planes([loose], x, y, [mask], lp.FitSettings(**base, grad_clip=1e9), seed=0)
    assert not torch.allclose(free.w_origin, clipped.w_origin)
    torch.testing.assert_close(free.w_origin, loose.w_origin)  # a clip never reached changes nothing


def test_code_bn_scale_starts_at_zero_plus_one():
    """bn_scale_init zero with offset 1 (the released ReparametrizedBatchNorm2d): γ = 0 in all three plane
    vectors, so every plane point normalises with scale 1; App. C's uniform draw gives γ in [−0.5, 0.5]."""
    arch = {"name": "t", "model": "mpo_cnn", "channels": [2, 3], "batchnorm": True, "pool": 1, "hidden": 4}
    code = lp.plane_for({**arch, "bn_scale_offset": 1.0, "bn_scale_init": "zero"}, (1, 8, 8), 10, 0.1, 0, "cpu")
    paper = lp.plane_for({**arch, "bn_scale_offset": 0.5}, (1, 8, 8), 10, 0.1, 0, "cpu")
    offsets = np.cumsum([0] + code.param_numels)
    bn_weights = [i for i, name in enumerate(code.param_names)
                  if name.endswith(".weight") and len(code.param_shapes[i]) == 1]
    assert bn_weights
    for i in bn_weights:
        for vec in (code.w_origin, code.w_up, code.phi_right):
            assert float(vec.detach()[offsets[i] : offsets[i + 1]].abs().max()) == 0.0
        assert float(paper.w_up.detach()[offsets[i] : offsets[i + 1]].abs().max()) > 0.0
    bn = [m for m in code.template.modules() if hasattr(m, "offset")][0]
    x = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.functional.batch_norm(x, None, None, torch.ones(2), torch.zeros(2), training=True)
    torch.testing.assert_close(bn(x), reference)


def test_mpo_cnn_maxpool_floors_like_the_released_code():
    from lossatlas.models import build_model

    model = build_model({"model": "mpo_cnn", "channels": [8, 32, 64], "maxpool": True}, (1, 28, 28), 10)
    body = torch.nn.Sequential(*[m for m in model if not isinstance(m, torch.nn.AdaptiveAvgPool2d)][:9])
    assert body(torch.zeros(2, 1, 28, 28)).shape == (2, 64, 3, 3)  # 28 → 14 → 7 → 3


def test_plane_gradient_clipping_equals_torch_clip_per_plane():
    x, y = _fit_data()
    planes = [_plane(seed=0), _plane(seed=1), _plane(seed=2)]
    for k, plane in enumerate(planes):
        plane.logits(torch.tensor([[1.0, -2.0]]), x).square().mul(10.0 ** k).sum().backward()
    expected = []
    for plane in planes:
        copy = [p.grad.clone() for p in plane.parameters()]
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in copy))
        expected.append([g * min(1.0, 5.0 / (float(norm) + 1e-6)) for g in copy])
    lp.clip_plane_gradients(planes, 5.0)
    for plane, grads in zip(planes, expected, strict=True):
        for p, g in zip(plane.parameters(), grads, strict=True):
            torch.testing.assert_close(p.grad, g)
        assert float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in plane.parameters()))) <= 5.0 + 1e-4


def test_bn_run_spec_layers_fit_overrides_and_protocol_architectures():
    study = {"fit": {"iterations": 100, "lr": 0.1, "white_ce_clamp": 2.5}, "eval_examples": 50,
             "bn_experiment": {"dataset": "d", "without_bn": "a", "with_bn": "a_bn", "mask_size": 6,
                               "fill_probabilities": [0.5], "fit": {"iterations": 40},
                               "protocols": {"paper": {},
                                             "official": {"mask_frame": True, "delta_cells": "trainable",
                                                          "with_bn": "a_bn_code",
                                                          "fit": {"white_ce_clamp": 5.0, "lr": 0.2}}}}}
    archs = {"a": {"model": "mlp"}, "a_bn": {"model": "mlp", "batchnorm": True},
             "a_bn_code": {"model": "mlp", "batchnorm": True, "bn_scale_init": "zero"}}
    paper = lp_specs.bn_run_spec(study, archs, "paper", "with_bn", 3, "cpu")
    assert paper["architecture"] == {"name": "a_bn", "model": "mlp", "batchnorm": True}
    assert paper["fit"] == {"iterations": 40, "lr": 0.1, "white_ce_clamp": 2.5}
    assert not paper["mask_frame"] and paper["delta_cells"] == "all" and paper["seed"] == 3
    official = lp_specs.bn_run_spec(study, archs, "official", "with_bn", 3, "cpu")
    assert official["architecture"]["name"] == "a_bn_code" and official["mask_frame"]
    assert official["fit"] == {"iterations": 40, "lr": 0.2, "white_ce_clamp": 5.0}
    assert official["delta_cells"] == "trainable" and official["protocol"] == "official"
    assert lp_specs.bn_run_spec(study, archs, "official", "without_bn", 0, "cpu")["architecture"]["name"] == "a"


def test_bn_protocols_in_the_config_schema():
    from pathlib import Path

    import yaml

    from lossatlas.config import ConfigError, validate_config

    repo = Path(__file__).resolve().parents[1]
    cfg = validate_config(yaml.safe_load((repo / "config.yaml").read_text()))
    bn = cfg["studies"]["loss_patterns"]["bn_experiment"]
    assert bn["protocols"]["paper"] == {"mask_frame": False, "delta_cells": "all"}  # the schema's defaults
    assert bn["protocols"]["official"]["mask_frame"] and bn["protocols"]["official"]["delta_cells"] == "trainable"
    for mutate, words in (
            (lambda b: b["protocols"].__setitem__("mine", {}), "mine"),
            (lambda b: b["protocols"]["official"]["fit"].__setitem__("min_gap", 0.1), "min_gap"),
            (lambda b: b["protocols"]["official"].__setitem__("delta_cells", "boundary"), "boundary"),
            (lambda b: b["fit"].__setitem__("iteration", 5), "iteration"),
            (lambda b: b["protocols"].pop("paper"), "paper")):
        bad = yaml.safe_load((repo / "config.yaml").read_text())
        mutate(bad["studies"]["loss_patterns"]["bn_experiment"])
        with pytest.raises(ConfigError, match=words):
            validate_config(bad)


def test_fig04_caption_names_each_protocols_masks_cells_and_gamma():
    import yaml

    from lossatlas.config import validate_config
    from lossatlas.loss_patterns_specs import bn_protocols_caption

    from .conftest import REPO

    cfg = validate_config(yaml.safe_load((REPO / "configs" / "loss_patterns.yaml").read_text()))
    study, archs = cfg["studies"]["loss_patterns"], cfg["architectures"]
    caption = bn_protocols_caption(study, archs)
    paper, official = caption.split("``official``")
    assert "fully random" in paper and "all cells" in paper and "App. C" in paper and "clamped at 2.5" in paper
    assert "framed" in official and "trainable cells" in official and "γ = 0, γ + 1" in official
    assert "clamped at 5" in official and "dropped" in official
    study["bn_experiment"]["protocols"]["official"]["with_bn"] = study["bn_experiment"]["with_bn"]
    assert "γ = 0, γ + 1" not in bn_protocols_caption(study, archs).split("``official``")[1]


# ------------------------------------------------------------ the released CIFAR-10 recipe (issue 19)

_AUGMENT = {"pad_crop": 2, "hflip": 0.5, "random_erasing": {"p": 0.5, "scale": [0.25, 0.25], "ratio": [1.0, 1.0]}}


def _image_fit(augment, seed: int = 0, lrs=None):
    """Two small conv planes fitted for a few steps on random 1×6×6 images; returns their θ after the fit."""
    gen = torch.Generator().manual_seed(11)
    x, y = torch.randn(40, 1, 6, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    arch = {"model": "mpo_cnn", "channels": [3], "pool": 2, "hidden": 4}
    planes = [lp.plane_for(arch, (1, 6, 6), 3, 0.1, 0, "cpu") for _ in range(2)]
    settings = lp.FitSettings(iterations=4, lr=0.01, batch_size=8, cells_per_update=2, augment=augment)
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    lp.fit_planes(planes, x, y, [mask, mask], settings, seed, lrs=lrs, input_fill=-1.5)
    return [torch.cat([p.detach().flatten() for p in plane.parameters()]) for plane in planes]


def test_augmentation_changes_the_fit_and_is_a_function_of_the_seed():
    plain, again_plain = _image_fit(None), _image_fit({})
    augmented = _image_fit(_AUGMENT)
    torch.testing.assert_close(plain, again_plain)  # off ({} or None): the fit it always was
    assert not torch.equal(plain[0], augmented[0])  # the option is not ignored
    torch.testing.assert_close(augmented, _image_fit(_AUGMENT))  # same seed, same fit
    assert not torch.equal(augmented[0], _image_fit(_AUGMENT, seed=1)[0])


def test_augmentation_refuses_inputs_that_are_not_images():
    plane = _plane(seed=0, d_in=2)
    x, y = torch.randn(20, 2), torch.randint(0, 3, (20,))
    settings = lp.FitSettings(iterations=1, lr=0.01, batch_size=4, cells_per_update=1, augment={"hflip": 0.5})
    with pytest.raises(ValueError, match="fit.augment"):
        lp.fit_plane(plane, x, y, np.eye(3, dtype=bool), settings, 0)
    with pytest.raises(ValueError, match="flip"):
        lp.FitSettings.from_config({"iterations": 1, "lr": 0.1, "batch_size": 4, "cells_per_update": 1,
                                    "augment": {"flip": 0.5}})


def test_per_plane_learning_rates_equal_fitting_each_rate_alone():
    both = _image_fit(None, lrs=[0.01, 0.001])
    assert not torch.equal(both[0], both[1])  # same start, different rates
    torch.testing.assert_close(both[0], _image_fit(None, lrs=[0.01, 0.01])[0])
    torch.testing.assert_close(both[1], _image_fit(None, lrs=[0.001, 0.001])[1])


def test_lr_grid_keeps_the_largest_train_gap():
    assert lp.select_by_train_gap([0.1, 0.3, 0.2]) == 1
    assert lp.select_by_train_gap([float("nan"), 0.05, 0.05]) == 1  # NaN never wins; ties: the first
    assert lp.select_by_train_gap([float("nan")]) == 0


def test_augmented_lr_grid_search_end_to_end(tmp_path):
    from lossatlas.datasets import build_source_dataset

    data = str(tmp_path / "digits.h5")
    build_source_dataset("digits", {"source": "digits", "test_fraction": 0.3, "seed": 0}, data)
    fit = {"iterations": 6, "lr": 0.01, "batch_size": 16, "cells_per_update": 3, "augment": _AUGMENT}
    arch = {"name": "c", "model": "mpo_cnn", "channels": [4], "pool": 2, "hidden": 8}
    spec = {"search": "s", "picture": "cross", "picture_size": 32, "grid": 5, "dataset": "digits",
            "architecture": arch, "fit": fit, "eval_examples": 40, "seed": 0, "device": "cpu",
            "lr_grid": [0.05, 1e-6]}
    summary = lp.run_search(spec, data, str(tmp_path / "s.h5"), str(tmp_path / "s.json"))
    gaps = [row["train_acc_gap"] for row in summary["lr_grid"]]
    assert [row["lr"] for row in summary["lr_grid"]] == [0.05, 1e-6]
    assert summary["lr"] == [0.05, 1e-6][lp.select_by_train_gap(gaps)]
    assert summary["train"]["acc_gap"] == pytest.approx(max(gaps))  # the kept plane's train maps
    with h5py.File(tmp_path / "s.h5") as f:
        np.testing.assert_allclose(f["lr_grid/train_acc_gap"][()], gaps)
        assert f["test/ce"].shape == (5, 5)


def test_search_spec_layers_the_search_fit_and_keeps_old_specs():
    study = {"fit": {"iterations": 100, "lr": 0.1, "batch_size": 512}, "eval_examples": 50, "picture_size": 64,
             "searches": {"plain": {"picture": "ring", "grid": 5, "dataset": "d", "architecture": "a", "seed": 0},
                          "cifar": {"picture": "ring", "grid": 5, "dataset": "d", "architecture": "a", "seed": 1,
                                    "fit": {"batch_size": 256, "augment": _AUGMENT}, "lr_grid": [0.001, 0.0001]}}}
    archs = {"a": {"model": "mlp"}}
    plain = lp_specs.search_spec(study, archs, "plain", "cpu")
    assert plain == {"search": "plain", "picture": "ring", "picture_size": 64, "grid": 5, "dataset": "d",
                     "architecture": {"name": "a", "model": "mlp"}, "fit": study["fit"], "eval_examples": 50,
                     "seed": 0, "device": "cpu"}  # no new keys where the search sets none
    cifar = lp_specs.search_spec(study, archs, "cifar", "cpu")
    assert cifar["fit"] == {"iterations": 100, "lr": 0.1, "batch_size": 256, "augment": _AUGMENT}
    assert cifar["lr_grid"] == [0.001, 0.0001]


def _config():
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def test_default_study_has_no_augmentation_and_no_lr_grid():
    from lossatlas.config import validate_config

    cfg = validate_config(_config())
    study = cfg["studies"]["loss_patterns"]
    assert "augment" not in study["fit"]
    for name, search in study["searches"].items():
        assert "lr_grid" not in search and "fit" not in search
        assert "augment" not in lp_specs.search_spec(study, cfg["architectures"], name, "cpu")["fit"]


@pytest.mark.parametrize("where", ["search", "study", "bn_protocol"])
def test_augmentation_on_data_that_are_not_images_is_a_config_error(where):
    from lossatlas.config import ConfigError, validate_config

    cfg = _config()
    cfg["datasets"]["lp_blobs"] = {"source": "gaussian_mixture", "n_samples": 100, "n_features": 2}
    study = cfg["studies"]["loss_patterns"]
    name = next(iter(study["searches"]))
    on = {"augment": {"hflip": 0.5}}
    if where == "search":
        study["searches"][name].update(dataset="lp_blobs", fit=on)
        key = f"studies.loss_patterns.searches.{name}.fit.augment"
    elif where == "study":
        study["fit"].update(on)
        study["bn_experiment"]["dataset"] = "lp_blobs"
        key = "studies.loss_patterns.fit.augment"
    else:
        protocol = next(iter(study["bn_experiment"]["protocols"]))
        study["bn_experiment"]["protocols"][protocol].setdefault("fit", {}).update(on)
        study["bn_experiment"]["dataset"] = "lp_blobs"
        key = f"studies.loss_patterns.bn_experiment.protocols.{protocol}.fit.augment"
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*lp_blobs"):
        validate_config(cfg)
    if where == "study":  # image data: the same option is fine
        cfg = _config()
        cfg["studies"]["loss_patterns"]["fit"].update(on)
        validate_config(cfg)


def test_augment_keys_are_checked_by_the_schema():
    from lossatlas.config import ConfigError, validate_config

    cfg = _config()
    cfg["studies"]["loss_patterns"]["fit"]["augment"] = {"hflip": 0.5, "random_erasing": {"p": 0.5, "area": 1}}
    with pytest.raises(ConfigError, match="area"):
        validate_config(cfg)
