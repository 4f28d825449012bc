"""Start-up checks of your own models and data (lossatlas.byo; the npz / hdf5 / image_folder sources of
lossatlas.datasets): a study on them fails before any job, by name, instead of mid-run.

``startup_errors`` (one call from lossatlas.config.validate_config) checks the files (shapes, dtypes, label
range); each factory architecture: imported, called once on the input shape of every dataset it is paired with
(in a recipe or a loss_patterns search), its output width checked, its parameters initialisable; what each
study needs of the model (``STUDY_NEEDS``); and that a block training would stack with ``torch.func.vmap`` can
run so. Only configs that use a factory or a file source pay: numpy / h5py are imported only for a file source
and torch only for a factory, so the Snakefile's parse stays torch-free otherwise.
"""

from __future__ import annotations

import json

from lossatlas.byo import ByoError, build_factory_model, is_factory, resolve_factory

FILE_SOURCES = ("npz", "hdf5", "image_folder")


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


def file_signature(name: str, spec: dict) -> tuple[tuple[int, ...], str, int]:
    """(input_shape, task, outputs) of an npz / hdf5 / image_folder source, from its checked files; raises
    DatasetError."""
    from lossatlas.datasets import image_folder_classes, read_hdf5_signature, read_npz

    where = f"datasets.{name}"
    if spec["source"] == "image_folder":
        size = int(spec["image_size"])
        return (3, size, size), "classification", len(image_folder_classes(spec["path"], where))
    if spec["source"] == "npz":
        arrays = read_npz(spec["path"], where, spec.get("num_classes"))
        return tuple(arrays["x_train"].shape[1:]), "classification", arrays["num_classes"]
    return read_hdf5_signature(spec["path"], where)


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

    Cheap: each file is read once or twice, each factory called once per study, input shape, init and stacking
    setting it meets (a forward pass of 2 examples, a few more for a study's needs). Imports numpy / h5py only
    when a file source is used and torch only when a factory is (so a config of built-in models and sources
    keeps the Snakefile's parse torch-free)."""
    datasets = config.get("datasets") or {}
    archs = config.get("architectures") or {}
    errs: list[str] = []
    signatures: dict[str, tuple] = {}
    for name, spec in datasets.items():
        if spec.get("source") in FILE_SOURCES:
            try:
                signatures[name] = dataset_signature(datasets, name)
            except ValueError as exc:  # DatasetError naming the key, the file and the array
                errs.append(str(exc))
    factories = set()
    for arch, spec in archs.items():
        if is_factory(spec.get("model", "")):
            try:
                resolve_factory(spec["model"], f"architectures.{arch}.model")
                factories.add(arch)
            except ByoError as exc:
                errs.append(str(exc))
    seen: set[str] = set()
    for study, where, arch, ds, recipe in _model_uses(config):
        if arch not in factories or ds not in datasets:
            continue
        try:
            shape, outputs = signatures.get(ds) or dataset_signature(datasets, ds)
        except ValueError as exc:  # a bad data file (already listed)
            errs.append(str(exc))
            continue
        init = (recipe or {}).get("init", {"scheme": "xavier"})
        # a check repeats only when something it depends on differs (each builds the model once)
        key = json.dumps([study, arch, shape, outputs, init, (recipe or {}).get("vectorize"),
                          (recipe or {}).get("block_size"), len((recipe or {}).get("seeds", []))])
        if key in seen:
            continue
        seen.add(key)
        try:
            model = build_factory_model(archs[arch], shape, outputs, f"architectures.{arch}")
        except ByoError as exc:
            errs.append(str(exc))
            continue
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
    if kind == "layerwise":
        problem = layerwise_error(model, input_shape)
    else:
        problem = functional_forward_error(model, input_shape)
    if problem is None:
        return []
    return [f"studies.{study} cannot run on architecture '{arch}': it needs {need}; {problem}"]


def _stacking_errors(config: dict, where: str, arch: str, model, input_shape, recipe: dict) -> list[str]:
    """A block that training would stack with torch.func.vmap, on a model whose functional forward fails.

    The device is taken as CUDA unless the config says cpu (on CUDA ``auto`` stacks with vmap more often)."""
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
