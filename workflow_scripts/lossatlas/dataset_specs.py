"""Which keys each dataset source and derivation takes, their defaults, and spec validation.

Standard library only, so the Snakefile can check every ``datasets:`` entry at start-up (the JSON schema
``schemas/dataset.schema.yaml`` checks types and ranges; this module checks that a key belongs to the
source or derivation it is used with, and that required keys are there). ``lossatlas.datasets`` applies the
defaults below. They live here and not in the schema because they differ per source: a schema default would
be filled into every dataset entry, including those whose source does not take the key.
"""

from __future__ import annotations

from typing import Any

_REQUIRED = object()  # marks a key without a default

# Keys every dataset may carry, whatever builds it.
_COMMON: dict[str, Any] = {"seed": 0}

_SPLIT: dict[str, Any] = {"test_fraction": None, "n_train": None, "standardize": False, "classes": None}

SOURCE_KEYS: dict[str, dict[str, Any]] = {
    "digits": {**_SPLIT, "noise_sigma": 0.0, "flatten": False},
    "iris": dict(_SPLIT),
    "gaussian_mixture": {"n_samples": 1000, "n_features": 2, "n_classes": 2, "cluster_std": 1.0,
                         "class_sep": 1.0, "test_fraction": None, "standardize": False},
    # sklearn.datasets.make_classification's own defaults.
    "make_classification": {"n_samples": 100, "n_features": 20, "n_informative": 2, "n_redundant": 2,
                            "n_classes": 2, "n_clusters_per_class": 2, "class_sep": 1.0, "flip_y": 0.01,
                            "test_fraction": None, "standardize": False},
    "regression1d": {"function": "sin_quad", "n_train": 8, "n_test": 0, "x_min": -1.0, "x_max": 1.0},
    "cifar10": {"input_normalization": None},
    "cifar100": {"label_kind": "fine", "input_normalization": None},
    "mnist": {"input_normalization": None},
    "fashion_mnist": {"input_normalization": None},
    "imagenet": {"wnids": _REQUIRED, "image_size": _REQUIRED, "train_per_class": None,
                 "test_per_class": None, "input_normalization": None},
    # Your own data (lossatlas.byo): a file relative to the working directory.
    "npz": {"path": _REQUIRED, "num_classes": None},
    "hdf5": {"path": _REQUIRED},
    "image_folder": {"path": _REQUIRED, "image_size": _REQUIRED},
    "mnist5k": {"test_fraction": 0.2, "image_size": 28},
    # mnist1d's get_dataset_args() defaults (the published MNIST-1D, which also used seed 42).
    "mnist1d": {"n_samples": 5000, "test_fraction": 0.2, "template_len": 12, "padding": [36, 60],
                "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 0.02,
                "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40},
}

DERIVATION_KEYS: dict[str, dict[str, Any]] = {
    "random_labels": {"splits": ["train"], "label_mode": "uniform"},
    "random_pixels": {"splits": ["train", "test"]},
    "corrupt_labels": {"fraction": _REQUIRED, "splits": ["train"], "corruption": "permute"},
    "class_subset": {"classes": _REQUIRED},
    "superclass": {"superclass": _REQUIRED},
    "subsample": {"fraction": _REQUIRED, "splits": ["train"]},
    "move_examples": {"index_file": _REQUIRED},
    "remove_examples": {"index_file": _REQUIRED, "splits": ["train"]},
}

_STRUCTURAL = ("source", "derive_from", "derivation")


def _table(spec: dict) -> tuple[str, dict[str, Any]] | None:
    if "source" in spec:
        return f"source '{spec['source']}'", SOURCE_KEYS.get(spec["source"])
    if "derivation" in spec:
        return f"derivation '{spec['derivation']}'", DERIVATION_KEYS.get(spec["derivation"])
    return None


def spec_errors(name: str, spec: dict) -> list[str]:
    """Problems of one ``datasets.<name>`` entry, each line naming the key path."""
    where = f"datasets.{name}"
    found = _table(spec)
    if found is None:
        return [f"{where}: needs either 'source' or 'derive_from' + 'derivation'"]
    what, table = found
    if table is None:
        return [f"{where}: unknown {what}"]
    errs = []
    for key in spec:
        if key not in table and key not in _COMMON and key not in _STRUCTURAL:
            takes = ", ".join(sorted(table)) or "seed only"
            errs.append(f"{where}.{key}: not used by {what} (it takes: {takes})")
    for key, default in table.items():
        if default is _REQUIRED and key not in spec:
            errs.append(f"{where}.{key}: required by {what}")
    if spec.get("test_fraction") is not None and spec.get("n_train") is not None and "source" in spec \
            and spec["source"] != "regression1d":
        errs.append(f"{where}.n_train: give either test_fraction (stratified random split) or n_train "
                    "(first n_train examples train), not both")
    if spec.get("source") == "regression1d" and spec.get("x_max", 1.0) <= spec.get("x_min", -1.0):
        errs.append(f"{where}.x_max: must be larger than x_min")
    if spec.get("source") == "mnist1d":
        if spec.get("n_samples", 10) % 10:
            errs.append(f"{where}.n_samples: mnist1d makes n_samples/10 examples per class; give a multiple "
                        "of 10")
        low, high = spec.get("padding", [0, 0])
        if low > high:
            errs.append(f"{where}.padding: [low, high] needs low <= high, got {spec['padding']}")
    if spec.get("source") == "mnist5k" and 28 % int(spec.get("image_size", 28)):
        errs.append(f"{where}.image_size: {spec['image_size']} does not divide 28 (mnist5k downsamples by "
                    "averaging whole blocks: 28, 14, 7, 4 or 2)")
    if spec.get("source") == "cifar100" and "superclass" in spec:
        errs.append(f"{where}.superclass: use a derived dataset with derivation: superclass")
    if spec.get("derivation") == "superclass" and not 0 <= int(spec.get("superclass", 0)) < 20:
        errs.append(f"{where}.superclass: CIFAR-100 coarse labels are 0..19")
    return errs


def resolve_spec(name: str, spec: dict) -> dict:
    """The spec with this source's / derivation's defaults filled in; raises ValueError naming the keys."""
    errs = spec_errors(name, spec)
    if errs:
        raise ValueError("invalid dataset spec:\n  " + "\n  ".join(errs))
    _, table = _table(spec)
    out = {**_COMMON, **{k: v for k, v in table.items() if v is not _REQUIRED}}
    out.update(spec)
    return out


def all_spec_errors(datasets: dict[str, dict]) -> list[str]:
    """``spec_errors`` over a whole ``datasets:`` section (for config validation at start-up)."""
    return [line for name, spec in datasets.items() for line in spec_errors(name, spec)]
