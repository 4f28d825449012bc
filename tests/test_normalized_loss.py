"""normalized_loss: BN absorption, layerwise normalisation, fits, snapshot selection, label corruption."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lossatlas.analysis import normalized_loss as nl

torch.set_num_threads(1)


def _trained_bn_net(seed: int = 0) -> nn.Module:
    """A Linear→BN→ReLU / Conv→BN→ReLU net with non-trivial BN statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        net.train()
        for _ in range(3):  # fill running statistics
            net(torch.randn(32, 1, 8, 8, generator=g, dtype=torch.float64) * 2 + 0.5)
    return net.eval()


def test_bn_absorption_keeps_outputs_in_eval_mode():
    net = _trained_bn_net()
    x = torch.randn(20, 1, 8, 8, dtype=torch.float64)
    absorbed = nl.absorb_batchnorm(net)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in absorbed.modules())
    assert absorbed[0].bias is not None  # a bias was created for the bias-free conv
    torch.testing.assert_close(absorbed(x), net(x), rtol=1e-12, atol=1e-12)
    # The original is untouched.
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_bn_absorption_hand_computed_scalar():
    lin = nn.Linear(1, 1).double()
    bn = nn.BatchNorm1d(1).double().eval()
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(1.0)
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(4.0 - bn.eps)  # sqrt(var + eps) = 2
        bn.weight.fill_(5.0)
        bn.bias.fill_(-1.0)
    absorbed = nl.absorb_batchnorm(nn.Sequential(lin, bn))
    # s = 5/2; W' = 2·2.5 = 5; b' = 2.5·(1 − 3) − 1 = −6
    assert absorbed[0].weight.item() == pytest.approx(5.0)
    assert absorbed[0].bias.item() == pytest.approx(-6.0)


def _relu_net(first_bias: bool, later_bias: bool) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, bias=first_bias), nn.ReLU(), nn.Conv2d(3, 3, 3, bias=later_bias), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 7, bias=later_bias),
    ).double()


def test_normalisation_divides_bias_free_logits_by_product_of_norms():
    net = _relu_net(first_bias=False, later_bias=False)
    x = torch.randn(50, 1, 8, 8, dtype=torch.float64)
    normalised, rhos = nl.normalise_layerwise(net, p=2)
    expected = [float(torch.linalg.vector_norm(m.weight.detach())) for m in (net[0], net[2], net[5])]
    assert rhos == pytest.approx(expected, rel=1e-14)
    for m in (normalised[0], normalised[2], normalised[5]):
        assert float(torch.linalg.vector_norm(m.weight.detach())) == pytest.approx(1.0, rel=1e-14)
    torch.testing.assert_close(normalised(x) * math.prod(rhos), net(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p, divisor", [(2, 1.0), (1, 100.0), (3, 1.0), (math.inf, 1.0)])
def test_normalisation_keeps_every_prediction_with_biases(p, divisor):
    net = _relu_net(first_bias=True, later_bias=True)
    x = torch.randn(200, 1, 8, 8, dtype=torch.float64)
    normalised, rhos = nl.normalise_layerwise(net, p=p, divisor=divisor)
    torch.testing.assert_close(normalised(x) * math.prod(rhos), net(x), rtol=1e-11, atol=1e-11)
    assert torch.equal(normalised(x).argmax(1), net(x).argmax(1))
    # First layer: norm of [W | b] jointly (bias = weight of a constant input).
    joint = torch.cat([net[0].weight.flatten(), net[0].bias.flatten()])
    assert rhos[0] == pytest.approx(nl.lp_norm(joint, p) / divisor, rel=1e-14)


def test_l1_divided_by_100_hand_computed():
    lin = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, -4.0]], dtype=torch.float64))
    normalised, rhos = nl.normalise_layerwise(nn.Sequential(lin), p=1, divisor=100.0)
    assert rhos == [pytest.approx(0.07)]  # (3 + 4) / 100
    torch.testing.assert_close(normalised[0].weight, torch.tensor([[300 / 7, -400 / 7]], dtype=torch.float64))
    _, fro = nl.normalise_layerwise(nn.Sequential(lin), p=2)
    assert fro == [pytest.approx(5.0)]


