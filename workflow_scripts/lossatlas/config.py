"""Config validation and the experiment grid.

This module is imported by the Snakefile at every start (also inside every cluster job), so it must stay
cheap: standard library, yaml and jsonschema only. No torch, no numpy.

The grid: every study under ``studies:`` has ``recipes:``; a recipe is a cartesian product
datasets × architectures × optimizers × losses, with its seed list cut into blocks of ``block_size``
seeds. One (recipe, dataset, architecture, optimizer, loss, seed block) is one training job, whose files live
under ``results/runs/<study>/<recipe>/<dataset>/<arch>/<optimizer>/<loss>/<block>/``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossatlas.byo_checks import startup_errors
from lossatlas.io import read_yaml
from lossatlas.loss_patterns_specs import config_errors as loss_patterns_errors

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "config.schema.yaml"
PAPERS = ("universality", "consistency", "normalized_loss", "loss_patterns", "embedding")


class ConfigError(ValueError):
    """A config problem, reported with the key path that causes it."""


# --------------------------------------------------------------------------------------------- validation


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _inline_refs(node, base: Path):
    """Replace every relative-file ``$ref`` by the referenced schema, recursively.

    One self-contained schema lets the default-filling validator reach nested files (jsonschema's
    ``validators.extend`` hooks are not applied behind a ``$ref``).
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            target = (base / ref).resolve()
            sub = read_yaml(target)
            sub.pop("$schema", None)
            return _inline_refs(sub, target.parent)
        return {k: _inline_refs(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, base) for v in node]
    return node


def _load_schema(path: Path = SCHEMA_PATH) -> dict:
    return _inline_refs(read_yaml(path), path.parent)


def _branch_reasons(err) -> list[str]:
    """One short reason per alternative of a failed oneOf/anyOf (instead of 'not valid under any')."""
    by_branch: dict[int, list[str]] = {}
    for sub in err.context:
        inner = _key_path(sub.relative_path) if sub.relative_path else ""
        text = f"{inner}: {sub.message}" if inner else sub.message
        by_branch.setdefault(sub.schema_path[0], []).append(text)
    return [", ".join(reasons) for _, reasons in sorted(by_branch.items())]


