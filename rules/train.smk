# Training and evaluation: one job per seed block of one configuration (lossatlas/training.py,
# lossatlas/evaluation.py). Training code edits do not retrain (use --forcerun train); metric code edits
# re-evaluate, because evaluation's params carry a hash of the metric code.

RUN_PATTERN = "results/runs/{study}/{recipe}/{dataset}/{arch}/{optimizer}/{loss}/{block}"
LOG_PATTERN = RUN_PATTERN.replace("results/runs/", "results/logs/runs/", 1)


rule train:
    input:
        unpack(_train_inputs),
    output:
        checkpoints=f"{RUN_PATTERN}/checkpoints.h5",
    params:
        spec=lambda wc: jsonable(run_of_wildcards(wc).spec),
        work_dir=lambda wc: f"{run_of_wildcards(wc).dir}/_work",
    log:
        f"{LOG_PATTERN}/train.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda wc: run_cost(config, run_of_wildcards(wc).spec).mem_mb,
        runtime=lambda wc: run_cost(config, run_of_wildcards(wc).spec).runtime_minutes,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/train.py"


rule evaluate:
    input:
        checkpoints=f"{RUN_PATTERN}/checkpoints.h5",
        dataset=lambda wc: dataset_h5(wc.dataset),
    output:
        metrics=f"{RUN_PATTERN}/metrics.h5",
    params:
        spec=lambda wc: jsonable(run_of_wildcards(wc).spec),
        code=source_hash(f"{LIB}/metrics.py") + source_hash(f"{LIB}/evaluation.py"),
    log:
        f"{LOG_PATTERN}/evaluate.log",
    threads: config["threads"]
    resources:
        # Evaluation streams the checkpoints once over train and test: a fraction of training's cost.
        mem_mb=lambda wc: run_cost(config, run_of_wildcards(wc).spec).mem_mb,
        runtime=lambda wc: max(10, run_cost(config, run_of_wildcards(wc).spec).runtime_minutes // 3),
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/evaluate.py"
