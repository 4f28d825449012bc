# Functions of rules/normalized_loss.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def nl_experiment_runs(name):
    """Every run of one experiment (its recipes, filtered by its architectures / datasets when given)."""
    exp = NL["experiments"][name]
    where = {"recipe": exp["recipes"]}
    for key, attr in (("architectures", "arch"), ("datasets", "dataset")):
        if key in exp:
            where[attr] = exp[key]
    runs = runs_of("normalized_loss", **where)
    if not runs:
        raise WorkflowError(f"studies.normalized_loss.experiments.{name}: selects no run")
    return runs



def nl_check_config():
    where = "studies.normalized_loss"
    for name, exp in NL.get("experiments", {}).items():
        for recipe in exp["recipes"]:
            if recipe not in NL.get("recipes", {}):
                raise WorkflowError(f"{where}.experiments.{name}.recipes: undefined recipe '{recipe}'")
        if exp["selection"] == "reference" and not any(r.spec.get("checkpoints", {}).get("every") == 1
                                                       for r in nl_experiment_runs(name)):
            raise WorkflowError(f"{where}.experiments.{name}: selection 'reference' needs per-epoch checkpoints "
                                "(checkpoints.every: 1) in its recipes")
    if "fro" not in {n["name"] for n in NL["norms"]}:
        raise WorkflowError(f"{where}.norms: a norm named 'fro' (p: 2) is required")



def nl_post_inputs(wc):
    inputs = {}
    for i, run in enumerate(nl_experiment_runs(wc.experiment)):
        inputs[f"checkpoints{i}"] = run.checkpoints
        inputs[f"data{i}"] = dataset_h5(run.dataset)
    return inputs



def nl_post_runs(wc):
    """What the post-processing needs to know about each run (JSON-able)."""
    out = []
    for run in nl_experiment_runs(wc.experiment):
        names = [run.dataset] + ([run.spec["pretrain"]["dataset"]] if run.spec.get("pretrain") else [])
        out.append({"recipe": run.recipe, "dataset": run.dataset, "arch": run.arch, "spec": jsonable(run.spec),
                    "checkpoints": run.checkpoints, "data": dataset_h5(run.dataset),
                    "dataset_specs": {n: jsonable(DATASETS[n]) for n in names}})
    return out



def nl_settings(wc):
    exp = NL["experiments"][wc.experiment]
    return {"selection": exp["selection"], "label_by": exp["label_by"],
            "reference_train_loss": NL["reference_train_loss"], "stop_train_loss": exp["stop_train_loss"],
            "norms": jsonable(NL["norms"]),
            "first_bias_in_norm": NL["first_bias_in_norm"],
            "require_zero_train_error": exp["require_zero_train_error"], "device": config.get("device", "auto")}



def nl_points(name):
    return f"{NL_DIR}/{name}/points.csv"