def test_normalisation_refuses_bn():
    with pytest.raises(ValueError, match="absorb_batchnorm"):
        nl.normalise_layerwise(_trained_bn_net())


def test_measure_snapshot_on_bn_net():
    net = _trained_bn_net().float()
    rng = np.random.default_rng(0)
    xs = {s: rng.standard_normal((40, 1, 8, 8)).astype(np.float32) for s in nl.SPLITS}
    ys = {s: rng.integers(0, 5, 40) for s in nl.SPLITS}
    logits = []
    out = nl.measure_snapshot(net, xs, ys, [{"name": "fro", "p": 2}, {"name": "l1", "p": 1, "divisor": 100}],
                              True, "cpu", "test", logits)
    for s in nl.SPLITS:
        assert out[f"{s}_err_fro"] == out[f"{s}_err"] == out[f"{s}_err_l1"]
        # Normalised outputs are small, so the normalised loss is close to ln K (App. F).
        assert abs(out[f"{s}_ce_fro"] - math.log(5)) < abs(out[f"{s}_ce"] - math.log(5)) + 1e-9
    raw_max, norm_max = logits[0]
    np.testing.assert_allclose(raw_max, norm_max * out["product_fro"], rtol=1e-10)


def test_ols_fit_hand_computed():
    # y = 2x + 1 with residuals (+1, −1, −1, +1): a = 2, b = 1 (residuals orthogonal to 1 and x by symmetry).
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = 2 * x + 1 + np.array([1.0, -1.0, -1.0, 1.0])
    res = nl.ols_fit(x, y)
    assert res["slope"] == pytest.approx(2.0)
    assert res["intercept"] == pytest.approx(1.0)
    sse, sst = 4.0, float(np.sum((y - y.mean()) ** 2))
    assert res["sse"] == pytest.approx(sse)
    assert res["r2"] == pytest.approx(1 - sse / sst)
    assert res["adj_r2"] == pytest.approx(1 - (sse / sst) * 3 / 2)
    assert res["rmse"] == pytest.approx(math.sqrt(2.0))  # √(4 / (4 − 2))
    assert res["rmse_n"] == pytest.approx(1.0)  # √(4 / 4)


def test_ols_fit_degenerate_cases():
    assert math.isnan(nl.ols_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["slope"])
    two = nl.ols_fit([0.0, 1.0], [0.0, 2.0])
    assert two["slope"] == pytest.approx(2.0) and math.isnan(two["rmse"])


def test_fixed_point_gap_matches_paper_fits():
    # FIGURES.md §3.3: every published 10-class fit passes within ~0.003 of (ln 10, ln 10).
    for a, b in [(0.836, 0.377), (0.9642, 0.0844), (1.0075, -0.0174), (0.8358, 0.3783), (0.8789, 0.2795)]:
        assert abs(nl.fixed_point_gap(a, b, 10)) < 0.004
    assert nl.fixed_point_gap(0.5, 0.5 * math.log(20), 20) == pytest.approx(0.0)


def test_psi_transform():
    np.testing.assert_allclose(nl.psi_exponential([0.0, 0.6, 1.0]), [0.0, 0.2, 1.0])
    with pytest.raises(ValueError):
        nl.psi_exponential(1.5)
    xs, ys = nl.psi_overlay(np.array([2.0, 3.0, 2.5]), np.array([0.1, 0.5, 0.2]))
    assert xs[0] == 2.0 and xs[-1] == 3.0 and ys[0] == pytest.approx(0.1) and ys[-1] == pytest.approx(0.5)


def test_select_checkpoints():
    ce = np.array([[2.0, 0.5, 0.01, 0.007, 0.004], [2.0, 0.0061, 0.1, 0.05, np.nan]])
    valid = np.array([[True] * 5, [True, True, True, True, False]])
    epochs = np.array([0.0, 1, 2, 3, 4])
    assert nl.select_checkpoints(ce, valid, epochs, "reference", 0.006).tolist() == [3, 1]
    # Epoch 0 (initialisation / end of pretraining) is never selected, however close.
    ce0 = ce.copy()
    ce0[:, 0] = 0.006
    assert nl.select_checkpoints(ce0, valid, epochs, "reference", 0.006).tolist() == [3, 1]
    assert nl.select_checkpoints(ce, valid, epochs, "final").tolist() == [4, 3]
    with pytest.raises(ValueError):
        nl.select_checkpoints(ce, valid, epochs, "closest")


