"""Bad inputs fail fast, with a message naming the problem, and leave nothing behind.

Tried here: a dataset file that is truncated, not HDF5, missing, of the wrong schema (no ``id``, wrong
schema_version, float labels for a classification task, a missing root attribute) or whose content no longer
matches its stored content hash; a checkpoints.h5 that is truncated, not HDF5, lacks a dataset, or was trained
on another version of the dataset; a learning-rate file with a bad rate; an unreadable resume state; and, via
snakemake, an ImageNet directory that does not exist or has the wrong layout. (Config fuzzing:
tests/test_config_fuzz.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from lossatlas.datasets import DatasetError
from lossatlas.evaluation import evaluate_run
from lossatlas.training import train_run

from .reliability_helpers import TINY_CONFIG, finished_looking_files, make_digits, snakemake, tiny_spec

SPEC = tiny_spec(epochs=1, seeds=[0], checkpoints={"every": 1})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp("data") / "digits.h5")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits) -> Path:
    """A good checkpoints.h5 of SPEC (1 seed, 1 epoch)."""
    run_dir = tmp_path_factory.mktemp("trained")
    train_run(SPEC, digits, run_dir / "checkpoints.h5", run_dir / "_work")
    return run_dir / "checkpoints.h5"


def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _copy_and_edit(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _train_fails(spec: dict, dataset: Path, run_dir: Path, error, match: str) -> None:
    with pytest.raises(error, match=match):
        train_run(spec, dataset, run_dir / "checkpoints.h5", run_dir / "_work")
    assert not run_dir.exists() or finished_looking_files(run_dir) == []
    assert not (run_dir / "_work").exists(), "a job refused at its inputs must not leave a resume folder"


# --------------------------------------------------------------------------------------------- datasets


def _without_train_ids(f):
    del f["train/id"]


def _future_schema(f):
    f.attrs["schema_version"] = 99


def _float_labels(f):
    y = f["train/y"][()]
    del f["train/y"]
    f["train/y"] = y.astype(np.float32)


def _no_task(f):
    del f.attrs["task"]


@pytest.mark.parametrize(("edit", "match"), [
    (_without_train_ids, r"group 'train' lacks \['id'\]"),
    (_future_schema, r"schema_version 99"),
    (_float_labels, r"train/y is float32, expected int64 for classification"),
    (_no_task, r"missing root attributes \['task'\]"),
], ids=["no-ids", "schema-version", "float-labels", "no-task-attr"])
def test_training_refuses_a_dataset_of_the_wrong_schema(tmp_path, digits, edit, match):
    bad = _copy_and_edit(digits, tmp_path / "bad.h5", edit)
    _train_fails(SPEC, bad, tmp_path / "run", DatasetError, f"{bad}: {match}")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_training_refuses_an_unreadable_dataset_file(tmp_path, digits, damage):
    bad = tmp_path / "bad.h5"
    if damage == "truncated":
        _truncate(digits, bad)
    elif damage == "garbage":
        bad.write_bytes(b"not an hdf5 file\n" * 100)
    match = "dataset file does not exist" if damage == "missing" else "cannot be read as HDF5"
    _train_fails(SPEC, bad, tmp_path / "run", DatasetError, f"{bad}: {match}")


def test_evaluation_refuses_an_unreadable_dataset_file(tmp_path, digits, trained):
    bad = _truncate(digits, tmp_path / "bad.h5")
    with pytest.raises(DatasetError, match=f"{bad}: cannot be read as HDF5"):
        evaluate_run(SPEC, trained, bad, tmp_path / "metrics.h5")
    assert list(tmp_path.iterdir()) == [bad]


def _tampered(digits: Path, dst: Path) -> Path:
    """Same schema and stored hash, but one pixel changed (bit rot, a bad copy to the cluster)."""
    def flip(f):
        x = f["train/x"]
        x[0, 0, 0, 0] = x[0, 0, 0, 0] + 1.0

    return _copy_and_edit(digits, dst, flip)


def test_the_dataset_loader_detects_content_that_does_not_match_its_hash(tmp_path, digits):
    from lossatlas.datasets import load_dataset

    bad = _tampered(digits, tmp_path / "bad.h5")
    with pytest.raises(DatasetError, match=f"{bad}: content hash mismatch"):
        load_dataset(bad, verify=True)


def test_training_refuses_a_dataset_whose_content_does_not_match_its_hash(tmp_path, digits):
    bad = _tampered(digits, tmp_path / "bad.h5")
    _train_fails(SPEC, bad, tmp_path / "run", DatasetError, "content hash mismatch")


def test_evaluation_refuses_checkpoints_trained_on_another_version_of_the_dataset(tmp_path, digits, trained):
    """E.g. the dataset was rebuilt with another spec but the runs were kept (--touch): metrics would be wrong."""
    other = tmp_path / "other.h5"
    from lossatlas.datasets import build_source_dataset

    build_source_dataset("digits", {"source": "digits", "test_fraction": 0.3333, "standardize": True, "seed": 1},
                         str(other))
    with pytest.raises(ValueError, match="was trained on dataset hash .* retrain or rebuild"):
        evaluate_run(SPEC, trained, other, tmp_path / "metrics.h5")
    assert not (tmp_path / "metrics.h5").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["other.h5"], "a failed evaluation left files"


# ------------------------------------------------------------------------------------------ checkpoints


def _drop_valid(f):
    del f["checkpoints/valid"]


@pytest.mark.parametrize(("damage", "match"), [
    ("truncated", "truncated file"),
    ("garbage", "file signature not found"),
    ("no-valid", "checkpoints/valid|valid"),
])
def test_evaluation_refuses_a_damaged_checkpoints_file(tmp_path, digits, trained, damage, match):
    bad = tmp_path / "checkpoints.h5"
    if damage == "truncated":
        _truncate(trained, bad)
    elif damage == "garbage":
        bad.write_bytes(b"\0" * 4096)
    else:
        _copy_and_edit(trained, bad, _drop_valid)
    with pytest.raises((OSError, KeyError, ValueError), match=match):
        evaluate_run(SPEC, bad, digits, tmp_path / "metrics.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints.h5"], "a failed evaluation left files"


def test_a_damaged_checkpoints_file_is_named_in_the_error(tmp_path, digits, trained):
    bad = _truncate(trained, tmp_path / "checkpoints.h5")
    with pytest.raises(Exception, match=str(bad)):
        evaluate_run(SPEC, bad, digits, tmp_path / "metrics.h5")


def test_load_checkpoint_model_refuses_a_truncated_file(tmp_path, trained):
    from lossatlas.evaluation import load_checkpoint_model

    bad = _truncate(trained, tmp_path / "checkpoints.h5")
    with pytest.raises(OSError, match="truncated file"):
        load_checkpoint_model(bad, 0, 0)


# ------------------------------------------------------------------------------------------ architectures


@pytest.mark.parametrize(("arch", "match"), [
    ({"model": "mlpx"}, r"architecture 'typo': unknown model 'mlpx'"),
    ({"model": "mlp", "hidden": [16], "widht": 3}, r"architecture 'typo': model 'mlp' has no option\(s\) \['widht'\]"),
    ({"model": "mlp", "hidden": [16], "bias": [True, False, True]}, r"architecture 'typo': bias lists 3 values"),
], ids=["unknown-model", "unknown-option", "bias-length"])
def test_training_refuses_a_wrong_architecture_before_touching_the_run_directory(tmp_path, digits, arch, match):
    _train_fails(tiny_spec(architecture={"name": "typo", **arch}, epochs=1, seeds=[0]), digits, tmp_path / "run",
                 ValueError, match)


@pytest.mark.parametrize("arch", [{"model": "mlpx"}, {"model": "mlp", "hidden": [16], "widht": 3},
                                  {"model": "mlp", "hidden": [-4]}], ids=["unknown-model", "unknown-option",
                                                                          "negative-width"])
def test_an_architecture_typo_is_rejected_when_the_workflow_starts(arch):
    from lossatlas.config import ConfigError, validate_config

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["architectures"]["tiny_mlp"] = arch
    with pytest.raises(ConfigError, match="architectures.tiny_mlp"):
        validate_config(config)


# ------------------------------------------------------------------------------------------ other inputs


@pytest.mark.parametrize("content", ['{"lr": -0.1}', '{"rate": 0.1}', '{"lr": "fast"}'])
def test_training_refuses_a_bad_learning_rate_file(tmp_path, digits, content):
    lr_file = tmp_path / "lr.json"
    lr_file.write_text(content)
    spec = tiny_spec(optimizer={"name": "sgd", "lr": "probe", "lr_candidates": [0.1]}, epochs=1, seeds=[0])
    with pytest.raises(ValueError, match=rf"{lr_file}: expected \{{\"lr\": <positive number>\}}"):
        train_run(spec, digits, tmp_path / "run" / "checkpoints.h5", tmp_path / "run" / "_work", lr_path=lr_file)
    assert not (tmp_path / "run").exists()


def test_an_unreadable_resume_state_is_discarded(tmp_path, digits, trained):
    run_dir = tmp_path / "run"
    (run_dir / "_work").mkdir(parents=True)
    (run_dir / "_work" / "state_g00000.pt").write_bytes(b"\0garbage" * 64)
    train_run(SPEC, digits, run_dir / "checkpoints.h5", run_dir / "_work")
    assert (run_dir / "checkpoints.h5").is_file()


# --------------------------------------------------------------------------------------- ImageNet layout


def _imagenet_config(tmp_path: Path, imagenet_dir: Path) -> Path:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["imagenet_dir"] = str(imagenet_dir)
    config["datasets"]["rel_imagenet"] = {"source": "imagenet", "wnids": ["n01440764", "n01443537"],
                                          "image_size": 16, "train_per_class": 2, "test_per_class": 1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_an_imagenet_directory_that_does_not_exist_or_has_the_wrong_layout_fails_the_dataset_job(tmp_path):
    from PIL import Image

    flat = tmp_path / "flat_imagenet"  # images directly under train/, no <wnid> folders
    (flat / "train").mkdir(parents=True)
    (flat / "val").mkdir()
    Image.new("RGB", (20, 20)).save(flat / "train" / "n01440764_1.JPEG")
    for imagenet_dir, match in ((tmp_path / "nowhere", "does not exist or is not a directory"),
                                (flat, r"lacks class folders \['n01440764', 'n01443537'\]")):
        workdir = tmp_path / f"work_{imagenet_dir.name}"
        proc = snakemake(workdir, "data/rel_imagenet.h5", configfile=_imagenet_config(tmp_path, imagenet_dir))
        log = proc.stdout + proc.stderr
        assert proc.returncode != 0, log[-3000:]
        assert f"imagenet_dir: {imagenet_dir}" in log and match.replace("\\", "") in log.replace("\\", ""), \
            log[-3000:]
        assert not (workdir / "data" / "rel_imagenet.h5").exists()
        assert [p.name for p in (workdir / "data").glob("*")] == [], "the failed job left files in data/"
