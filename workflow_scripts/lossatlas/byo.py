"""Your own model: an architecture built by an importable factory instead of a registry name (models.MODELS).

An architecture whose ``model`` is ``"module.path:Factory"`` (e.g. ``examples.byo.model:ReluMLP``) is built by
``Factory(input_shape, num_classes, **options)``, the entry's other keys being the options; ``input_shape`` is
one example's shape (a tuple), ``num_classes`` the output width. It must return an ``nn.Module`` mapping float
input (B, *input_shape) to (B, num_classes). The module is imported from the repository root (where the
Snakefile is) or from any installed package. Initialisation (the recipe's ``init:``) redraws every Linear /
Conv / BatchNorm parameter, so a factory model may hold no other parameters. A block's members are stacked as
for the built-in models (``vectorize``): one wide network when every layer can be widened, else
``torch.func.vmap`` or a loop; checkpoints.h5 records which.

Your data (sources ``npz``, ``hdf5`` and ``image_folder``) is read in lossatlas.datasets; models and data are
checked at start-up by lossatlas.byo_checks. This module stays small and torch-free at import: models.py imports it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


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
