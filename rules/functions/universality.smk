# Functions of rules/universality.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.
from lossatlas.config import apply_defaults


def _check_pair_metrics():
    """Every l_p metric the all-pairs figures use must be evaluated by every universality recipe (eval.lp)."""
    wanted = [m for m in UNI.get("pair_metrics", []) if m.startswith("lp_")]
    for rname, recipe in (UNI.get("recipes") or {}).items():
        have = {f"lp_{p:g}" if isinstance(p, (int, float)) else f"lp_{p}" for p in recipe["eval"]["lp"]}
        missing = [m for m in wanted if m not in have]
        if missing:
            raise WorkflowError(f"studies.universality.pair_metrics: {missing} not evaluated by recipe '{rname}' "
                                f"(add to studies.universality.recipes.{rname}.eval.lp)")



def _lr_probe_spec(wc):
    runs = runs_of(wc.study, recipe=wc.recipe, dataset=wc.dataset, arch=wc.arch, optimizer=wc.optimizer,
                   loss=wc.loss)
    if not runs:
        raise WorkflowError(f"lr_probe: {wc.study}/{wc.recipe}/{wc.dataset}/{wc.arch}/{wc.optimizer}/{wc.loss} "
                            "is not a configuration of the current config")
    spec = {k: v for k, v in runs[0].spec.items() if k not in UNI_PROBE_IGNORES}
    if spec["optimizer"]["lr"] != "probe":
        raise WorkflowError(f"optimizers.{wc.optimizer}: lr is not 'probe', nothing to probe")
    return jsonable(spec)



def _lr_probe_settings(wc):
    """The probe settings live in the universality study (validation fills in the schema's defaults); every
    study probes with them, or with those defaults where the universality study is not configured."""
    if "lr_probe" in UNI:
        return UNI["lr_probe"]
    defaults = {"studies": {"universality": {}}}
    apply_defaults(defaults)
    return defaults["studies"]["universality"]["lr_probe"]



def _uni_runs():
    return runs_of("universality")



def _uni_figure_runs(figure):
    """The runs a figure draws (as lossatlas.analysis.universality.figure_panels selects them): those on its
    datasets (UNI_FIGURES); the width sweep's recipe only in Fig 7; the FC1-role architectures only in Fig 5.
    Table 1 describes every dataset of the study."""
    roles = UNI_FIGURES[figure]
    if roles is None:
        return _uni_runs()
    datasets = {UNI["roles"][role] for role in roles}
    in_sweep, with_shallow = figure.startswith("fig07"), figure.startswith("fig05")
    return [r for r in _uni_runs()
            if r.dataset in datasets and (r.recipe == UNI["roles"]["width_recipe"]) == in_sweep
            and (with_shallow or r.arch not in UNI["roles"]["shallow"])]



def _uni_datasets():
    roles = UNI["roles"]
    names = [roles[k] for k in ("cifar10", "random_labels", "random_pixels", "imagenet20")]
    used = {r.dataset for r in _uni_runs()}
    return [n for n in dict.fromkeys(names) if n in used]



def _uni_widths():
    """Hidden width of each 1-hidden-layer MLP of the Fig 7 recipe (its colour key)."""
    recipe = UNI["recipes"].get(UNI["roles"]["width_recipe"])
    if recipe is None:
        raise WorkflowError(f"studies.universality.roles.width_recipe: no recipe named "
                            f"'{UNI['roles']['width_recipe']}'")
    widths = {}
    for arch in recipe["architectures"]:
        hidden = config["architectures"][arch].get("hidden", [])
        if config["architectures"][arch]["model"] != "mlp" or len(hidden) != 1:
            raise WorkflowError(f"studies.universality.recipes.{UNI['roles']['width_recipe']}: architecture "
                                f"'{arch}' is not a 1-hidden-layer mlp (Fig 7 varies the hidden width)")
        widths[arch] = int(hidden[0])
    return widths
