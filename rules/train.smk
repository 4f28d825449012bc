# Training and evaluation: one job per seed block of one configuration (lossatlas/training.py,
# lossatlas/evaluation.py). train has no code param on purpose (the training exemption, see
# lossatlas/fingerprint.py): training code edits do not retrain; use --forcerun train. Evaluation feeds training
# (the consistency study derives datasets from its scores), so it is fingerprinted without the train job's code
# (models included: the checkpoints were trained by the old code); metric and evaluation code edits re-evaluate.

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
        code=code_fingerprint("evaluate.py", exclude_code_of="train.py"),
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
