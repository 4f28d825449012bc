"""Your own model and data: architectures built by an importable factory, datasets read from your own files,
and the start-up checks that make a study on them fail before any job, by name, instead of mid-run.

Your model. An architecture whose ``model`` is ``"module.path:Factory"`` (e.g. ``examples.byo.model:GeluMLP``)
is built by ``Factory(input_shape, num_classes, **options)``, the entry's other keys being the options;
``input_shape`` is one example's shape (a tuple), ``num_classes`` the output width. It must return an
``nn.Module`` mapping float input (B, *input_shape) to (B, num_classes). The module is imported from the
repository root (where the Snakefile is) or from any installed package. Initialisation (``init:`` of the
recipe) redraws every Linear / Conv / BatchNorm parameter, so a factory model may hold no other parameters.
Stacking a block's members (``vectorize``) works as for the built-in models: wide when every layer can be
widened, else ``torch.func.vmap`` or a loop, and the choice is recorded in checkpoints.h5.

Your data. Sources ``npz`` (arrays ``x_train, y_train, x_test, y_test``; float inputs of any shape or uint8
images (N, C, H, W); integer labels 0..K-1, K = ``num_classes`` or the largest label + 1) and ``hdf5`` (a file
in the project's own schema, lossatlas.datasets), each with ``path`` relative to the working directory.

Start-up checks (``startup_errors``, called from lossatlas.config.validate_config): the files (shapes,
dtypes, label range); each factory architecture imported, called once on the input shape of every dataset a
recipe pairs it with, its output width checked, its parameters initialisable; and what each study needs of
the model (``STUDY_NEEDS``). Only configs that use a factory or a file source pay for them: numpy, h5py and
torch are imported only then, so the Snakefile's parse stays torch-free otherwise.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FILE_SOURCES = ("npz", "hdf5")
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class ByoError(ValueError):
    """A factory or a data file that cannot be used; the message names the config key and the file."""


def is_factory(model: str) -> bool:
    """Whether an architecture's ``model`` names an importable factory (``module:Factory``), not a registry name."""
    return ":" in str(model)


# ------------------------------------------------------------------------------------------------- models


def resolve_factory(reference: str, where: str):
    """The callable ``module:Factory`` names, imported from the repository root or an installed package."""
    module_name, _, attr = reference.partition(":")
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module is reported the same way
        raise ByoError(f"{where}: cannot import '{module_name}' (looked in {REPO_ROOT} and the installed "
                       f"packages): {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ByoError(f"{where}: module '{module_name}' ({getattr(module, '__file__', '?')}) has no callable "
                       f"'{attr}'")
    return factory


def build_factory_model(arch: dict, input_shape: tuple[int, ...], num_classes: int, where: str):
    """``Factory(input_shape, num_classes, **options)`` for an architecture entry; checks it is an nn.Module."""
    from torch import nn

    factory = resolve_factory(arch["model"], f"{where}.model")
    options = {k: v for k, v in arch.items() if k not in ("model", "name")}
    try:
        model = factory(tuple(input_shape), int(num_classes), **options)
    except Exception as exc:
        raise ByoError(f"{where}: {arch['model']}{(tuple(input_shape), int(num_classes))} with options "
                       f"{options} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ByoError(f"{where}: {arch['model']} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def output_width_error(model, input_shape: tuple[int, ...], outputs: int) -> str | None:
    """Why ``model`` does not map a (2, *input_shape) batch to (2, outputs), or None (eval mode, no grad)."""
    import torch

    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as exc:
        return f"forward pass on a (2, {', '.join(map(str, input_shape))}) batch failed: {type(exc).__name__}: {exc}"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, outputs):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return f"returns {shape} for a batch of 2, expected (2, {outputs}) (one output per class)"
    return None


