"""A training worker process: ``python -m lossatlas.train_worker <job.json>``, started by
``lossatlas.training.train_run`` to train its share of a block's groups (see ``training.train_worker``).

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
from pathlib import Path


def _exit_with_parent(parent_pid: int, poll_s: float = 0.2) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


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
    from lossatlas.training import train_worker

    try:
        train_worker(job)
    except Exception:
        logging.getLogger("lossatlas.training").exception("training worker failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
