"""A training worker process: ``python -m lossatlas.train_worker <job.json>``, started by
``lossatlas.training.train_run`` (through ``lossatlas.workers``) to train its share of a block's groups.

Exit status: 0 when its groups are done, 143 after SIGTERM once their state is saved, 1 on an error (logged).
It ends itself when its parent dies (a SIGKILLed job must not leave workers writing into the work_dir that a
restarted job resumes from).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def _exit_with_parent(parent_pid: int, poll_s: float = 0.2) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


def train_worker(job: dict) -> None:
    """This worker's share of ``train_run``: the groups it claims first, in the job's work_dir."""
    import torch

    from lossatlas.training import BlockTrainer, load_phases, run_key
    from lossatlas.workers import claim

    log = logging.getLogger("lossatlas.training")
    device = torch.device("cpu")
    spec, lr = job["spec"], float(job["lr"])
    phases, ds, num_classes, outputs = load_phases(spec, job["dataset_path"], job["pretrain_path"], device)
    trainer = BlockTrainer(spec, phases, ds.input_shape, outputs, num_classes, lr, device, Path(job["work_dir"]),
                           run_key(spec, ds, lr), workers=int(job["workers"]))
    if trainer.key != job["key"]:
        raise RuntimeError(f"{job['dataset_path']}: the dataset changed while the training job was running")

    def claimed() -> Iterator[int]:
        for gi in range(len(trainer.groups)):
            if claim(Path(job["claims_dir"]), gi, job["worker"]):
                log.info("worker %d: group %d, seeds %s", job["worker"], gi,
                         [trainer.seeds[m] for m in trainer.groups[gi]])
                yield gi

    trainer.train_groups(claimed())


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    _exit_with_parent(int(job["parent_pid"]))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers += [logging.FileHandler(path, mode="a") for path in job["log_files"]]  # the rule's log, shared
    logging.basicConfig(level=int(job.get("log_level", logging.INFO)), handlers=handlers, force=True,
                        format=f"%(asctime)s %(name)s [worker {os.getpid()}] %(message)s")
    from lossatlas.entry import tune_allocator

    tune_allocator()
    import torch

    torch.set_num_threads(int(job["threads"]))
    torch.set_num_interop_threads(1)
    try:
        train_worker(job)
    except Exception:
        logging.getLogger("lossatlas.training").exception("training worker failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
