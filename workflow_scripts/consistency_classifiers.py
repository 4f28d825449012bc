import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.consistency import other_classifiers  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

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
