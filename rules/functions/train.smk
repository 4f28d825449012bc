# Functions of rules/train.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def _train_inputs(wc):
    run = run_of_wildcards(wc)
    inputs = {"dataset": dataset_h5(run.dataset)}
    pretrain = run.spec.get("pretrain")
    if pretrain:
        inputs["pretrain"] = dataset_h5(pretrain["dataset"])
    if run.spec["optimizer"]["lr"] == "probe":
        inputs["lr"] = f"results/lr_probe/{run.study}/{run.recipe}/{run.dataset}/{run.arch}/{run.optimizer}/{run.loss}.json"
    return inputs
