"""The device-dependent parts of training, checked on CPU: resume state that loads on any device without
unpickling objects, RNG restored from CPU tensors, the device in the resume key, CUDA determinism settings."""

from __future__ import annotations

import json
import os

import h5py
import pytest
import torch
from torch import nn

from lossatlas import devices, resume, training
from lossatlas.dropout import MemberMasks
from lossatlas.resume import WorkDir
from tests.engine_helpers import make_classification_h5, make_spec


class Trap:
    """Unpickling it would run code (what a hostile resume file could do)."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/lossatlas-trap-ran",))


def test_a_resume_state_holds_only_tensors_and_json_and_loads_on_the_cpu_whatever_the_device(tmp_path):
    saved = WorkDir(tmp_path, "k", torch.device("cpu"))
    saved.open()
    saved.save_state(0, {"position": {"step": 3}}, {"weights": {"w": torch.ones(2)}, "rng": [torch.zeros(3)]})
    raw = torch.load(saved.state_path(0), weights_only=True)  # raises on anything but tensors and plain values
    assert json.loads(raw["meta"]) == {"key": "k", "position": {"step": 3}}
    meta, tensors = WorkDir(tmp_path, "k", torch.device("meta")).load_state(0)
    assert meta["position"] == {"step": 3}
    assert tensors["weights"]["w"].device.type == "cpu" and torch.equal(tensors["weights"]["w"], torch.ones(2))
    assert WorkDir(tmp_path, "other key", torch.device("cpu")).load_state(0) is None


def test_a_state_file_with_a_pickled_object_is_discarded_without_running_it(tmp_path, caplog):
    files = WorkDir(tmp_path, "k", torch.device("cpu"))
    files.open()
    torch.save({"meta": json.dumps({"key": "k"}), "tensors": {"x": Trap()}}, files.state_path(0))
    if os.path.exists("/tmp/lossatlas-trap-ran"):
        os.remove("/tmp/lossatlas-trap-ran")
    assert files.load_state(0) is None
    assert not os.path.exists("/tmp/lossatlas-trap-ran")
    assert "unreadable resume state" in caplog.text


def test_rng_state_on_cuda_saves_the_current_device_only_and_restores_from_cpu_tensors(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or torch.ones(4,
                                                                                                        dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saved every GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", state.device.type,
                                                                                         device)))
    cuda = torch.device("cuda", 1)
    masks = MemberMasks(nn.Linear(2, 2), [5, 6], torch.device("cpu"), torch.float32)
    state = resume.rng_state(cuda, masks)
    assert calls == [("get", cuda)]
    assert all(t.device.type == "cpu" for t in [state["cpu"], state["cuda"], *state["dropout"]])
    masks.generators[0].manual_seed(0)  # changed after the save: restoring must undo it
    resume.set_rng_state(state, cuda, masks)
    assert calls[-1] == ("set", "cpu", cuda)
    assert torch.equal(masks.generators[0].get_state(), state["dropout"][0])
    assert "cuda" not in resume.rng_state(torch.device("cpu"), masks)


@pytest.fixture
def cuda_flags():
    """Restores the global flags that configure_numerics sets (properties monkeypatch cannot restore)."""
    flags = [(torch.backends.cudnn, "deterministic"), (torch.backends.cudnn, "benchmark"),
             (torch.backends.cuda.matmul, "fp32_precision"), (torch.backends.cudnn.conv, "fp32_precision")]
    saved = [getattr(obj, name) for obj, name in flags]
    yield
    for (obj, name), value in zip(flags, saved, strict=True):
        setattr(obj, name, value)


def test_cuda_numerics_are_deterministic_without_tf32_unless_asked(monkeypatch, cuda_flags):
    modes = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms",
                        lambda on, warn_only=False: modes.append((on, warn_only)))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.benchmark = True
    got = devices.configure_numerics(torch.device("cuda"))
    assert modes == [(True, False)] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.fp32_precision == "ieee" and torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert got["tf32"] is False and got["cudnn_deterministic"] is True and got["device"] == "cuda"
    got = devices.configure_numerics(torch.device("cuda"), tf32=True, nondeterministic=["AdaptiveAvgPool2d at '3'"])
    assert modes[-1] == (True, True), "a named layer without a deterministic kernel warns instead of failing"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32" and got["tf32"] is True
    assert got["nondeterministic_layers"] == ["AdaptiveAvgPool2d at '3'"]


def test_cpu_numerics_change_nothing_and_are_recorded_in_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *a, **k: pytest.fail("changed CPU settings"))
    data = make_classification_h5(tmp_path / "blobs.h5")
    torch.set_num_threads(1)
    training.train_run(make_spec(seeds=[0], epochs=1), data, tmp_path / "ck.h5", tmp_path / "work")
    with h5py.File(tmp_path / "ck.h5") as f:
        numerics = json.loads(f.attrs["numerics"])
    assert numerics["device"] == "cpu" and numerics["tf32"] is False


def test_the_resume_key_depends_on_the_device_settings(tmp_path, monkeypatch):
    data = make_classification_h5(tmp_path / "blobs.h5")
    spec = make_spec(seeds=[0])
    phases, ds, classes, outputs = training.load_phases(spec, data, None, torch.device("cpu"))

    def key(numerics: dict) -> str:
        monkeypatch.setattr(training, "configure_numerics", lambda *a: numerics)
        return training.BlockTrainer(spec, phases, ds.input_shape, outputs, classes, 0.1, torch.device("cpu"),
                                     None, "run").key

    assert key({"device": "cpu"}) != key({"device": "cuda", "tf32": False})
    assert key({"device": "cuda", "tf32": False}) != key({"device": "cuda", "tf32": True})


def test_members_per_cuda_group_counts_weights_optimizer_and_activations():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    params = (16 * 8 + 8 + 8 * 3 + 3) * 8
    activations = 4 * (16 + 8 + 8 + 3) * 8  # batch 4: the outputs of Flatten, Linear, ReLU, Linear
    member = 4 * params + 2 * activations
    assert training.members_per_cuda_group(model, (1, 4, 4), 4, 10 * member) == 10
    assert training.members_per_cuda_group(model, (1, 4, 4), 4, 10 * member - 1) == 9
    assert training.members_per_cuda_group(model, (1, 4, 4), 4, 1) == 1, "a member that does not fit trains alone"


def test_worker_processes_on_cuda_are_an_error(tmp_path, monkeypatch):
    data = make_classification_h5(tmp_path / "blobs.h5")
    monkeypatch.setattr(training, "resolve_device", lambda name: torch.device("meta"))
    monkeypatch.setattr(training, "load_phases", lambda *a: pytest.fail("trained before checking workers"))
    with pytest.raises(ValueError, match="worker processes are for CPU"):
        training.train_run(make_spec(), data, tmp_path / "ck.h5", tmp_path / "work", threads=2, workers=2)
