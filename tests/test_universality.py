"""Universality study: the overlap measure, the learning-rate rule, the analysis tables and the figures,
on synthetic curves shaped like metrics.h5 (contract: lossatlas/evaluation.py)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from lossatlas import lr_probe
from lossatlas.analysis import universality as uni

ROLES = {"cifar10": "digits", "imagenet20": "synth20", "random_labels": "digits_rl", "random_pixels": "digits_rp",
         "sgd": "sgd", "sgdm": "sgdm", "shallow": ["fc1"], "width_recipe": "widths"}
PAIR_METRICS = ["ce", "mse", "err01", "lp_inf"]
ANALYSIS_FILES = {"curves": "curves.csv", "overlap_curves": "overlap_curves.csv", "overlap": "overlap.csv",
                  "fits": "fits.csv", "panels": "panels.json", "panel_curves": "panel_curves.csv",
                  "headline": "headline.json", "datasets": "datasets.csv"}


# ------------------------------------------------------------------------------------------ overlap measure


def test_identical_curves_have_zero_residual():
    x = np.linspace(0.05, 2.3, 40)
    y = 0.9 * (x / 2.3) ** 0.5
    model = uni.isotonic_fit(np.concatenate([x, x]), np.concatenate([y, y]))
    D, n = uni.curve_residual(model, x, y, (0.05, 0.8))
    assert D == pytest.approx(0.0, abs=1e-12)
    assert n > 10


def test_shifted_curve_residual_is_the_shift():
    x = np.linspace(0.0, 1.0, 101)
    reference = x.copy()
    model = uni.isotonic_fit(x, reference)  # fit on the reference group only ("between")
    D_ref, _ = uni.curve_residual(model, x, reference, (0.05, 0.8))
    D_other, n = uni.curve_residual(model, x, reference + 0.1, (0.05, 0.8))
    assert D_ref == pytest.approx(0.0, abs=1e-12)
    assert D_other == pytest.approx(0.1, abs=1e-12)
    # only points with f̂(x) in [0.05, 0.8] of the fitted range count: x = 0.05 ... 0.80
    assert n == 76


def test_pooled_fit_splits_a_shift_between_two_curves():
    x = np.linspace(0.0, 1.0, 51)
    model = uni.isotonic_fit(np.concatenate([x, x]), np.concatenate([x, x + 0.2]))
    D, _ = uni.curve_residual(model, x, x, (0.1, 0.7))
    assert D == pytest.approx(0.1, abs=1e-9)


def test_residual_ignores_points_outside_the_reference_x_range():
    model = uni.isotonic_fit(np.linspace(0, 1, 11), np.linspace(0, 1, 11))
    D, n = uni.curve_residual(model, np.array([2.0, 3.0]), np.array([0.5, 0.5]), (0.0, 1.0))
    assert math.isnan(D) and n == 0


def test_truncate_at_minimum_keeps_the_monotone_part():
    import pandas as pd

    frame = pd.DataFrame({"checkpoint": [0, 1, 2, 3, 4], "ce": [2.0, 1.0, 0.5, 0.7, 0.9]})
    assert uni.truncate_at_minimum(frame, "ce")["checkpoint"].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------------------------- lr rule


def test_lr_choice_is_the_largest_rate_that_does_not_diverge():
    table = [{"lr": 2.0**-5, "diverged": True, "final_loss": float("nan")},
             {"lr": 2.0**-6, "diverged": False, "final_loss": float("inf")},  # not finite: diverged
             {"lr": 2.0**-7, "diverged": False, "final_loss": 0.9},
             {"lr": 2.0**-8, "diverged": False, "final_loss": 1.1},
             {"lr": 2.0**-10, "diverged": False, "final_loss": 1.9}]
    assert lr_probe.choose_learning_rate(table) == 2.0**-7
    # order of the table does not matter
    assert lr_probe.choose_learning_rate(list(reversed(table))) == 2.0**-7


def test_lr_choice_with_tolerance_rejects_rates_that_end_worse_than_the_cautious_one():
    # measured shape (default scale, CNN, SGDm, l_MSE): bounded loss, large rates end worse than small ones
    table = [{"lr": lr, "diverged": False, "final_loss": loss}
             for lr, loss in ((0.5, 1.16), (0.25, 1.12), (0.125, 0.53), (0.0625, 0.43), (0.015625, 0.67))]
    assert lr_probe.choose_learning_rate(table) == 0.5
    assert lr_probe.choose_learning_rate(table, tolerance=0.1) == 0.125
    # 0.25 ends within 10 % of the cautious rate's 1.12 here, so it is kept
    table[-1]["final_loss"] = 1.05
    assert lr_probe.choose_learning_rate(table, tolerance=0.1) == 0.25


def test_lr_choice_fails_clearly_when_everything_diverges():
    with pytest.raises(ValueError, match="every candidate rate diverged"):
        lr_probe.choose_learning_rate([{"lr": 0.5, "diverged": True, "final_loss": 3.0}])


def test_first_spike_finds_a_late_spike_and_ignores_smooth_runs():
    # from 2.0 down to 0.4, then back up to 1.2: gives back (1.2 - 0.4) / (2.0 - 0.4) = 50 % of the progress
    assert lr_probe.first_spike([2.0, 1.0, 0.5, 0.45, 0.4, 1.2, 0.3], 0.1) == 5
    assert lr_probe.first_spike([2.0, 1.0, 0.5, 0.45, 0.4, 0.35, 0.3], 0.1) is None
    # a converged run wobbling at its floor (0.005 -> 0.01, ×2) gives back 0.2 %: no spike
    assert lr_probe.first_spike([2.3, 0.5, 0.005, 0.01, 0.004], 0.1) is None
    # the ResNet shape of issue 18: 0.05 -> 0.6 late in the run
    assert lr_probe.first_spike([2.3, 1.0, 0.3, 0.05, 0.6, 0.02], 0.1) == 4
    assert lr_probe.first_spike([2.3, 1.0, 0.3, 0.05, 0.6, 0.02], 0.3) is None
    assert lr_probe.first_spike([float("nan"), 0.4, 0.3], 0.1) is None
    with pytest.raises(ValueError, match="spike_fraction"):
        lr_probe.first_spike([1.0, 0.5], 0.0)


def test_lr_choice_rejects_a_rate_whose_run_spikes():
    # 0.25 ends with the lowest loss, but its loss spiked at epoch 20: an unstable run is a diverged run
    table = [{"lr": 0.25, "diverged": False, "spike_epoch": 20, "final_loss": 0.2},
             {"lr": 0.125, "diverged": False, "spike_epoch": None, "final_loss": 0.3},
             {"lr": 0.0625, "diverged": False, "spike_epoch": None, "final_loss": 0.32}]
    assert lr_probe.choose_learning_rate(table) == 0.125
    assert lr_probe.choose_learning_rate(table, tolerance=0.1) == 0.125
    with pytest.raises(ValueError, match="diverged or spiked"):
        lr_probe.choose_learning_rate(table[:1])


def test_probe_learning_rates_flags_a_late_spike(monkeypatch):
    """The probe reads the evaluated loss at every checkpoint of the run: a late spike there rejects the rate,
    although the train-mode epoch means (shaped like the ResNet runs of issue 18) stay smooth."""
    epochs = 30
    smooth = np.geomspace(2.0, 0.05, epochs + 1)  # checkpoints: initialisation + after every epoch
    spiky = smooth.copy()
    spiky[-3] = 10 * smooth[-4]  # the loss after epoch 28 jumps back up (gives back a quarter of the progress)

    class FakeTrainer:
        def __init__(self, spec, phases, input_shape, outputs, num_classes, lr, device, files, prefix):
            self.lr = lr

        def run(self):
            means = np.stack([smooth[1:], smooth[1:]])
            self.status = type("S", (), {"train_loss": means, "diverged": np.zeros(2, dtype=bool)})()
            self.eval_loss = np.stack([smooth, spiky if self.lr > 0.1 else smooth])  # one member spikes at 0.25

    monkeypatch.setattr(lr_probe, "load_phases",
                        lambda *a, **k: ([None], type("D", (), {"input_shape": (1, 40)})(), 10, 10))
    monkeypatch.setattr(lr_probe, "_initial_losses", lambda *a, **k: np.array([2.3, 2.3]))
    monkeypatch.setattr(lr_probe, "_ProbeTrainer", FakeTrainer)
    spec = {"optimizer": {"name": "sgd", "lr": "probe"}, "device": "cpu"}
    table = lr_probe.probe_learning_rates(spec, "x.h5", [0.25, 0.0625], epochs, spike_fraction=0.1)
    rows = {row["lr"]: row for row in table}
    assert rows[0.25]["spike_epoch"] == epochs - 2 and not rows[0.25]["diverged"]
    assert rows[0.0625]["spike_epoch"] is None
    assert lr_probe.choose_learning_rate(table) == 0.0625
    # without the spike test the spiky rate would be chosen
    table = lr_probe.probe_learning_rates(spec, "x.h5", [0.25, 0.0625], epochs, spike_fraction=None)
    assert lr_probe.choose_learning_rate(table) == 0.25


def test_lr_probe_records_choice_and_table(tmp_path, monkeypatch):
    calls = {}

    def fake_probe(spec, dataset_path, candidates, epochs, spike_fraction=None):
        calls.update(spec=spec, candidates=candidates, epochs=epochs, spike_fraction=spike_fraction)
        return [{"lr": lr, "diverged": lr > 0.1, "final_loss": 1.0 if lr <= 0.1 else float("nan")}
                for lr in candidates]

    monkeypatch.setattr(lr_probe, "probe_learning_rates", fake_probe)
    spec = {"optimizer": {"name": "sgd", "lr": "probe", "lr_candidates": [0.5, 0.25, 0.125, 0.0625]},
            "dataset": "digits"}
    out = tmp_path / "probe.json"
    lr_probe.lr_probe(spec, "data/digits.h5", str(out), epochs=2, seed=3, tolerance=0.1, spike_fraction=0.1)
    result = json.loads(out.read_text())
    assert result["lr"] == 0.0625
    assert len(result["probe"]) == 4
    assert result["spike_fraction"] == 0.1
    assert calls["spec"]["seeds"] == [3] and calls["epochs"] == 2 and calls["spike_fraction"] == 0.1


def test_lr_probe_needs_candidates(tmp_path, monkeypatch):
    monkeypatch.setattr(lr_probe, "probe_learning_rates", None)
    with pytest.raises(ValueError, match="lr_candidates"):
        lr_probe.lr_probe({"optimizer": {"name": "sgd", "lr": "probe"}}, "x.h5", str(tmp_path / "p.json"), 2, 0)


# ------------------------------------------------------------------------------------------------ panels


def test_every_paper_figure_has_its_panels():
    panels = uni.figure_panels(ROLES, PAIR_METRICS)
    count = {}
    for p in panels:
        count[p.figure] = count.get(p.figure, 0) + 1
    assert count == {"fig01": 4, "fig02": 4, "fig03": 2, "fig04": 2, "fig05": 4, "fig06": 4, "fig07": 2,
                     "fig08": 4, "fig09": 4, "fig10": 4, "fig11": 4, "fig12": 4, "fig13": 2, "fig14": 2,
                     "fig15": 4, "fig16": 4}
    fig15 = [p for p in panels if p.figure == "fig15"]
    # Figs 15/16 order their panels differently from Fig 1: (b) is MSE with SGDm
    assert fig15[1].losses == ("mse_softmax",) and fig15[1].optimizers == ("sgdm",)
    assert len(fig15[0].pairs) == 6  # all pairs of 4 metrics


# ---------------------------------------------------------------------------------- synthetic metrics.h5


def _write_metrics(path, seeds, err_of_ce, speed, n_ckpt=25, split_gap=0.0):
    """A metrics.h5 whose curves follow err01 = err_of_ce(ce) exactly (so D measures only the f's)."""
    M, C = len(seeds), n_ckpt
    with h5py.File(path, "w") as h5:
        h5["members"] = np.array(seeds)
        h5["checkpoints/epoch"] = np.arange(C, dtype=float)
        h5["checkpoints/step"] = np.arange(C)
        h5["checkpoints/examples_seen"] = np.arange(C) * 100
        h5["checkpoints/valid"] = np.ones((M, C), bool)
        for split, gap in (("train", 0.0), ("test", split_gap)):
            t = np.linspace(0, 1, C)[None, :] ** (1 / speed) * np.ones((M, 1))
            ce_train = 2.3 * (1 - 0.97 * t)
            err = err_of_ce(ce_train)
            ce = ce_train + gap * t  # test loss lags behind: a different f per architecture
            for name, values in (("ce", ce), ("mse", 0.9 * ce / 2.3), ("err01", err), ("acc", 1 - err),
                                 ("lp_inf", 0.95 * np.sqrt(ce / 2.3))):
                h5[f"{split}/summary/{name}"] = values


def _fixture_runs(tmp_path):
    runs, paths = [], []

    def add(recipe, dataset, arch, opt, loss, seeds, f, speed, gap=0.0):
        path = tmp_path / f"{recipe}_{dataset}_{arch}_{opt}_{loss}.h5"
        _write_metrics(path, seeds, f, speed, split_gap=gap)
        runs.append({"recipe": recipe, "dataset": dataset, "arch": arch, "optimizer": opt, "loss": loss})
        paths.append(str(path))

    universal = lambda ce: 0.9 * (ce / 2.3) ** 0.7  # noqa: E731
    random_f = lambda ce: 0.9 * (ce / 2.3) ** 0.15  # noqa: E731
    shallow_f = lambda ce: 0.9 * (ce / 2.3) ** 2.0  # noqa: E731
    for i, arch in enumerate(["mlp", "cnn", "fc1"]):
        for opt in ("sgd", "sgdm"):
            for loss in ("ce", "mse_softmax"):
                f = shallow_f if arch == "fc1" else universal
                add("main", "digits", arch, opt, loss, [0, 1], f, 1 + i, gap=0.3 * i)
                add("main", "synth20", arch, opt, loss, [0, 1], f, 1 + i)
                if arch != "fc1":
                    add("random", "digits_rl", arch, opt, loss, [0], random_f, 1 + i)
                    add("random", "digits_rp", arch, opt, loss, [0], random_f, 1 + i)
    for width in (4, 16):
        for loss in ("ce", "mse_softmax"):
            add("widths", "digits", f"w{width}", "sgd", loss, [0], universal, 2)
    return paths, runs


def _dataset_files(tmp_path):
    out = {}
    for name, k in (("digits", 10), ("synth20", 20), ("digits_rl", 10), ("digits_rp", 10)):
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as h5:
            h5["train/x"] = np.zeros((12, 1, 8, 8), np.float32)
            h5["test/x"] = np.zeros((6, 1, 8, 8), np.float32)
            h5.attrs["num_classes"] = k
            h5.attrs["derivation"] = "{}"
        out[name] = str(path)
    return out


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uni")
    paths, runs = _fixture_runs(tmp)
    widths = {"w4": 4, "w16": 16}
    out = {role: str(tmp / "analysis" / name) for role, name in ANALYSIS_FILES.items()}
    result = uni.analyse(paths, runs, _dataset_files(tmp), ROLES, PAIR_METRICS, [0.05, 0.8], widths, out)
    return out, result


def test_analysis_separates_what_the_paper_says_differs(analysed):
    out, head = analysed
    import pandas as pd

    per_curve = pd.read_csv(out["overlap_curves"])
    ref = per_curve[(per_curve["figure"] == "fig16") & (per_curve["comparison"] == "between")
                    & (per_curve["x"] == "ce") & (per_curve["y"] == "err01")]
    # D_rel = D / range of the fitted 0/1 error (0.9 * (ce / 2.3) ** 0.7 over ce in [0.069, 2.3])
    span = 0.9 * (1 - (0.069 / 2.3) ** 0.7)
    assert np.allclose(ref["D_rel"], ref["D"] / span, rtol=1e-2)
    within = head["within_architectures_train"]["cifar10 (fig01)"]
    assert within["max"] < 1e-9  # every deep architecture follows the same f exactly
    fc1 = head["fc1_vs_deep (fig05, fit on deep nets)"]
    assert fc1["reference"]["max"] < 1e-9 and fc1["others"]["mean"] > 0.05
    for key in ("random pixels (fig15, fit on cifar10 role)", "random labels (fig16, fit on cifar10 role)"):
        across = head["across_datasets"][key]
        assert across["reference"]["max"] < 1e-9 and across["others"]["mean"] > 0.1
    seeds = head["across_seeds (fit on first seed)"]["fig11"]
    assert seeds["others"]["max"] < 1e-9
    # the fixture's test curves are bent differently per architecture, so test residuals exceed train ones
    tt = head["train_vs_test"]
    assert tt["cifar10 test (fig02)"]["mean"] > tt["cifar10 train (fig01)"]["mean"] + 0.01


def _curve_rows(loss: str, xs, ys, seed: int = 0, split: str = "train") -> list[dict]:
    metric = uni.TRAINING_LOSS_METRIC[loss]
    return [{"recipe": "main", "dataset": "d", "arch": "a", "optimizer": "sgd", "loss": loss, "seed": seed,
             "split": split, metric: x, "err01": y} for x, y in zip(xs, ys, strict=True)]


def test_monotonicity_is_one_for_monotone_curves_and_lower_for_a_bump():
    import pandas as pd

    loss = np.linspace(2.3, 0.1, 8)
    monotone = _curve_rows("ce", loss, 0.9 * (loss / 2.3) ** 0.7, seed=0)
    # 0/1 error rises while the loss falls over the last 4 points (over-fitting-like bump): rho by hand below
    bumped = _curve_rows("mse_softmax", loss, [0.9, 0.8, 0.7, 0.6, 0.65, 0.7, 0.75, 0.8], seed=1)
    flat = _curve_rows("ce", loss, np.full(8, 0.5), seed=2)  # constant error: rho undefined, skipped
    test_split = _curve_rows("ce", loss, -loss, seed=0, split="test")  # other split: ignored
    curves = pd.DataFrame(monotone + bumped + flat + test_split)
    result = uni.monotonicity(curves)
    # bumped: y ranks (1-based, ties averaged) 8, 6.5, 3.5, 1, 2, 3.5, 5, 6.5 vs x ranks 8..1
    x_rank = np.arange(8, 0, -1, dtype=float)
    y_rank = np.array([8, 6.5, 3.5, 1, 2, 3.5, 5, 6.5])
    rho_bumped = np.corrcoef(x_rank, y_rank)[0, 1]
    assert result["n_curves"] == 2 and result["n_undefined"] == 1
    assert result["spearman_min"] == pytest.approx(rho_bumped)
    assert result["spearman_median"] == pytest.approx((1.0 + rho_bumped) / 2)
    assert rho_bumped < 0.5
    # gamma by hand: of the 28 pairs (loss strictly falling), 14 have the error falling too, 12 rising, 2 tied
    assert result["gamma_min"] == pytest.approx((14 - 12) / 26)


def test_gamma_is_one_for_a_monotone_curve_with_a_plateau():
    x = np.array([2.0, 1.5, 1.0, 0.5, 0.2, 0.1, 0.05])
    y = np.array([0.9, 0.7, 0.4, 0.1, 0.0, 0.0, 0.0])  # reaches 0 and stays: ties, still monotone
    assert uni.goodman_kruskal_gamma(x, y) == 1.0
    assert uni.goodman_kruskal_gamma(x, y[::-1]) == -1.0
    # one discordant pair out of 3 untied pairs: (2 - 1) / 3
    assert uni.goodman_kruskal_gamma(np.array([3.0, 2.0, 1.0]), np.array([2.0, 3.0, 1.0])) == pytest.approx(1 / 3)


def test_headline_has_the_monotonicity_of_the_train_curves(analysed):
    mono = analysed[1]["monotonicity"]
    # fixture curves are strictly monotone
    assert mono["n_curves"] > 0 and mono["spearman_min"] == pytest.approx(1.0) and mono["gamma_min"] == 1.0


def test_table_one_reads_the_dataset_files(analysed):
    import pandas as pd

    table = pd.read_csv(analysed[0]["datasets"])
    row = table[table["dataset"] == "synth20"].iloc[0]
    assert row["paper_role"] == "IMAGENET-20" and row["classes"] == 20 and row["train_examples"] == 12


@pytest.mark.parametrize("function", ["fig01_train_loss_vs_error", "fig05_deep_vs_shallow",
                                      "fig16_pairs_across_random_labels", "table01_datasets"])
def test_figure_functions_draw_from_the_analysis(analysed, tmp_path, function):
    from PIL import Image

    from lossatlas.figures import universality as figs

    out = tmp_path / f"{function}.png"
    figs.draw(function, analysed[0], str(out))
    with Image.open(out) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("L"))
    assert width > 500 and height > 200
    assert pixels.std() > 10  # not a blank canvas


