"""Config validation: every mistake is reported by key path before any job runs."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from lossatlas.config import (
    ConfigError,
    expand_runs,
    seed_block_name,
    seed_blocks,
    validate_config,
)

from .conftest import REPO


def base_config() -> dict:
    return {
        "datasets": {"digits": {"source": "digits", "test_fraction": 0.3}},
        "architectures": {"fc1": {"model": "mlp", "hidden": []}, "mlp8": {"model": "mlp", "hidden": [8]}},
        "optimizers": {"sgd": {"name": "sgd", "lr": 0.1}},
        "studies": {
            "universality": {
                # The paper roles the universality figures select runs by (schemas/studies/universality).
                "roles": {
                    "cifar10": "digits", "imagenet20": "digits", "random_labels": "digits",
                    "random_pixels": "digits", "sgd": "sgd", "sgdm": "sgd", "shallow": ["fc1"],
                    "width_recipe": "main",
                },
                "recipes": {
                    "main": {
                        "datasets": ["digits"],
                        "architectures": ["fc1", "mlp8"],
                        "optimizers": ["sgd"],
                        "losses": ["ce", "mse_softmax"],
                        "seeds": [0, 1, 2],
                        "block_size": 2,
                    }
                }
            }
        },
    }


def problems_of(cfg: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    return str(err.value)


def test_valid_config_gets_defaults():
    cfg = validate_config(base_config())
    assert cfg["device"] == "auto"
    assert cfg["threads"] == 1
    recipe = cfg["studies"]["universality"]["recipes"]["main"]
    assert recipe["epochs"] == 10 and recipe["batch_size"] == 64


def test_unknown_key_is_named():
    cfg = base_config()
    cfg["studies"]["universality"]["recipes"]["main"]["epoch"] = 5
    msg = problems_of(cfg)
    assert "studies.universality.recipes.main" in msg and "epoch" in msg


def test_negative_learning_rate_is_named():
    cfg = base_config()
    cfg["optimizers"]["sgd"]["lr"] = -0.1
    assert "optimizers.sgd.lr" in problems_of(cfg)


def test_undefined_architecture_is_named():
    cfg = base_config()
    cfg["studies"]["universality"]["recipes"]["main"]["architectures"].append("resnet9000")
    msg = problems_of(cfg)
    assert "studies.universality.recipes.main.architectures[2]" in msg and "resnet9000" in msg


def test_undefined_dataset_parent_is_named():
    cfg = base_config()
    cfg["datasets"]["rl"] = {"derive_from": "nope", "derivation": "random_labels"}
    assert "datasets.rl.derive_from" in problems_of(cfg)


def test_duplicate_seeds_rejected():
    cfg = base_config()
    cfg["studies"]["universality"]["recipes"]["main"]["seeds"] = [0, 0]
    assert "studies.universality.recipes.main.seeds" in problems_of(cfg)


def test_wrong_type_is_named():
    cfg = base_config()
    cfg["threads"] = "two"
    assert "threads" in problems_of(cfg)


def test_unknown_study_rejected():
    cfg = base_config()
    cfg["studies"]["astrology"] = {}
    assert "astrology" in problems_of(cfg)


def test_every_problem_listed_at_once():
    cfg = base_config()
    cfg["optimizers"]["sgd"]["lr"] = -1
    cfg["threads"] = 0
    msg = problems_of(cfg)
    assert "optimizers.sgd.lr" in msg and "threads" in msg


def test_grid_expansion_blocks_and_paths():
    cfg = validate_config(base_config())
    runs = expand_runs(cfg)
    # 2 archs x 2 losses x 2 seed blocks ([0, 1], [2])
    assert len(runs) == 8
    assert {r.block for r in runs} == {"s0-1", "s2"}
    run = runs[0]
    assert run.dir == "results/runs/universality/main/digits/fc1/sgd/ce/s0-1"
    assert run.spec["architecture"] == {"name": "fc1", "model": "mlp", "hidden": []}
    assert run.spec["seeds"] == [0, 1]
    assert "datasets" not in run.spec and "seeds" in run.spec


def test_run_spec_only_holds_what_the_run_uses():
    cfg = validate_config(base_config())
    before = {r.dir: r.spec for r in expand_runs(cfg)}
    cfg2 = copy.deepcopy(cfg)
    cfg2["architectures"]["mlp8"]["hidden"] = [16]
    after = {r.dir: r.spec for r in expand_runs(cfg2)}
    changed = sorted(d for d in before if before[d] != after[d])
    assert changed and all("/mlp8/" in d for d in changed)


def test_seed_block_names():
    assert seed_block_name([0, 1, 2]) == "s0-2"
    assert seed_block_name([4]) == "s4"
    assert seed_block_name([1, 5, 9]) == "s1_5_9"
    assert seed_blocks([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]


def test_default_config_is_valid():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(cfg)


def test_default_consistency_study_is_a_cnn_ensemble_on_real_mnist():
    """Issue 18: the default consistency study trains real st-VGG CNNs (N >= 40 for the main ensemble) on
    real MNIST images, and the linear / small variants are CNNs too."""
    from lossatlas.costs import dataset_shape

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    study = cfg["studies"]["consistency"]
    for role in ("main", "linear", "small", "random_labels"):
        ens = study["ensembles"][role]
        assert cfg["architectures"][ens["arch"]]["model"] == "st_vgg", role
        name = ens["dataset"]
        while "derive_from" in cfg["datasets"][name]:
            name = cfg["datasets"][name]["derive_from"]
        assert cfg["datasets"][name]["source"] == "mnist5k", role
    assert cfg["architectures"][study["ensembles"]["linear"]["arch"]].get("linear") is True
    assert len(study["recipes"][study["ensembles"]["main"]["recipe"]]["seeds"]) >= 40
    assert dataset_shape(cfg, study["ensembles"]["main"]["dataset"]) == ((1, 14, 14), 4000)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["optimizers"]["sgd"].__setitem__("lr", -0.5), "optimizers.sgd.lr"),
        (lambda c: c.__setitem__("thread", 2), "thread"),
        (
            lambda c: c["studies"]["universality"]["recipes"]["main"]["architectures"].append("nonet"),
            "nonet",
        ),
    ],
)
def test_snakemake_refuses_bad_config_before_any_job(tmp_path, snakemake_bin, mutate, key):
    cfg = validate_config(base_config())
    mutate(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [snakemake_bin, "-n", "--configfile", str(path), "--directory", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_dataset_key_foreign_to_its_source_is_named():
    cfg = base_config()
    cfg["datasets"]["digits"]["n_features"] = 3
    assert "datasets.digits.n_features" in problems_of(cfg)


def test_real_data_source_bad_argument_is_named():
    cfg = base_config()
    cfg["datasets"]["m1d"] = {"source": "mnist1d", "max_translation": 0}
    cfg["datasets"]["m5k"] = {"source": "mnist5k", "test_fraction": 1.5}
    problems = problems_of(cfg)
    assert "datasets.m1d.max_translation" in problems and "datasets.m5k.test_fraction" in problems


def test_derivation_missing_required_key_is_named():
    cfg = base_config()
    cfg["datasets"]["noisy"] = {"derive_from": "digits", "derivation": "corrupt_labels"}
    assert "datasets.noisy.fraction" in problems_of(cfg)


def test_changing_one_architectures_learning_rate_changes_only_its_runs():
    """Each architecture with its own optimizer entry (how a per-architecture lr is written): halving one lr
    changes the params of exactly that architecture's training jobs (Snakemake reruns jobs whose params change,
    see tests/test_reliability_recompute.py for the dry-run job lists)."""
    cfg = base_config()
    cfg["optimizers"]["sgd_mlp8"] = {"name": "sgd", "lr": 0.1}
    main = cfg["studies"]["universality"]["recipes"]["main"]
    main["architectures"] = ["fc1"]
    cfg["studies"]["universality"]["recipes"]["mlp8"] = {**main, "architectures": ["mlp8"], "optimizers": ["sgd_mlp8"]}
    before = {r.dir: r.spec for r in expand_runs(validate_config(copy.deepcopy(cfg)))}
    cfg["optimizers"]["sgd_mlp8"]["lr"] = 0.05
    after = {r.dir: r.spec for r in expand_runs(validate_config(cfg))}
    changed = {d for d in before if before[d] != after[d]}
    assert changed == {d for d in before if "/mlp8/" in d} and changed


def test_init_bias_is_refused_outside_the_gaussian_scheme():
    cfg = base_config()
    recipe = cfg["studies"]["universality"]["recipes"]["main"]
    recipe["init"] = {"scheme": "gaussian", "std": 0.05, "bias": "default"}
    validate_config(copy.deepcopy(cfg))
    recipe["init"] = {"scheme": "xavier", "bias": "default"}
    assert "init" in problems_of(cfg)
