"""Your own model and data (lossatlas/byo.py): factories, npz / hdf5 sources, start-up checks, the worked example."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from lossatlas.config import ConfigError, validate_config
from lossatlas.datasets import build_source_dataset, load_dataset, read_npz
from lossatlas.models import build_model
from tests.conftest import REPO
from tests.engine_helpers import make_classification_h5

EXAMPLE = REPO / "examples" / "byo"


def write_npz(path, n_train=40, n_test=20, classes=3, features=5, **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.standard_normal((n_train, features)).astype(np.float32),
              "y_train": np.arange(n_train) % classes,
              "x_test": rng.standard_normal((n_test, features)).astype(np.float32),
              "y_test": np.arange(n_test) % classes}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def byo_config(data_path, model="tests.byo_factories:gelu_mlp", study="consistency", **arch_options):
    return {
        "device": "cpu",
        "datasets": {"mine": {"source": "npz", "path": str(data_path)}},
        "architectures": {"own": {"model": model, **arch_options}},
        "optimizers": {"sgd": {"name": "sgd", "lr": 0.1}},
        "studies": {study: {"recipes": {"r": {"datasets": ["mine"], "architectures": ["own"],
                                              "optimizers": ["sgd"], "seeds": [0, 1]}}}},
    }


def startup_message(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    return str(err.value)


# ------------------------------------------------------------------------------------------ the good path


def test_factory_config_validates_and_builds_the_users_model(tmp_path):
    cfg = validate_config(byo_config(write_npz(tmp_path / "d.npz"), hidden=[7]))
    model = build_model({"name": "own", **cfg["architectures"]["own"]}, (5,), 3)
    assert [tuple(p.shape) for p in model.parameters()] == [(7, 5), (7,), (3, 7), (3,)]


def test_worked_example_config_is_valid_and_its_data_regenerates(tmp_path):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_data
    finally:
        sys.path.remove(str(EXAMPLE))
    make_data.make(tmp_path / "spirals.npz")
    with np.load(tmp_path / "spirals.npz") as fresh, np.load(EXAMPLE / "spirals.npz") as committed:
        assert sorted(fresh.files) == sorted(committed.files)
        for key in fresh.files:
            np.testing.assert_array_equal(fresh[key], committed[key])
    cfg = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    cfg["datasets"]["spirals"]["path"] = str(EXAMPLE / "spirals.npz")
    validate_config(cfg)


def test_npz_source_builds_a_dataset_file(tmp_path):
    data = write_npz(tmp_path / "d.npz", y_train=np.array([0, 1, 2, 3] * 10), y_test=np.array([3, 2] * 10))
    build_source_dataset("mine", {"source": "npz", "path": str(data)}, str(tmp_path / "mine.h5"))
    d = load_dataset(tmp_path / "mine.h5", verify=True)
    assert d.num_classes == 4 and d.input_shape == (5,) and d.x_train.dtype == np.float32
    assert d.id_test.tolist() == list(range(40, 60))
    assert json.loads(json.dumps(d.attrs["derivation"]))[0]["source"] == "npz"


def test_hdf5_source_copies_a_file_in_the_projects_schema(tmp_path):
    own = make_classification_h5(tmp_path / "own.h5", classes=3, shape=(1, 4, 4))
    build_source_dataset("mine", {"source": "hdf5", "path": str(own)}, str(tmp_path / "mine.h5"))
    mine, original = load_dataset(tmp_path / "mine.h5", verify=True), load_dataset(own)
    assert mine.name == "mine" and mine.attrs["source"] == "hdf5"
    np.testing.assert_array_equal(mine.x_train, original.x_train)
    assert mine.attrs["content_hash"] == original.attrs["content_hash"]  # same content, whatever the name


def test_config_without_factories_or_files_imports_no_torch_or_numpy():
    code = ("import sys, yaml; from lossatlas.config import validate_config; "
            "validate_config(yaml.safe_load(open('tests/configs/tiny.yaml'))); "
            "print(sorted({'torch', 'numpy', 'h5py'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------- bad models


def test_unimportable_factory_names_the_key_and_the_import_error(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), model="no_such_pkg.models:Net"))
    assert "architectures.own.model: cannot import 'no_such_pkg.models'" in msg
    assert "ModuleNotFoundError" in msg


def test_missing_factory_name_in_an_existing_module(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), model="tests.byo_factories:Nope"))
    assert "architectures.own.model" in msg and "has no callable 'Nope'" in msg


def test_factory_returning_something_else_than_a_module(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), model="tests.byo_factories:not_a_module"))
    assert "architectures.own: tests.byo_factories:not_a_module returned list, not a torch.nn.Module" in msg


def test_factory_with_the_wrong_output_width(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), model="tests.byo_factories:wrong_width"))
    assert "architectures.own (dataset 'mine'" in msg and "expected (2, 3)" in msg


def test_factory_rejecting_an_option_names_it(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), depth=3))
    assert "architectures.own" in msg and "depth" in msg


def test_parameters_outside_known_layers_cannot_be_initialised(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), model="tests.byo_factories:ScaledMLP"))
    assert "architectures.own" in msg and "no rule for parameter(s) ['scale']" in msg


# ------------------------------------------------------------------------------ what each study needs


def test_normalized_loss_refuses_a_model_that_is_not_positively_homogeneous(tmp_path):
    msg = startup_message(byo_config(write_npz(tmp_path / "d.npz"), study="normalized_loss"))
    assert "studies.normalized_loss cannot run on architecture 'own'" in msg
    assert "not positively homogeneous" in msg


def test_normalized_loss_accepts_the_worked_examples_relu_model(tmp_path):
    validate_config(byo_config(write_npz(tmp_path / "d.npz"), model="examples.byo.model:ReluMLP",
                               study="normalized_loss"))


def test_vmap_stacking_of_a_model_without_a_functional_forward_is_refused(tmp_path):
    cfg = byo_config(write_npz(tmp_path / "d.npz"), model="tests.byo_factories:DataDependentMLP")
    msg = startup_message(cfg)
    assert "studies.consistency.recipes.r.vectorize" in msg and "set vectorize: never" in msg
    cfg["studies"]["consistency"]["recipes"]["r"]["vectorize"] = "never"
    validate_config(cfg)  # in a loop it trains


def test_loss_patterns_needs_a_functional_forward(tmp_path):
    cfg = byo_config(write_npz(tmp_path / "d.npz"), model="tests.byo_factories:DataDependentMLP")
    cfg["studies"]["consistency"]["recipes"]["r"]["vectorize"] = "never"
    cfg["studies"]["loss_patterns"] = {
        "searches": {"s": {"picture": "ring", "grid": 4, "dataset": "mine", "architecture": "own"}},
        "figures": {"fig01a": "s", "fig01b": "s", "fig02": "s", "fig05": ["s"], "fig06": ["s"]},
        "bn_experiment": {"dataset": "mine", "without_bn": "own", "with_bn": "own"}}
    msg = startup_message(cfg)
    assert "studies.loss_patterns cannot run on architecture 'own': it needs a functional forward" in msg


# ---------------------------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("override, expected", [
    ({"y_test": None}, "lacks array(s) ['y_test']"),
    ({"y_train": np.arange(39) % 3}, "x_train (40, 5) and y_train (39,)"),
    ({"y_test": np.array([0, 1, 5] * 6 + [0, 1])}, "y_test holds labels 0..5, outside 0..2"),
    ({"y_train": np.arange(40) % 3 - 1}, "y_train holds labels -1..1"),
    ({"y_train": (np.arange(40) % 3).astype(np.float32)}, "y_train is float32, expected integer class labels"),
    ({"x_test": np.zeros((20, 6), np.float32)}, "differ in example shape"),
])
def test_bad_npz_fails_at_start_up_naming_the_key_the_file_and_the_array(tmp_path, override, expected):
    data = write_npz(tmp_path / "d.npz", **override)
    msg = startup_message(byo_config(data))
    assert f"datasets.mine.path: {data}" in msg and expected in msg


def test_declared_num_classes_bounds_the_labels(tmp_path):
    data = write_npz(tmp_path / "d.npz")
    assert read_npz(data, "datasets.mine", num_classes=5)["num_classes"] == 5
    cfg = byo_config(data)
    cfg["datasets"]["mine"]["num_classes"] = 2
    assert "outside 0..1 (num_classes gives 2 classes)" in startup_message(cfg)


def test_missing_data_file_is_named(tmp_path):
    msg = startup_message(byo_config(tmp_path / "absent.npz"))
    assert f"datasets.mine.path: {tmp_path / 'absent.npz'} does not exist" in msg


def test_hdf5_file_with_labels_out_of_range_is_named(tmp_path):
    import h5py

    own = make_classification_h5(tmp_path / "own.h5", classes=3)
    with h5py.File(own, "r+") as f:
        f["train/y"][0] = 7
    cfg = byo_config(tmp_path / "unused.npz")
    cfg["datasets"]["mine"] = {"source": "hdf5", "path": str(own)}
    assert f"datasets.mine.path: {own}: y holds labels 0..7, outside 0..2" in startup_message(cfg)


def test_every_problem_is_listed_at_once(tmp_path):
    cfg = byo_config(write_npz(tmp_path / "d.npz", y_test=None), model="no_such_pkg:Net")
    cfg["datasets"]["ok"] = {"source": "npz", "path": str(write_npz(tmp_path / "ok.npz"))}
    cfg["studies"]["consistency"]["recipes"]["r"]["datasets"] = ["ok"]
    msg = startup_message(copy.deepcopy(cfg))
    assert "lacks array(s) ['y_test']" in msg and "cannot import 'no_such_pkg'" in msg


# ------------------------------------------------------------------------------------------- end to end


def test_bad_input_stops_snakemake_before_any_job(tmp_path, snakemake_bin):
    data = write_npz(tmp_path / "d.npz", y_test=np.array([0, 1, 5] * 6 + [0, 1]))
    cfg = byo_config(data, model="tests.byo_factories:not_a_module")
    cfg["datasets"]["ok"] = {"source": "npz", "path": str(write_npz(tmp_path / "ok.npz"))}
    cfg["studies"]["consistency"]["recipes"]["r"]["datasets"] = ["ok"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([snakemake_bin, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"datasets.mine.path: {data}: y_test holds labels 0..5, outside 0..2" in proc.stderr
    assert "architectures.own: tests.byo_factories:not_a_module returned list, not a torch.nn.Module" in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


# One figure and the summary table of two of the analyses the worked example runs, to keep the test's job count
# small (24 jobs): the universality study adds 18 more (8 training blocks), all_figures ~30 figure jobs and the
# claims table, which reads every figure; `snakemake --configfile examples/byo/config.yaml` runs all of them.
EXAMPLE_TARGETS = [
    "results/analysis/consistency/summary.json",
    "results/figures/consistency/fig01_consistency_phases.png",
    "results/analysis/normalized_loss/fits.csv",
    "results/figures/normalized_loss/fig01_corruption_vs_generalization.png",
]


@pytest.mark.slow
def test_worked_example_runs_through_snakemake_to_figures_and_summaries(tmp_path, snakemake_bin):
    import csv

    import h5py

    (tmp_path / "examples" / "byo").mkdir(parents=True)
    (tmp_path / "examples" / "byo" / "spirals.npz").write_bytes((EXAMPLE / "spirals.npz").read_bytes())
    cfg = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    cfg["studies"]["universality"]["enabled"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [snakemake_bin, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(tmp_path / "config.yaml"), "--cores", "2", *EXAMPLE_TARGETS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for target in EXAMPLE_TARGETS:
        assert (tmp_path / target).stat().st_size > 0, target
    run = tmp_path / "results/runs/consistency/main/spirals/relu_mlp/sgdm/ce/s0-2/checkpoints.h5"
    with h5py.File(run) as f:
        assert f.attrs["stacking"] == "vmap"  # the user's class cannot be widened: stacked with torch.func
        assert json.loads(f.attrs["spec"])["architecture"]["model"] == "examples.byo.model:ReluMLP"
    assert json.loads((tmp_path / EXAMPLE_TARGETS[0]).read_text()), "empty consistency summary"
    with open(tmp_path / "results/analysis/normalized_loss/bn_corruption/points.csv") as fh:
        points = list(csv.DictReader(fh))
    assert len(points) == 6  # 3 recipes x 2 seeds, each a measured snapshot of the user's model
    assert all(float(p["test_ce_fro"]) > 0 for p in points)


def _image_tree(root, layout):
    from PIL import Image

    for split, classes in layout.items():
        for c, name in enumerate(classes):  # red channel 40 × the class's place in the listed order
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (12, 10), (40 * c, 10 * i, 200)).save(root / split / name / f"{i}.png")
    return root


def test_image_folder_source_reads_a_class_tree(tmp_path):
    root = _image_tree(tmp_path / "imgs", {"train": ["cat", "ant"], "test": ["cat", "ant"]})
    build_source_dataset("mine", {"source": "image_folder", "path": str(root), "image_size": 8},
                         str(tmp_path / "mine.h5"))
    d = load_dataset(tmp_path / "mine.h5", verify=True)
    assert d.class_names == ["ant", "cat"] and d.x_train.shape == (4, 3, 8, 8) and d.x_train.dtype == np.uint8
    assert d.y_train.tolist() == [0, 0, 1, 1]
    assert int(d.x_train[0, 0, 0, 0]) == 40 and int(d.x_train[2, 0, 0, 0]) == 0  # red: ant 40, cat 0 (see above)


def test_image_folder_with_other_test_classes_fails_at_start_up(tmp_path):
    root = _image_tree(tmp_path / "imgs", {"train": ["ant", "cat"], "test": ["ant", "dog"]})
    cfg = byo_config(tmp_path / "unused.npz")
    cfg["datasets"]["mine"] = {"source": "image_folder", "path": str(root), "image_size": 8}
    msg = startup_message(cfg)
    assert f"datasets.mine.path: {root / 'test'} has class folders ['ant', 'dog']" in msg