def test_unknown_figure_function_is_an_error(analysed, tmp_path):
    from lossatlas.figures import universality as figs

    with pytest.raises(ValueError, match="no figure named 'fig99_nothing'"):
        figs.draw("fig99_nothing", analysed[0], str(tmp_path / "x.png"))


def test_lr_probe_with_the_engine_on_digits(tmp_path):
    """The rule's function end to end with the real engine: a huge rate diverges and is not chosen."""
    import torch

    from lossatlas.datasets import build_source_dataset

    torch.set_num_threads(1)
    data = tmp_path / "digits.h5"
    build_source_dataset("digits", {"source": "digits", "test_fraction": 0.3333, "standardize": True}, str(data))
    spec = {"dataset": "digits", "architecture": {"name": "fc1", "model": "mlp", "hidden": []},
            "optimizer": {"name": "sgd", "lr": "probe", "lr_candidates": [1.0e4, 0.25, 0.001], "momentum": 0.0},
            "loss": "ce", "batch_size": 64, "dtype": "float32", "dropout": True, "init": {"scheme": "default"},
            "vectorize": "auto", "pretrain": None, "device": "cpu"}
    result = lr_probe.lr_probe(spec, str(data), str(tmp_path / "lr.json"), epochs=2, seed=0, tolerance=0.1,
                               spike_fraction=0.1)
    rows = {row["lr"]: row for row in result["probe"]}
    assert rows[1.0e4]["diverged"]
    assert rows[0.25]["spike_epoch"] is None and rows[0.001]["spike_epoch"] is None  # smooth on digits
    assert result["lr"] == 0.25  # trains faster than 0.001 on digits, so within the tolerance
    assert json.loads((tmp_path / "lr.json").read_text())["lr"] == 0.25


