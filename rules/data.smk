# Datasets: raw downloads (local rule: compute nodes often have no internet), sources built into the one
# HDF5 schema, and derivations (one rule, one parent each), all documented in lossatlas/datasets.py.


localrules:
    download_dataset,


rule download_dataset:
    output:
        directory("data/raw/{source}"),
    params:
        mirror=lambda wc: config["download"]["mirrors"].get(wc.source),
    log:
        "results/logs/data/download_{source}.log",
    wildcard_constraints:
        source=_alternation(DOWNLOADED_SOURCES),
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/download_dataset.py"


rule prepare_dataset:
    input:
        unpack(_source_inputs),
    output:
        "data/{name}.h5",
    params:
        spec=lambda wc: jsonable(DATASETS[wc.name]),
        imagenet_dir=lambda wc: config["imagenet_dir"] if DATASETS[wc.name]["source"] == "imagenet" else None,
        code=code_fingerprint("prepare_dataset.py"),
    log:
        "results/logs/data/prepare_{name}.log",
    wildcard_constraints:
        name=_alternation(SOURCE_DATASETS),
    resources:
        # The whole dataset is held in memory (ImageNet-20 at 224 px is about 4 GB of uint8).
        mem_mb=lambda wc: dataset_mem_mb(config, wc.name),
        runtime=60,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/prepare_dataset.py"


rule derive_dataset:
    input:
        unpack(_derive_inputs),
    output:
        "data/{name}.h5",
    params:
        spec=lambda wc: jsonable(DATASETS[wc.name]),
        code=code_fingerprint("derive_dataset.py"),
    log:
        "results/logs/data/derive_{name}.log",
    wildcard_constraints:
        name=_alternation(DERIVED_DATASETS),
    resources:
        mem_mb=lambda wc: dataset_mem_mb(config, wc.name),
        runtime=30,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/derive_dataset.py"
