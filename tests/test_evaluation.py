"""Evaluation: metrics.h5 layout per the shared contract, values equal to a direct computation, invalid entries."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from lossatlas import training as T
from lossatlas.datasets import load_dataset
from lossatlas.evaluation import evaluate_run, load_checkpoint_model
from tests.engine_helpers import make_classification_h5, make_regression_h5, make_spec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    data = make_classification_h5(tmp / "blobs.h5", n_train=50, n_test=21)
    spec = make_spec(seeds=[3, 4], epochs=2, checkpoints={"every": 1, "within_epochs": 1, "per_epoch": 1},
                     eval={"splits": ["train", "test"], "lp": [1, 0.5, "inf"], "full_softmax": True,
                           "batch_size": 8})
    T.train_run(spec, data, tmp / "checkpoints.h5", tmp / "work")
    evaluate_run(spec, tmp / "checkpoints.h5", data, tmp / "metrics.h5")
    return spec, data, tmp / "checkpoints.h5", tmp / "metrics.h5"


def test_layout_follows_the_contract(run):
    spec, data, _, metrics = run
    with h5py.File(metrics) as f:
        assert json.loads(f.attrs["spec"]) == spec and f.attrs["num_classes"] == 3
        assert f["members"][:].tolist() == [3, 4]
        c = len(f["checkpoints/epoch"])
        assert c == 4 and f["checkpoints/valid"].shape == (2, c)
        for s, n in (("train", 50), ("test", 21)):
            assert f[f"{s}/y"].shape == (n,) and f[f"{s}/id"].shape == (n,)
            assert f[f"{s}/pred"].shape == (2, c, n) and f[f"{s}/pred"].dtype == np.int16
            assert f[f"{s}/p_true"].dtype == np.float32 and f[f"{s}/ce"].shape == (2, c, n)
            assert f[f"{s}/probs"].shape == (2, c, n, 3) and f[f"{s}/probs"].dtype == np.float16
            assert f[f"{s}/probs"].compression is None and f[f"{s}/pred"].compression == "gzip"
            assert f[f"{s}/pred"].chunks[0] == 1
            assert sorted(f[f"{s}/summary"]) == sorted(["ce", "mse", "err01", "acc", "lp_1", "lp_0.5", "lp_inf"])
            assert f[f"{s}/summary/ce"].shape == (2, c)
        assert f["test/id"][:].tolist() == list(range(50, 71))
        assert f["weights/frobenius"].shape == (2, c, 2) and f["weights/l1_product"].shape == (2, c)
        assert json.loads(f.attrs["layers"]) == ["1", "4"]
        assert f["status/diverged"].shape == (2,) and f["train_log/loss"].shape == (2, 2)


def test_values_equal_a_direct_computation(run):
    _, data, checkpoints, metrics = run
    ds = load_dataset(data)
    x, y = torch.from_numpy(ds.x_test).double(), torch.from_numpy(ds.y_test)
    model = load_checkpoint_model(checkpoints, 4, 2)
    assert not model.training
    with torch.no_grad():
        p = torch.softmax(model(x), -1).numpy()
    yy = y.numpy()
    onehot = np.eye(3)[yy]
    with h5py.File(metrics) as f:
        np.testing.assert_array_equal(f["test/pred"][1, 2], p.argmax(1))
        np.testing.assert_allclose(f["test/p_true"][1, 2], p[np.arange(21), yy], rtol=1e-6)
        np.testing.assert_allclose(f["test/ce"][1, 2], -np.log(p[np.arange(21), yy]), rtol=1e-5)
        s = {k: f[f"test/summary/{k}"][1, 2] for k in f["test/summary"]}
        np.testing.assert_allclose(f["test/probs"][1, 2], p, atol=1e-3)
    assert s["mse"] == pytest.approx(np.mean(((p - onehot) ** 2).sum(1)))
    assert s["err01"] == pytest.approx(np.mean(p.argmax(1) != yy)) and s["acc"] == pytest.approx(1 - s["err01"])
    assert s["ce"] == pytest.approx(np.mean(-np.log(p[np.arange(21), yy])))
    assert s["lp_1"] == pytest.approx(np.mean(np.abs(p - onehot).sum(1)))
    assert s["lp_0.5"] == pytest.approx(np.mean((np.abs(p - onehot) ** 0.5).sum(1) ** 2))
    assert s["lp_inf"] == pytest.approx(np.mean(np.abs(p - onehot).max(1)))
    w = model[1].weight.detach().double()
    b = model[1].bias.detach().double()
    with h5py.File(metrics) as f:
        fro = f["weights/frobenius"][1, 2]
        assert fro[0] == pytest.approx(math.sqrt(float((w**2).sum() + (b**2).sum())))
        assert f["weights/frobenius_product"][1, 2] == pytest.approx(fro.prod())


def test_invalid_checkpoints_are_nan_and_minus_one(tmp_path):
    data = make_classification_h5(tmp_path / "blobs.h5", n_train=48, n_test=12)
    spec = make_spec(seeds=[0], epochs=2, loss="mse_raw", architecture={"name": "fc", "model": "mlp", "hidden": [8]},
                     optimizer={"name": "sgd", "lr": 1e12, "momentum": 0.0}, dtype="float32")
    T.train_run(spec, data, tmp_path / "c.h5", tmp_path / "w")
    evaluate_run(spec, tmp_path / "c.h5", data, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        assert f["status/diverged"][0] and f["status/diverged_epoch"][0] == 1.0
        assert f["checkpoints/valid"][0].tolist() == [True, False, False]
        assert np.isfinite(f["train/summary/ce"][0, 0]) and np.isnan(f["train/summary/ce"][0, 1:]).all()
        assert (f["train/pred"][0, 1:] == -1).all() and np.isnan(f["train/p_true"][0, 1:]).all()
        assert np.isnan(f["weights/frobenius"][0, 1:]).all()
    with pytest.raises(ValueError, match="invalid"):
        load_checkpoint_model(tmp_path / "c.h5", 0, 1)


def test_regression_writes_mse_and_outputs(tmp_path):
    data = make_regression_h5(tmp_path / "reg.h5", n_train=10, n_test=0)
    spec = make_spec(seeds=[0], epochs=3, batch_size=10, loss="mse_raw",
                     architecture={"name": "t", "model": "mlp", "hidden": [4], "activation": "tanh"})
    T.train_run(spec, data, tmp_path / "c.h5", tmp_path / "w")
    evaluate_run(spec, tmp_path / "c.h5", data, tmp_path / "m.h5")
    model = load_checkpoint_model(tmp_path / "c.h5", 0, 3)
    ds = load_dataset(data)
    with torch.no_grad():
        z = model(torch.from_numpy(ds.x_train).double()).numpy()
    with h5py.File(tmp_path / "m.h5") as f:
        assert f.attrs["num_classes"] == 0 and "train/pred" not in f
        assert sorted(f["train/summary"]) == ["mse"]
        np.testing.assert_allclose(f["train/output"][0, 3], z, rtol=1e-6)
        assert f["train/summary/mse"][0, 3] == pytest.approx(np.mean(((z - ds.y_train) ** 2).sum(1)))
        assert f["test/output"].shape == (1, 4, 0, 1) and np.isnan(f["test/summary/mse"][:]).all()


def test_dataset_mismatch_is_reported(run, tmp_path):
    spec, _, checkpoints, _ = run
    other = make_classification_h5(tmp_path / "other.h5", n_train=50, n_test=21, seed=9)
    with pytest.raises(ValueError, match="hash"):
        evaluate_run(spec, checkpoints, other, tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_convolutional_run_in_channels_last_matches_a_plain_forward(tmp_path):
    data = make_classification_h5(tmp_path / "img.h5", n_train=40, n_test=10, shape=(1, 8, 8))
    spec = make_spec(seeds=[0], epochs=1, architecture={"name": "cnn", "model": "tiny_cnn", "channels": [4, 4],
                                                        "pool_after": [0], "batchnorm": True})
    T.train_run(spec, data, tmp_path / "c.h5", tmp_path / "w")
    evaluate_run(spec, tmp_path / "c.h5", data, tmp_path / "m.h5")
    model = load_checkpoint_model(tmp_path / "c.h5", 0, 1)
    ds = load_dataset(data)
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(ds.x_test).double().contiguous()), -1).numpy()
    with h5py.File(tmp_path / "m.h5") as f:
        np.testing.assert_allclose(f["test/p_true"][0, 1], p[np.arange(10), ds.y_test], rtol=1e-6)