def functional_forward_error(model, input_shape: tuple[int, ...]) -> str | None:
    """Why ``model`` cannot run as ``torch.func.vmap`` over ``functional_call`` with stacked weights, or None.

    Stacked (vmap) training and the loss-patterns plane (K weight vectors in one forward pass) need this."""
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    model.eval()
    params, buffers = stack_module_state([model, model])
    try:
        with torch.no_grad():
            vmap(lambda p, b, x: functional_call(model, (p, b), (x,)), in_dims=(0, 0, None))(
                params, buffers, torch.zeros(2, *input_shape))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def layerwise_error(model, input_shape: tuple[int, ...]) -> str | None:
    """Why Liao et al.'s layerwise normalisation cannot be applied to ``model``, or None.

    It needs every parameter in a Linear / Conv layer or in a BatchNorm right after one (absorbed into it),
    and a positively homogeneous net (ReLU, no skip connections across layers): the normalised net's logits
    times the product of the layer norms must equal the logits, which the analysis checks on every snapshot."""
    import torch

    from lossatlas.analysis.normalized_loss import _affine_and_bn_layers, absorb_batchnorm, normalise_layerwise

    try:
        pairs = _affine_and_bn_layers(model)
    except ValueError as exc:
        return str(exc)
    if not pairs:
        return "it has no Linear or Conv layer"
    covered = {id(p) for pair in pairs for module in pair if module is not None for p in module.parameters()}
    other = [name for name, p in model.named_parameters() if id(p) not in covered]
    if other:
        return f"parameters outside Linear/Conv/BatchNorm layers: {other}"
    x = torch.randn(8, *input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    try:
        absorbed = absorb_batchnorm(model)
        normalised, rhos = normalise_layerwise(absorbed)
        with torch.no_grad():
            raw, scaled = absorbed(x), normalised(x) * torch.tensor(rhos, dtype=torch.float64).prod()
    except (ValueError, RuntimeError) as exc:
        return str(exc)
    gap = float((raw - scaled).abs().max())
    if gap > 1e-8 * max(1.0, float(raw.abs().max())):
        return f"normalised logits × ∏ρ differ from the logits by {gap:.3g}: the net is not positively homogeneous"
    return None


# What each study needs of a factory model, beyond a forward pass with the right output width (checked for all).
# universality and consistency read only per-example outputs and per-layer weight norms; the embedding study
# builds its own fully connected nets (its operators are defined for those only) and takes no architecture.
STUDY_NEEDS = {
    "normalized_loss": ("layerwise weights (Liao et al.'s normalisation, BatchNorm absorbed)", "layerwise"),
    "loss_patterns": ("a functional forward (the MPO plane evaluates many weight vectors at once)", "functional"),
}


def _initialize_error(model, init: dict | None) -> str | None:
    import torch

    from lossatlas.models import initialize

    try:
        initialize(model, init, torch.Generator().manual_seed(0))
    except ValueError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------------------------- data


def read_npz(path: str | Path, where: str, num_classes: int | None = None) -> dict[str, Any]:
    """The four arrays of an npz source, checked; raises ByoError naming ``where`` (the key), the file and the
    array. Returns {"x_train", "y_train", "x_test", "y_test"} (x float32 or uint8, y int64) and ``num_classes``."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ByoError(f"{where}.path: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_ARRAYS if k not in f.files]
            if missing:
                raise ByoError(f"{where}.path: {path} lacks array(s) {missing} (it holds {sorted(f.files)}; "
                               f"needs {list(NPZ_ARRAYS)})")
            arrays = {k: f[k] for k in NPZ_ARRAYS}
    except (OSError, ValueError) as exc:
        if isinstance(exc, ByoError):
            raise
        raise ByoError(f"{where}.path: {path} cannot be read as .npz: {exc}") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise ByoError(f"{where}.path: {path}: x_{split} {x.shape} and y_{split} {y.shape} must be (n, ...) "
                           f"and (n,) with the same n")
        if x.dtype == np.uint8 and x.ndim != 4:
            raise ByoError(f"{where}.path: {path}: x_{split} is uint8 {x.shape}; uint8 inputs must be images "
                           f"(n, C, H, W) (use float for other inputs)")
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise ByoError(f"{where}.path: {path}: x_{split} is {x.dtype}, expected float or uint8")
        if not np.issubdtype(y.dtype, np.integer):
            raise ByoError(f"{where}.path: {path}: y_{split} is {y.dtype}, expected integer class labels")
        if x.dtype != np.uint8 and not np.isfinite(x).all():
            raise ByoError(f"{where}.path: {path}: x_{split} holds NaN or inf")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:] or arrays["x_train"].dtype != arrays["x_test"].dtype:
        raise ByoError(f"{where}.path: {path}: x_train {arrays['x_train'].shape} {arrays['x_train'].dtype} and "
                       f"x_test {arrays['x_test'].shape} {arrays['x_test'].dtype} differ in example shape or dtype")
    if len(arrays["y_train"]) == 0:
        raise ByoError(f"{where}.path: {path}: y_train is empty")
    k = int(num_classes) if num_classes is not None else int(arrays["y_train"].max()) + 1
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ByoError(f"{where}.path: {path}: y_{split} holds labels {int(y.min())}..{int(y.max())}, "
                           f"outside 0..{k - 1} ({'num_classes' if num_classes is not None else 'largest train label'}"
                           f" gives {k} classes)")
    if k < 2:
        raise ByoError(f"{where}: classification needs at least 2 classes, {path} gives {k}")
    out = {key: (v if v.dtype == np.uint8 else v.astype(np.float32)) if key.startswith("x") else v.astype(np.int64)
           for key, v in arrays.items()}
    out["num_classes"] = k
    return out


def hdf5_signature(path: str | Path, where: str) -> tuple[tuple[int, ...], str, int]:
    """(input_shape, task, outputs) of a file in the project's schema, checked without reading x; raises ByoError."""
    import h5py
    import numpy as np

    from lossatlas.datasets import SPLITS, DatasetError, _check_arrays, _read_attrs

    path = Path(path)
    if not path.is_file():
        raise ByoError(f"{where}.path: {path} does not exist")
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
    except (OSError, DatasetError) as exc:
        raise ByoError(f"{where}.path: {exc}") from exc
    if attrs["task"] == "classification":
        k = int(attrs["num_classes"])
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ByoError(f"{where}.path: {path}: y holds labels {int(y.min())}..{int(y.max())}, outside "
                           f"0..{k - 1} (num_classes attribute {k})")
        return tuple(attrs["input_shape"]), "classification", k
    return tuple(attrs["input_shape"]), "regression", int(np.prod(y.shape[1:]))


def file_signature(name: str, spec: dict) -> tuple[tuple[int, ...], str, int]:
    """(input_shape, task, outputs) of an npz / hdf5 source, from its checked file."""
    where = f"datasets.{name}"
    if spec["source"] == "npz":
        arrays = read_npz(spec["path"], where, spec.get("num_classes"))
        return tuple(arrays["x_train"].shape[1:]), "classification", arrays["num_classes"]
    return hdf5_signature(spec["path"], where)


# What the built-in sources give, without building them: (input_shape, outputs) from the resolved spec.
_BUILTIN_SIGNATURES = {
    "digits": lambda s: ((64,) if s["flatten"] else (1, 8, 8), len(s["classes"] or range(10))),
    "iris": lambda s: ((4,), len(s["classes"] or range(3))),
    "gaussian_mixture": lambda s: ((s["n_features"],), s["n_classes"]),
    "make_classification": lambda s: ((s["n_features"],), s["n_classes"]),
    "regression1d": lambda s: ((1,), 1),
    "cifar10": lambda s: ((3, 32, 32), 10),
    "cifar100": lambda s: ((3, 32, 32), 100 if s["label_kind"] == "fine" else 20),
    "mnist": lambda s: ((1, 28, 28), 10),
    "fashion_mnist": lambda s: ((1, 28, 28), 10),
    "imagenet": lambda s: ((3, s["image_size"], s["image_size"]), len(s["wnids"])),
}


def dataset_signature(datasets: dict, name: str) -> tuple[tuple[int, ...], int]:
    """(input_shape, outputs) of ``datasets.<name>``, following derivations to the source (files are read)."""
    from lossatlas.dataset_specs import resolve_spec

    spec = datasets[name]
    if "derive_from" in spec:
        shape, outputs = dataset_signature(datasets, spec["derive_from"])
        if spec["derivation"] == "class_subset":
            return shape, len(spec["classes"])
        if spec["derivation"] == "superclass":
            return shape, 5
        return shape, outputs
    if spec["source"] in FILE_SOURCES:
        shape, _, outputs = file_signature(name, spec)
        return shape, outputs
    return _BUILTIN_SIGNATURES[spec["source"]](resolve_spec(name, spec))


# ------------------------------------------------------------------------------------------ start-up checks


def _model_uses(config: dict):
    """(study, key path, architecture, dataset, recipe or None) for every place a model meets a dataset: the
    recipes' grids and loss_patterns' searches and BN experiment (which name both outside recipes)."""
    for study, scfg in (config.get("studies") or {}).items():
        if not scfg.get("enabled", True):
            continue
        for rname, recipe in (scfg.get("recipes") or {}).items():
            for arch in recipe.get("architectures", []):
                for ds in recipe.get("datasets", []):
                    yield study, f"studies.{study}.recipes.{rname}", arch, ds, recipe
        for sname, search in (scfg.get("searches") or {}).items():
            yield study, f"studies.{study}.searches.{sname}", search["architecture"], search["dataset"], None
        bn = scfg.get("bn_experiment") or {}
        for role in ("without_bn", "with_bn"):
            if role in bn:
                yield study, f"studies.{study}.bn_experiment", bn[role], bn["dataset"], None


def startup_errors(config: dict) -> list[str]:
    """Every problem of the config's own models and data files, one line each naming the key and the file.

    Cheap: each file is read once, each factory called once per (input shape, init) (one forward pass of 2
    examples). Imports numpy / h5py only when a file source is used and torch only when a factory is (so a
    config of built-in models and sources keeps the Snakefile's parse torch-free)."""
    datasets = config.get("datasets") or {}
    archs = config.get("architectures") or {}
    errs: list[str] = []
    signatures: dict[str, tuple] = {}
    for name, spec in datasets.items():
        if spec.get("source") in FILE_SOURCES:
            try:
                signatures[name] = dataset_signature(datasets, name)
            except ByoError as exc:
                errs.append(str(exc))
    factories = {a for a, spec in archs.items() if is_factory(spec.get("model", ""))}
    unimportable: set[str] = set()
    for study, where, arch, ds, recipe in _model_uses(config):
        if arch not in factories or arch in unimportable or ds not in datasets:
            continue
        try:
            shape, outputs = signatures.get(ds) or dataset_signature(datasets, ds)
            model = build_factory_model(archs[arch], shape, outputs, f"architectures.{arch}")
        except ByoError as exc:
            if "cannot import" in str(exc) or "no callable" in str(exc):
                unimportable.add(arch)  # one import error per architecture is enough
            errs.append(str(exc))
            continue
        init = (recipe or {}).get("init", {"scheme": "xavier"})
        problem = output_width_error(model, shape, outputs) or _initialize_error(model, init)
        if problem:
            errs.append(f"architectures.{arch} (dataset '{ds}': input shape {shape}, {outputs} outputs; {where}): "
                        f"{problem}")
            continue
        errs += _study_errors(study, arch, model, shape)
        if recipe is not None:
            errs += _stacking_errors(config, where, arch, model, shape, recipe)
    return sorted(set(errs), key=errs.index)


def _study_errors(study: str, arch: str, model, input_shape: tuple[int, ...]) -> list[str]:
    if study not in STUDY_NEEDS:
        return []
    need, kind = STUDY_NEEDS[study]
    problem = layerwise_error(model, input_shape) if kind == "layerwise" else \
        functional_forward_error(model, input_shape)
    if problem is None:
        return []
    return [f"studies.{study} cannot run on architecture '{arch}': it needs {need}; {problem}"]


def _stacking_errors(config: dict, where: str, arch: str, model, input_shape, recipe: dict) -> list[str]:
    """A block that training would stack with torch.func.vmap, on a model whose functional forward fails.

    The device is taken as CUDA unless the config says cpu (where ``auto`` picks vmap most often)."""
    import torch

    from lossatlas.training import choose_stacking

    mode = recipe.get("vectorize", "auto")
    members = min(len(recipe.get("seeds", [])), int(recipe.get("block_size", 1)))
    device = torch.device("cpu" if config.get("device") == "cpu" else "cuda")
    if choose_stacking(mode, model, members, device) != "vmap":
        return []
    problem = functional_forward_error(model, input_shape)
    if problem is None:
        return []
    return [f"{where}.vectorize: architecture '{arch}' would train stacked with torch.func.vmap ({mode}), "
            f"which fails on it ({problem}); set vectorize: never to train its members in a loop"]
