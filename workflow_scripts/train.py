import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.training import train_run  # noqa: E402

setup(snakemake)
train_run(
    snakemake.params.spec,
    dataset_path=snakemake.input.dataset,
    out_path=snakemake.output.checkpoints,
    work_dir=snakemake.params.work_dir,
    pretrain_path=snakemake.input.get("pretrain"),
    lr_path=snakemake.input.get("lr"),
    threads=snakemake.threads,
)
