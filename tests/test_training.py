"""Training engine: schedules, losses, block-vs-alone equality, determinism, stopping, divergence, phases."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys

import h5py
import numpy as np
import pytest
import torch

from lossatlas import devices, lr_probe, optim
from lossatlas import training as T
from tests.engine_helpers import make_classification_h5, make_regression_h5, make_spec

torch.set_num_threads(1)

# A member trained in a stacked block and the same seed trained alone differ only by float summation order
# (batched vs plain matmul). Float64, 2 epochs, SGD with momentum: observed ~1e-16.
BLOCK_VS_ALONE_TOL = 1e-12


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return make_classification_h5(tmp_path_factory.mktemp("data") / "blobs.h5")


def weights(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f["weights"][k][()] for k in f["weights"]}


def train(tmp_path, dataset, name="ck", **over):
    out = tmp_path / f"{name}.h5"
    T.train_run(make_spec(**over), dataset, out, tmp_path / f"{name}_work")
    return out


# ----------------------------------------------------------------------------------------- pure functions


def test_checkpoint_steps_schedule():
    # 10 steps per epoch, 4 epochs: every 2 epochs + last, 3 points inside epoch 0, explicit epoch 1.
    steps = T.checkpoint_steps({"every": 2, "within_epochs": 1, "per_epoch": 3, "epochs": [1]}, 10, 4)
    assert steps == [0, 2, 5, 8, 10, 20, 40]
    assert T.checkpoint_steps({"every": 3}, 5, 4) == [0, 15, 20]  # the last epoch always
    log_steps = T.checkpoint_steps({"every": 100, "log_spaced": 4}, 10, 100)
    assert log_steps == [0, 1, 10, 100, 1000]
    with pytest.raises(ValueError, match="beyond"):
        T.checkpoint_steps({"epochs": [9]}, 5, 4)


def test_steps_per_epoch_drops_only_a_single_example_batch():
    assert T.steps_per_epoch(96, 16) == 6
    assert T.steps_per_epoch(98, 16) == 7
    assert T.steps_per_epoch(97, 16) == 6


def test_member_groups_split_a_stacked_block_into_one_chunk_per_worker():
    assert T.member_groups(5, True, 2) == [[0, 1, 2], [3, 4]]
    assert T.member_groups(5, True, 1) == [[0, 1, 2, 3, 4]]
    assert T.member_groups(2, True, 4) == [[0], [1]]  # never an empty chunk
    assert T.member_groups(3, False, 2) == [[0], [1], [2]]  # a loop: one group per member, whatever the workers


def test_learning_rate_schedules():
    opt = {"schedule": {"kind": "step", "every": 2, "factor": 10}}
    assert [optim.learning_rate(opt, 1.0, e) for e in range(5)] == [1.0, 1.0, 0.1, 0.1, pytest.approx(0.01)]
    opt = {"schedule": {"kind": "multistep", "milestones": [1, 3], "factor": 2}}
    assert [optim.learning_rate(opt, 1.0, e) for e in range(4)] == [1.0, 0.5, 0.5, 0.25]
    assert optim.learning_rate({}, 0.3, 7) == 0.3


def test_mse_softmax_loss_sums_over_classes():
    z = torch.tensor([[[math.log(2.0), 0.0, 0.0]]], dtype=torch.float64)  # p = (0.5, 0.25, 0.25)
    y = torch.tensor([[0]])
    assert optim.batch_loss("mse_softmax", z, y, 3).item() == pytest.approx(0.375)
    assert optim.batch_loss("ce", z, y, 3).item() == pytest.approx(math.log(2.0))
    # mse_raw against one-hot on raw outputs: (ln2 - 1)² + 0 + 0
    assert optim.batch_loss("mse_raw", z, y, 3).item() == pytest.approx((math.log(2.0) - 1) ** 2)


def test_derive_seed_is_stable_and_distinct():
    assert devices.derive_seed(3, "init") == devices.derive_seed(3, "init")
    assert devices.derive_seed(3, "init") != devices.derive_seed(3, "data")
    assert 0 <= devices.derive_seed(0, "x") < 2**63


# ------------------------------------------------------------------------------------------- training runs


def test_block_member_equals_the_seed_trained_alone(tmp_path, blobs):
    block = train(tmp_path, blobs, "block", seeds=[0, 1, 2], vectorize="always",
                  checkpoints={"every": 1, "within_epochs": 1, "per_epoch": 2})
    alone = train(tmp_path, blobs, "alone", seeds=[1], vectorize="never",
                  checkpoints={"every": 1, "within_epochs": 1, "per_epoch": 2})
    with h5py.File(block) as f:
        assert bool(f.attrs["vectorized"]) and f.attrs["stacking"] == "wide"
        assert f["checkpoints/epoch"][:].tolist() == pytest.approx([0, 2 / 6, 4 / 6, 1, 2])
    wb, wa = weights(block), weights(alone)
    assert wb.keys() == wa.keys() and "1.weight" in wb and "2.running_mean" in wb  # BN buffers too
    diff = max(float(np.abs(wb[k][1] - wa[k][0]).max()) for k in wb)
    assert diff < BLOCK_VS_ALONE_TOL
    # and the members really differ from each other (own init, own data order)
    assert float(np.abs(wb["1.weight"][0, 0] - wb["1.weight"][1, 0]).max()) > 1e-3


def test_same_spec_gives_the_same_bytes(tmp_path, blobs):
    a = train(tmp_path, blobs, "a", seeds=[0, 1])
    b = train(tmp_path, blobs, "b", seeds=[0, 1])
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert not (tmp_path / "a_work").exists()


def test_checkpoints_file_schema(tmp_path, blobs):
    out = train(tmp_path, blobs, seeds=[4, 5], epochs=3, checkpoints={"every": 2})
    with h5py.File(out) as f:
        assert f["members"][:].tolist() == [4, 5]
        assert f["checkpoints/epoch"][:].tolist() == [0, 2, 3]
        assert f["checkpoints/step"][:].tolist() == [0, 12, 18]
        assert f["checkpoints/examples_seen"][:].tolist() == [0, 192, 288]
        assert f["checkpoints/valid"][:].all()
        assert f["weights/1.weight"].shape == (2, 3, 16, 16)
        assert f["weights/1.weight"].chunks[0] == 1
        assert f["train_log/loss"].shape == (2, 3)
        loss = f["train_log/loss"][:]
        assert np.all(loss[:, -1] < loss[:, 0])  # it learns
        assert json.loads(f.attrs["spec"])["seeds"] == [4, 5]
        assert not f["status/diverged"][:].any()


def test_divergence_is_recorded_and_later_checkpoints_invalid(tmp_path, blobs):
    out = train(tmp_path, blobs, seeds=[0, 1], epochs=3, loss="mse_raw",
                optimizer={"name": "sgd", "lr": 1e4, "momentum": 0.0},
                architecture={"name": "fc", "model": "mlp", "hidden": [16]})
    with h5py.File(out) as f:
        assert f["status/diverged"][:].all()
        assert np.all(f["status/diverged_epoch"][:] == 1.0)
        valid = f["checkpoints/valid"][:]
        assert valid[:, 0].all() and not valid[:, 1:].any()
        assert np.isnan(f["weights/1.weight"][0, 1]).all()
        assert np.isnan(f["train_log/loss"][:]).all()


def test_stop_at_train_loss(tmp_path, blobs):
    out = train(tmp_path, blobs, seeds=[0], epochs=8, stop_at_train_loss=0.2)
    with h5py.File(out) as f:
        stopped = f["status/stopped_epoch"][0]
        loss = f["train_log/loss"][0]
        assert 1 <= stopped < 8
        k = int(stopped)
        assert loss[k - 1] <= 0.2 and np.all(loss[: k - 1] > 0.2)  # the first epoch at or below the target
        assert np.isnan(loss[k:]).all()
        assert f["checkpoints/valid"][0].tolist() == [True] * (k + 1) + [False] * (8 - k)
        assert not f["status/diverged"][0]


def test_pretrain_phase_then_main(tmp_path, blobs):
    other = make_classification_h5(tmp_path / "other.h5", seed=7)
    spec = make_spec(seeds=[0], epochs=2, pretrain={"dataset": "other", "epochs": 3})
    T.train_run(spec, blobs, tmp_path / "p.h5", tmp_path / "pw", pretrain_path=other)
    plain = train(tmp_path, blobs, "plain", seeds=[0], epochs=2)
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["train_log/pretrain_loss"].shape == (1, 3)
        assert np.isfinite(f["train_log/pretrain_loss"][:]).all()
        assert f["checkpoints/step"][:].tolist() == [0, 6, 12]  # main phase only
        w0 = f["weights/1.weight"][0, 0]
    assert not np.allclose(w0, weights(plain)["1.weight"][0, 0])  # epoch 0 = after pretraining
    # pretrain.batch_size (Liao et al.'s code pretrains at another batch size than it fine-tunes): only the
    # pretraining phase's batches change; the main phase keeps the recipe's steps
    spec = make_spec(seeds=[0], epochs=2, pretrain={"dataset": "other", "epochs": 3, "batch_size": 48})
    T.train_run(spec, blobs, tmp_path / "q.h5", tmp_path / "qw", pretrain_path=other)
    with h5py.File(tmp_path / "q.h5") as f:
        assert f["checkpoints/step"][:].tolist() == [0, 6, 12]
        assert not np.allclose(f["weights/1.weight"][0, 0], w0)


def test_probe_lr_file_and_adam_adadelta(tmp_path, blobs):
    (tmp_path / "lr.json").write_text(json.dumps({"lr": 0.01}))
    for name in ("adam", "adadelta"):
        spec = make_spec(seeds=[0], epochs=1, optimizer={"name": name, "lr": "probe"})
        T.train_run(spec, blobs, tmp_path / f"{name}.h5", tmp_path / "w", lr_path=tmp_path / "lr.json")
        with h5py.File(tmp_path / f"{name}.h5") as f:
            assert f.attrs["lr"] == 0.01
    with pytest.raises(ValueError, match="probe"):
        T.train_run(make_spec(optimizer={"name": "sgd", "lr": "probe"}), blobs, tmp_path / "x.h5", tmp_path / "w")


def test_regression_with_mse_raw(tmp_path):
    data = make_regression_h5(tmp_path / "reg.h5")
    arch = {"name": "tanh8", "model": "mlp", "hidden": [8], "activation": "tanh"}
    out = train(tmp_path, data, seeds=[0, 1], epochs=30, batch_size=12, loss="mse_raw", architecture=arch,
                optimizer={"name": "adam", "lr": 0.02})
    with h5py.File(out) as f:
        assert f.attrs["task"] == "regression" and f.attrs["num_outputs"] == 1
        loss = f["train_log/loss"][:]
        assert np.all(loss[:, -1] < 0.5 * loss[:, 0])
    with pytest.raises(ValueError, match="regression"):
        train(tmp_path, data, "bad", loss="ce", architecture=arch)


@pytest.mark.parametrize("arch", [
    {"name": "drop", "model": "mlp", "hidden": [16, 8], "dropout_p": 0.5},
    # dropout on 4-d activations (after a conv block) too: channels_last alone and in the wide layout
    {"name": "stvgg", "model": "st_vgg", "variant": "small", "channels": [4, 4], "dense": 8},
], ids=["mlp", "st_vgg"])
def test_dropout_members_stacked_or_in_a_loop_equal_the_seed_alone(tmp_path, blobs, arch):
    """Each member draws its dropout masks from its own generator, so stacking does not change them."""
    stacked = train(tmp_path, blobs, "stacked", seeds=[0, 1, 2], architecture=arch, vectorize="always")
    looped = train(tmp_path, blobs, "looped", seeds=[0, 1], architecture=arch, vectorize="never")
    alone = train(tmp_path, blobs, "alone", seeds=[1], architecture=arch)
    assert T.choose_stacking("auto", T.build_member(make_spec(architecture=arch), (1, 4, 4), 3, 0,
                                                    torch.device("cpu"), torch.float64), 3,
                             torch.device("cpu")) == "wide"  # dropout does not stop it, nor convolutions
    ws, wl, wa = weights(stacked), weights(looped), weights(alone)
    assert max(float(np.abs(wl[k][1] - wa[k][0]).max()) for k in wa) == 0.0
    assert max(float(np.abs(ws[k][1] - wa[k][0]).max()) for k in wa) < BLOCK_VS_ALONE_TOL
    # the masks really drop something: without dropout the same seed trains to other weights
    plain = train(tmp_path, blobs, "plain", seeds=[1], architecture=arch, dropout=False)
    with h5py.File(plain) as p, h5py.File(alone) as a:
        assert float(np.abs(p["train_log/loss"][()] - a["train_log/loss"][()]).max()) > 1e-3


def test_uint8_images_are_standardised(tmp_path):
    data = make_classification_h5(tmp_path / "img.h5", uint8=True, shape=(3, 4, 4))
    out = train(tmp_path, data, seeds=[0], epochs=2, architecture={"name": "t", "model": "tiny_cnn",
                                                                   "channels": [4], "batchnorm": False,
                                                                   "pool_after": []})
    with h5py.File(out) as f:
        assert np.isfinite(f["train_log/loss"][:]).all()


def test_probe_learning_rates(tmp_path, blobs):
    results = lr_probe.probe_learning_rates(make_spec(seeds=[0], loss="mse_raw", architecture={
        "name": "fc", "model": "mlp", "hidden": [16]}, optimizer={"name": "sgd", "lr": "probe"}),
        blobs, [0.01, 1e4, 0.1], epochs=2)
    assert [r["lr"] for r in results] == [1e4, 0.1, 0.01]
    assert results[0]["diverged"] and math.isnan(results[0]["final_loss"])
    assert not results[2]["diverged"] and results[2]["final_loss"] > 0


@pytest.mark.parametrize(("kind", "kwargs", "torch_cls"), [
    ("sgd", {"momentum": 0.0}, lambda p, lr: torch.optim.SGD(p, lr=lr)),
    ("sgd", {"momentum": 0.9, "weight_decay": 1e-3},
     lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=1e-3)),
    ("adam", {}, lambda p, lr: torch.optim.Adam(p, lr=lr)),
    ("adadelta", {"weight_decay": 1e-2}, lambda p, lr: torch.optim.Adadelta(p, lr=lr, weight_decay=1e-2)),
])
def test_optimizers_match_torch_optim(kind, kwargs, torch_cls):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    ours, ref = start.clone().requires_grad_(), start.clone().requires_grad_()
    opt_ours, opt_ref = optim.Optimizer([ours], kind, 0.1, **kwargs), torch_cls([ref], 0.1)
    for i in range(5):
        target = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        for p, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            ((p - target) ** 2 * (i + 1)).sum().backward()
            opt.step()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-14)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_allocator_tuning_applies_on_glibc():
    from lossatlas.entry import tune_allocator

    assert tune_allocator() is True


@pytest.mark.parametrize("vectorize", ["always", "never"])
def test_kernel_l2_trains_each_member_as_alone_and_changes_the_weights(tmp_path, blobs, vectorize):
    # Keras L2 on the kernels (optimizer kernel_l2): wide, vmap and loop all add 2·c·w to every kernel's gradient,
    # member by member, so a block's member still equals the seed alone; and it does act on the weights.
    l2 = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "kernel_l2": 0.05}
    block = train(tmp_path, blobs, "block", seeds=[0, 1], vectorize=vectorize, optimizer=l2)
    alone = train(tmp_path, blobs, "alone", seeds=[1], vectorize="never", optimizer=l2)
    plain = train(tmp_path, blobs, "plain", seeds=[1], vectorize="never")
    wb, wa, wp = weights(block), weights(alone), weights(plain)
    assert max(float(np.abs(wb[k][1] - wa[k][0]).max()) for k in wb) < BLOCK_VS_ALONE_TOL
    final = -1
    assert np.linalg.norm(wa["1.weight"][0, final]) < np.linalg.norm(wp["1.weight"][0, final])


def test_kernel_l2_covers_the_kernels_of_every_stacking():
    from lossatlas.wide import kernel_weights

    arch = {"name": "m", "model": "mlp", "hidden": [8], "batchnorm": True}
    spec = {"architecture": arch, "dropout": False, "init": {"scheme": "default"}}
    models = [T.build_member(spec, (4,), 3, s, torch.device("cpu"), torch.float64) for s in (0, 1)]
    names = {n for n, p in models[0].named_parameters() if any(p is w for w in kernel_weights(models[0]))}
    assert names == {"1.weight", "4.weight"}  # the Linear layers; not the biases, not BatchNorm
    stacked = T.StackedGroup(models, [0, 1])
    assert stacked.kernel_names == ["1.weight", "4.weight"]
    assert [tuple(w.shape) for w in stacked.kernel_weights()] == [(2, 8, 4), (2, 3, 8)]
    assert len(T.WideGroup(models, [0, 1], (4,)).kernel_weights()) == 2
    assert len(T.SingleGroup(models[0], 0).kernel_weights()) == 2
