from lossatlas.entry import setup
from lossatlas.training import train_run

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