def test_select_checkpoints_stop_rule():
    # Epoch-mean training loss per epoch 1..4; a fractional (within-epoch) checkpoint is not a stopping point.
    epochs = np.array([0.0, 0.5, 1, 2, 3, 4])
    valid = np.ones((2, 6), bool)
    epoch_loss = np.array([[0.1, 0.0050, 0.0044, 0.003], [0.1, 0.02, 0.01, 0.009]])
    got = nl.select_checkpoints(np.zeros((2, 6)), valid[:1], epochs, "stop", 0.0045, epoch_loss[:1])
    assert got.tolist() == [4]  # epoch 3, the first with mean loss <= 0.0045
    with pytest.raises(ValueError, match="never reached"):
        nl.select_checkpoints(np.zeros((2, 6)), valid, epochs, "stop", 0.0045, epoch_loss)


def test_point_label():
    specs = {"d": {"source": "digits"},
             "d_q30": {"derive_from": "d", "derivation": "corrupt_labels", "fraction": 0.3},
             "d_rl": {"derive_from": "d", "derivation": "random_labels"}}
    assert nl.point_label({"dataset": "d", "pretrain": {"dataset": "d_q30", "epochs": 3}}, specs) == \
        {"kind": "natural", "q": 0.3, "sigma": pytest.approx(math.nan, nan_ok=True)}
    rl = nl.point_label({"dataset": "d_rl", "init": {"scheme": "gaussian", "std": 0.05}}, specs)
    assert rl["kind"] == "RL" and rl["sigma"] == 0.05 and rl["q"] == 0.0


def test_label_corruption_keeps_histogram(tmp_path):
    from lossatlas.datasets import build_source_dataset, derive_dataset, load_dataset

    parent = tmp_path / "digits.h5"
    build_source_dataset("digits", {"source": "digits", "test_fraction": 0.3333, "seed": 0}, str(parent))
    base = load_dataset(parent)
    for q in (0.3, 1.0):
        out = tmp_path / f"q{q}.h5"
        spec = {"derive_from": "digits", "derivation": "corrupt_labels", "fraction": q, "seed": 1}
        derive_dataset(f"q{q}", spec, str(parent), str(out))
        d = load_dataset(out)
        assert np.array_equal(np.bincount(d.y_train, minlength=10), np.bincount(base.y_train, minlength=10))
        changed = np.mean(d.y_train != base.y_train)
        assert 0 < changed <= q + 1e-9  # at most the chosen ⌊q·n⌋ labels move; some stay by chance
        assert changed > 0.6 * q
        assert np.array_equal(d.y_test, base.y_test)  # only the train split is corrupted
        assert np.array_equal(d.id_train, base.id_train)


def test_min_pairwise_difference_hand_computed():
    assert nl.min_pairwise_difference([2.3, 2.1, 2.25, 2.2999]) == pytest.approx(1e-4, rel=1e-9)
    assert math.isnan(nl.min_pairwise_difference([2.3]))


def test_loss_differences_on_fig03_points(tmp_path):
    import json

    import pandas as pd

    points = tmp_path / "points.csv"
    pd.DataFrame({"kind": ["natural", "natural", "natural", "RL"],
                  "train_ce_fro": [2.2656395, 2.2648559, 2.2660001, 2.2656396],  # RL point left out
                  "test_ce_fro": [2.27, 2.2664, 2.2665, 2.2664]}).to_csv(points, index=False)
    out = tmp_path / "loss_differences.json"
    nl.loss_differences(str(points), out)
    res = json.loads(out.read_text())
    assert res["n_points"] == 3
    assert res["min_pairwise_normalised_train_ce_difference"] == pytest.approx(2.2660001 - 2.2656395, rel=1e-9)
    assert res["min_pairwise_normalised_test_ce_difference"] == pytest.approx(1e-4, rel=1e-9)
    assert res["float32_eps"] == pytest.approx(2 ** -23)
    nl.loss_differences(None, out)
    assert "min_pairwise_normalised_train_ce_difference" not in json.loads(out.read_text())