def schema_errors(config: dict, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """All JSON-schema violations of ``config`` as ``key.path: message`` lines (no defaults applied)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(_load_schema(schema_path))
    lines = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = _key_path(err.absolute_path)
        msg = err.message
        if err.validator == "additionalProperties":
            msg = f"unknown key(s): {msg.split('(')[-1].rstrip(')')}" if "(" in msg else msg
        elif err.validator in ("oneOf", "anyOf") and err.context:
            msg = "must be one of these forms: " + "; or ".join(_branch_reasons(err))
        lines.append(f"{where}: {msg}")
    return lines


def apply_defaults(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Fill schema defaults into ``config`` in place."""
    from jsonschema import Draft202012Validator, validators

    schema = _load_schema(schema_path)
    base = Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(prop, json.loads(json.dumps(subschema["default"])))
        yield from validate_properties(validator, properties, instance, sub)

    filler = validators.extend(base, {"properties": set_defaults})
    for _ in filler(schema).iter_errors(config):
        pass
    return config


def reference_errors(config: dict) -> list[str]:
    """Names used in studies that are not defined, and other cross-key rules a schema cannot say."""
    from lossatlas.dataset_specs import all_spec_errors

    errs: list[str] = []
    datasets = config.get("datasets", {}) or {}
    archs = config.get("architectures", {}) or {}
    optims = config.get("optimizers", {}) or {}
    for name, ds in datasets.items():
        parent = ds.get("derive_from")
        if parent is not None and parent not in datasets:
            errs.append(f"datasets.{name}.derive_from: undefined dataset '{parent}'")
        if parent == name:
            errs.append(f"datasets.{name}.derive_from: a dataset cannot derive from itself")
    errs += all_spec_errors(datasets)
    for study, scfg in (config.get("studies") or {}).items():
        for rname, recipe in (scfg.get("recipes") or {}).items():
            where = f"studies.{study}.recipes.{rname}"
            for key, pool in (("datasets", datasets), ("architectures", archs), ("optimizers", optims)):
                for i, item in enumerate(recipe.get(key, [])):
                    if item not in pool:
                        kind = key[:-1]
                        errs.append(f"{where}.{key}[{i}]: undefined {kind} '{item}' (define it under {key}:)")
            pre = (recipe.get("pretrain") or {}).get("dataset")
            if pre is not None and pre not in datasets:
                errs.append(f"{where}.pretrain.dataset: undefined dataset '{pre}'")
    errs += loss_patterns_errors(config)
    return errs


def validate_config(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Validate, fill defaults, check references and your own models and data files; raise one ConfigError
    listing every problem by key path."""
    for section in ("datasets", "architectures", "optimizers", "studies"):
        if section in config and config[section] is None:  # a section holding only comments
            config[section] = {}
    problems = schema_errors(config, schema_path)
    if not problems:
        apply_defaults(config, schema_path)
        problems = reference_errors(config)
    if not problems:
        problems = startup_errors(config)  # your own models and data files (lossatlas.byo_checks)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


# --------------------------------------------------------------------------------------------------- grid


def seed_block_name(seeds: list[int]) -> str:
    """``s0-19`` for a contiguous run of seeds, ``s3_7_9`` otherwise."""
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"s{seeds[0]}-{seeds[-1]}"
    return "s" + "_".join(str(s) for s in seeds)


def seed_blocks(seeds: list[int], block_size: int) -> list[list[int]]:
    return [seeds[i : i + block_size] for i in range(0, len(seeds), block_size)]


@dataclass(frozen=True)
class Run:
    """One training job: a block of seeds of one configuration."""

    study: str
    recipe: str
    dataset: str
    arch: str
    optimizer: str
    loss: str
    seeds: tuple[int, ...]
    spec: dict = field(compare=False, hash=False, repr=False)

    @property
    def block(self) -> str:
        return seed_block_name(list(self.seeds))

    @property
    def dir(self) -> str:
        return (
            f"results/runs/{self.study}/{self.recipe}/{self.dataset}/{self.arch}/"
            f"{self.optimizer}/{self.loss}/{self.block}"
        )

    @property
    def checkpoints(self) -> str:
        return f"{self.dir}/checkpoints.h5"

    @property
    def metrics(self) -> str:
        return f"{self.dir}/metrics.h5"


# Recipe keys that are grid axes, not part of every run's spec.
_AXES = ("datasets", "architectures", "optimizers", "losses", "seeds", "block_size")


def run_spec(config: dict, study: str, recipe_name: str, dataset: str, arch: str, optimizer: str,
             loss: str, seeds: list[int]) -> dict:
    """The complete, minimal description of one training job (what its rule receives as params).

    Only values the job uses are included, so that changing e.g. one architecture's width reruns only the
    jobs of that architecture.
    """
    recipe = config["studies"][study]["recipes"][recipe_name]
    spec = {k: v for k, v in recipe.items() if k not in _AXES}
    spec.update(
        dataset=dataset,
        architecture={"name": arch, **config["architectures"][arch]},
        optimizer={"name": optimizer, **config["optimizers"][optimizer]},
        loss=loss,
        seeds=list(seeds),
        device=config["device"],
    )
    return spec


def expand_runs(config: dict) -> list[Run]:
    """Every training job of every study in a validated config (defaults filled), in a stable order."""
    runs = []
    for study, scfg in (config.get("studies") or {}).items():
        if not scfg["enabled"]:
            continue
        for rname, recipe in (scfg.get("recipes") or {}).items():
            for ds in recipe["datasets"]:
                for arch in recipe["architectures"]:
                    for opt in recipe["optimizers"]:
                        for loss in recipe["losses"]:
                            for block in seed_blocks(list(recipe["seeds"]), int(recipe["block_size"])):
                                spec = run_spec(config, study, rname, ds, arch, opt, loss, block)
                                runs.append(Run(study, rname, ds, arch, opt, loss, tuple(block), spec))
    return runs


def index_runs(runs: list[Run]) -> dict[str, Run]:
    return {r.dir: r for r in runs}


def select_runs(runs: list[Run], **where: Any) -> list[Run]:
    """Runs whose attributes match every keyword (a value, or a list/tuple/set of allowed values)."""
    out = []
    for r in runs:
        ok = True
        for key, want in where.items():
            have = getattr(r, key)
            if isinstance(want, (list, tuple, set, frozenset)):
                ok = have in want
            else:
                ok = have == want
            if not ok:
                break
        if ok:
            out.append(r)
    return out


def dataset_lineage(config: dict, name: str) -> list[str]:
    """The dataset and every dataset it derives from, nearest first."""
    chain, seen = [], set()
    while name is not None and name not in seen:
        chain.append(name)
        seen.add(name)
        name = config["datasets"][name].get("derive_from")
    return chain


def jsonable(obj: Any) -> Any:
    """Config values as plain JSON (inf stays a string so params compare stably)."""
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
