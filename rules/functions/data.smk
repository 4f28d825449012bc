# Functions of rules/data.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def _source_inputs(wc):
    spec = DATASETS[wc.name]
    if spec["source"] in DOWNLOADED_SOURCES:
        return {"raw": f"data/raw/{spec['source']}"}
    if "path" in spec:  # your own npz / hdf5 file (lossatlas.byo): editing it rebuilds the dataset
        return {"file": spec["path"]}
    return {}



def _derive_inputs(wc):
    spec = DATASETS[wc.name]
    inputs = {"parent": dataset_h5(spec["derive_from"])}
    if "index_file" in spec:
        inputs["index_file"] = spec["index_file"]
    return inputs