def test_panel_curves_are_the_rows_each_panel_selects(analysed):
    """panel_curves.csv lists, per panel, the rows of curves.csv the figures draw (as panel_curves selects)."""
    import pandas as pd

    out, _ = analysed
    curves, members = pd.read_csv(out["curves"]), pd.read_csv(out["panel_curves"])
    panels = uni.figure_panels(ROLES, PAIR_METRICS)
    assert {(f, letter) for f, letter in zip(members["figure"], members["letter"], strict=True)} <= \
        {(p.figure, p.letter) for p in panels}
    for panel in panels:
        rows = members[(members["figure"] == panel.figure) & (members["letter"] == panel.letter)]["row"]
        expected = uni.panel_curves(curves, panel, ROLES["width_recipe"])
        assert rows.tolist() == expected.index.tolist(), panel.key
    fig05 = members[members["figure"] == "fig05"]["row"]
    assert "fc1" in set(curves.loc[fig05, "arch"])  # FC1 is drawn in Fig 5 ...
    fig01 = members[members["figure"] == "fig01"]["row"]
    assert "fc1" not in set(curves.loc[fig01, "arch"])  # ... and nowhere else


def test_panel_titles_name_the_single_loss_and_optimiser():
    from lossatlas.figures import universality as figs

    titles = {p.key: figs.panel_title(p, ROLES) for p in uni.figure_panels(ROLES, PAIR_METRICS)}
    assert titles["fig01a"] == "Trained L(l_MSE) using SGD"
    assert titles["fig03b"] == "Trained L(l_CE)"  # across SGD and SGDm
    assert titles["fig04a"] == "Trained using SGD"  # across both training losses
    assert titles["fig07b"] == "Trained L(l_CE) using SGD"