def test_zero_train_error_rule_leaves_networks_out_of_the_fit_and_counts_them(tmp_path):
    assert nl.enters_fit(0.0, True) and nl.enters_fit(0.02, False)
    assert not nl.enters_fit(0.0004, True)
    rng = np.random.default_rng(0)
    n = 8
    train_ce = rng.uniform(2.29, 2.30, n)
    pts = pd.DataFrame({
        "kind": ["natural"] * n, "num_classes": 10, "train_ce": train_ce, "test_ce": 2 * train_ce,
        "train_ce_fro": train_ce, "test_ce_fro": 3 * train_ce - 4.6, "train_ce_l1": train_ce,
        "test_ce_l1": train_ce, "train_err": [0.0] * 6 + [0.01, 0.2]})
    # The two networks that did not fit their training set sit far off the others' line.
    pts.loc[6:, "test_ce_fro"] = 9.0
    pts["in_fit"] = [nl.enters_fit(e, True) for e in pts["train_err"]]
    path = tmp_path / "points.csv"
    pts.to_csv(path, index=False)
    fits, corr = tmp_path / "fits.csv", tmp_path / "corr.csv"
    nl.fit_table({"conv3_corruption": str(path)}, fits, corr)
    row = pd.read_csv(fits).set_index(["figure", "panel"]).loc[("fig03", "left (normalised)")]
    assert row["n"] == 6 and row["left_out"] == 2
    assert row["slope"] == pytest.approx(3.0, rel=1e-6) and row["r2"] == pytest.approx(1.0)
    # Without the rule every network enters (and none is counted as left out).
    pts["in_fit"] = True
    pts.to_csv(path, index=False)
    nl.fit_table({"conv3_corruption": str(path)}, fits, corr)
    row = pd.read_csv(fits).set_index(["figure", "panel"]).loc[("fig03", "left (normalised)")]
    assert row["n"] == 8 and row["left_out"] == 0 and row["r2"] < 0.9


def test_default_study_runs_the_issue_18_retune():
    """config.yaml's normalized_loss study (issue 18): pretraining labels swapped as the paper states (train
    split only, as configs/normalized_loss.yaml), random-label runs random on both splits and trained long enough
    for training error 0, the BN corruption sweep at the BN net's smooth rate, the wide net's σ sweep over the authors'
    code's range, and every experiment naming recipes that train its architectures."""
    import yaml

    from lossatlas.config import REPO_ROOT, validate_config

    cfg = validate_config(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))
    study, datasets = cfg["studies"]["normalized_loss"], cfg["datasets"]
    recipes, experiments = study["recipes"], study["experiments"]
    pretrain = {r["pretrain"]["dataset"] for r in recipes.values() if "pretrain" in r}
    corrupted = [d for d in pretrain if datasets[d].get("derivation") == "corrupt_labels"]
    assert corrupted
    for name in corrupted:
        assert datasets[name].get("corruption", "permute") == "permute"
        assert datasets[name].get("splits", ["train"]) == ["train"]
    rl = [n for n, r in recipes.items()
          if any(datasets[d].get("derivation") == "random_labels" for d in r["datasets"])]
    assert rl
    for name in rl:
        assert all(datasets[d]["splits"] == ["train", "test"] for d in recipes[name]["datasets"])
    assert recipes["nl_rl"]["epochs"] >= 100  # 70 left 1-3 training errors on the G.1.1 stand-ins
    rates = {cfg["optimizers"][o]["lr"] for r in experiments["bn_corruption"]["recipes"] if r not in rl
             for o in recipes[r]["optimizers"]}
    assert rates == {0.01}
    wide = sorted(recipes[r]["init"]["std"] for r in experiments["conv3_wide_init"]["recipes"] if r not in rl)
    assert wide[0] == 0.05 and wide[-1] <= 0.2
    for exp in experiments.values():
        archs = set(exp.get("architectures", []))
        for r in exp["recipes"]:
            assert not archs or archs & set(recipes[r]["architectures"]), (exp, r)
