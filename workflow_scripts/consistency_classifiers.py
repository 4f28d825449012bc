from lossatlas.analysis.consistency import other_classifiers
from lossatlas.entry import setup

setup(snakemake)
boost = snakemake.params.adaboost
other_classifiers(
    snakemake.input.dataset,
    snakemake.input.scores,
    snakemake.output[0],
    classifiers=snakemake.params.classifiers,
    adaboost_learners=boost["learners"],
    adaboost_c=boost["weak_c"],
    cnn_epochs=snakemake.params.cnn_epochs,
    seed=boost["seed"],
)
