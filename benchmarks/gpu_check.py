"""Reproducibility of one small CNN block on a device: trained twice in fresh processes, the two checkpoints.h5
are byte-identical; killed (SIGKILL) mid-run and restarted, the resumed run gives the same bytes again.
Prints one ``name: ok | FAILED`` line per check and exits non-zero if one failed (used by gpu_check.sh).

    .venv/bin/python benchmarks/gpu_check.py --device cuda
    .venv/bin/python benchmarks/gpu_check.py --device cpu --dry     # tiny sizes, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "workflow_scripts")]

CHILD = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
import torch
torch.set_num_threads(1)
from lossatlas.training import train_run
spec, data, out, work = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
train_run(spec, data, out, work, threads=1)
"""


def start(spec: dict, data: Path, out: Path, work: Path) -> subprocess.Popen:
    env = {**os.environ, "LOSSATLAS_STATE_EVERY_S": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO / "workflow_scripts"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(spec), str(data), str(out), str(work)],
                            env=env, stderr=subprocess.PIPE, text=True)


def train(spec: dict, data: Path, out: Path, work: Path) -> str:
    proc = start(spec, data, out, work)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}):\n{err[-3000:]}")
    return err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry", action="store_true", help="tiny sizes (a CI check that this script works)")
    args = parser.parse_args(argv)
    from tests.engine_helpers import make_classification_h5, make_spec

    members, epochs, n = (2, 3, 192) if args.dry else (16, 6, 2048)
    spec = make_spec(seeds=list(range(members)), epochs=epochs, batch_size=32, dtype="float32", device=args.device,
                     vectorize="always", checkpoints={"every": 1, "within_epochs": 1, "per_epoch": 4},
                     architecture={"name": "cnn", "model": "tiny_cnn", "channels": [8, 16], "pool_after": [0, 1],
                                   "batchnorm": True})
    ok = True
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = make_classification_h5(tmp / "data.h5", n_train=n, n_test=16, shape=(3, 16, 16), uint8=True)
        t0 = time.perf_counter()
        train(spec, data, tmp / "a.h5", tmp / "work_a")
        train(spec, data, tmp / "b.h5", tmp / "work_b")
        same = (tmp / "a.h5").read_bytes() == (tmp / "b.h5").read_bytes()
        ok &= same
        print(f"identical_twice: {'ok' if same else 'FAILED'} ({time.perf_counter() - t0:.0f} s)", flush=True)

        t0 = time.perf_counter()
        out, work = tmp / "c.h5", tmp / "work_c"
        proc = start(spec, data, out, work)
        deadline = time.monotonic() + 300
        while not any(work.glob("state_g*.pt")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        err = train(spec, data, out, work)
        resumed = killed and "resuming at" in err
        same = resumed and out.read_bytes() == (tmp / "a.h5").read_bytes()
        ok &= same
        detail = "" if resumed else ": the run ended before it could be killed, or did not resume"
        print(f"resume_identical: {'ok' if same else 'FAILED'} ({time.perf_counter() - t0:.0f} s){detail}",
              flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