def test_paper_scale_config_is_the_grid_of_section_4():
    """configs/universality.yaml: §4's grid, 244 training runs (FIGURES.md §1.0)."""
    from pathlib import Path

    import yaml

    from lossatlas.config import expand_runs, validate_config

    config = validate_config(yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "universality.yaml").read_text()))
    runs = expand_runs(config)
    assert len(runs) == 244  # 10 archs x 4 x 2 seeds + 9 x 4 x 2 + 2 x 9 x 4 + 10 widths x 2
    main = {r.arch for r in runs if r.recipe == "main"}
    assert {config["architectures"][a]["model"] for a in main} == {"mlp", "vgg", "resnet", "densenet"}
    assert len(main) == 10 and "fc1" in main
    assert {r.loss for r in runs} == {"ce", "mse_softmax"}
    assert all(r.spec["batch_size"] == 512 for r in runs)
    assert config["optimizers"]["uni_sgdm"]["momentum"] == 0.9
    assert config["optimizers"]["uni_sgd"]["lr_candidates"] == [2.0**-k for k in range(5, 11)]
    widths = sorted(config["architectures"][r.arch]["hidden"][0] for r in runs
                    if r.recipe == "widths" and r.loss == "ce")
    assert widths == [2**k for k in range(4, 14)]
    assert {len(r.seeds) for r in runs} == {1} and {r.seeds[0] for r in runs if r.recipe == "main"} == {0, 1}
