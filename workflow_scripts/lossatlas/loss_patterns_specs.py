"""Job specs and config checks of the loss-patterns study, free of torch and numpy: the Snakefile calls them at
parse time (in every cluster job too), config validation calls ``config_errors``, and the audit builds the same
specs. The experiments that read the specs: lossatlas.analysis.loss_patterns_mpo."""

from __future__ import annotations


def bn_run_spec(study: dict, architectures: dict, protocol: str, variant: str, seed: int, device: str) -> dict:
    """The spec of one BN run (lossatlas.analysis.loss_patterns_mpo.run_bn_experiment; here, torch-free,
    so the Snakefile imports it cheaply) from the study's config (``studies.loss_patterns``, defaults
    filled) and the config's ``architectures``: the protocol's architecture for ``variant`` (else the
    experiment's), its mask and measurement settings, and the fit = the study's ``fit``, overridden by
    ``bn_experiment.fit``, overridden by the protocol's ``fit``."""
    bn = study["bn_experiment"]
    settings = bn["protocols"][protocol]
    arch = settings.get(variant, bn[variant])
    return {"protocol": protocol, "variant": variant, "architecture": {"name": arch, **architectures[arch]},
            "dataset": bn["dataset"], "mask_size": bn["mask_size"],
            "mask_frame": settings.get("mask_frame", False), "delta_cells": settings.get("delta_cells", "all"),
            "fill_probabilities": bn["fill_probabilities"], "seed": int(seed),
            "fit": {**study["fit"], **bn.get("fit", {}), **settings.get("fit", {})},
            "eval_examples": study["eval_examples"], "device": device}


def bn_gamma_words(architecture: dict) -> str:
    """How the BN scale γ of ``architecture`` starts and enters the forward pass, in words for figures."""
    offset = float(architecture.get("bn_scale_offset", 0.0))
    if not architecture.get("batchnorm"):
        return "no BN"
    if offset == 0:
        return "γ = 1 (ordinary BN)"
    if architecture.get("bn_scale_init", "uniform") == "zero":
        return f"γ = 0, γ + {offset:g} in the forward pass (released code)"
    return f"γ ~ U[−{offset:g}, {offset:g}], γ + {offset:g} in the forward pass (App. C)"


def bn_protocols_caption(study: dict, architectures: dict) -> str:
    """One sentence per BN protocol for the report caption of Fig 4: the masks, the cells Δ averages over, the
    white-cell clamp and the BN γ start of the model with BN, as configured (docs/paper_choices.md)."""
    parts = []
    for protocol in study["bn_experiment"]["protocols"]:
        spec = bn_run_spec(study, architectures, protocol, "with_bn", 0, "cpu")
        size = spec["mask_size"]
        masks = "framed (the released code)" if spec["mask_frame"] else "fully random (§4.2)"
        parts.append(f"``{protocol}``: {size}×{size} masks {masks}, Δ over {spec['delta_cells']} cells, "
                     f"white-cell CE clamped at {spec['fit']['white_ce_clamp']:g}, "
                     f"BN {bn_gamma_words(spec['architecture'])}")
        if spec["fit"].get("min_train_acc_gap") is not None:
            parts[-1] += f", runs with a train accuracy gap < {spec['fit']['min_train_acc_gap']:g} dropped"
    return "BN experiment protocols — " + "; ".join(parts) + "."


def search_spec(study: dict, architectures: dict, name: str, device: str) -> dict:
    """The spec of one pattern search (lossatlas.analysis.loss_patterns_mpo.run_search) from the study's config
    (``studies.loss_patterns``, defaults filled): the fit = the study's ``fit`` overridden by the search's own
    ``fit`` (e.g. the released CIFAR-10 recipe: batch 256, augmentation); ``lr_grid`` only where the search
    sets one (a spec without it is the spec a search had before the key existed)."""
    search = study["searches"][name]
    spec = {"search": name, "picture": search["picture"], "picture_size": study["picture_size"],
            "grid": search["grid"], "dataset": search["dataset"],
            "architecture": {"name": search["architecture"], **architectures[search["architecture"]]},
            "fit": {**study["fit"], **search.get("fit", {})}, "eval_examples": study["eval_examples"],
            "seed": search["seed"], "device": device}
    if search.get("lr_grid"):
        spec["lr_grid"] = list(search["lr_grid"])
    return spec


# Sources whose inputs are never images (C, H, W): fit.augment on them is a config error. npz / hdf5 files are
# checked when the fit starts (lossatlas.analysis.loss_patterns_mpo.fit_planes), where their shape is known.
NON_IMAGE_SOURCES = ("iris", "gaussian_mixture", "make_classification", "regression1d", "mnist1d")


def _non_image_source(datasets: dict, name: str) -> str | None:
    """The source of dataset ``name`` (following derive_from) if its inputs are not images, else None."""
    seen = set()
    while name in datasets and name not in seen:
        seen.add(name)
        spec = datasets[name]
        if "derive_from" in spec:
            name = spec["derive_from"]
            continue
        source = spec.get("source")
        if source in NON_IMAGE_SOURCES or (source == "digits" and spec.get("flatten")):
            return f"{source}, flatten: true" if source == "digits" else source
        return None
    return None


def config_errors(config: dict) -> list[str]:
    """``fit.augment`` (image augmentation) set where the data are not images: the study's ``fit``, a search's,
    the BN experiment's or a BN protocol's; each error names the key that turned it on and the dataset."""
    study = (config.get("studies") or {}).get("loss_patterns")
    if not study or not study.get("enabled", True):
        return []
    where, datasets = "studies.loss_patterns", config.get("datasets") or {}
    errs: list[str] = []

    def check(layers: list[tuple[str, dict]], dataset: str, user: str) -> None:
        key = None
        for layer_where, fit in layers:  # later layers override earlier ones
            if "augment" in (fit or {}):
                key = layer_where if fit["augment"] else None
        source = _non_image_source(datasets, dataset)
        if key is not None and source is not None:
            errs.append(f"{key}.augment: image augmentation needs image inputs, but {user} uses dataset "
                        f"'{dataset}' (source {source}); remove it or set augment: null there")

    base = [(f"{where}.fit", study.get("fit"))]
    for name, search in (study.get("searches") or {}).items():
        check(base + [(f"{where}.searches.{name}.fit", search.get("fit"))], search.get("dataset"),
              f"search '{name}'")
    bn = study.get("bn_experiment") or {}
    for protocol, settings in (bn.get("protocols") or {"paper": {}}).items():
        check(base + [(f"{where}.bn_experiment.fit", bn.get("fit")),
                      (f"{where}.bn_experiment.protocols.{protocol}.fit", (settings or {}).get("fit"))],
              bn.get("dataset"), f"the BN experiment ({protocol} protocol)")
    return sorted(set(errs))
