# Functions of rules/embedding.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def emb_experiment_runtime(wc):
    """Minutes; paper scale: Fig 5 (width 400 on 1,000 MNIST images) runs about 0.1 s per epoch."""
    return max(30, EMB[wc.experiment]["epochs"] // (300 if wc.experiment == "fig05" else 3000))
