# Functions of rules/data.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def _source_inputs(wc):
    source = DATASETS[wc.name]["source"]
    return {"raw": f"data/raw/{source}"} if source in DOWNLOADED_SOURCES else {}



def _derive_inputs(wc):
    spec = DATASETS[wc.name]
    inputs = {"parent": dataset_h5(spec["derive_from"])}
    if "index_file" in spec:
        inputs["index_file"] = spec["index_file"]
    return inputs
