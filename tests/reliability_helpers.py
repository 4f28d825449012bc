"""Shared helpers of the reliability tests (tests/test_reliability_*.py): tiny runs in subprocesses with faults,
exact comparison of HDF5 outputs, snakemake invocations and dry-run job lists, throwaway copies of the repo."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .conftest import REPO, VENV_BIN

SNAKEMAKE = str(VENV_BIN / "snakemake") if (VENV_BIN / "snakemake").exists() else "snakemake"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"

DIGITS_SPEC = {"source": "digits", "test_fraction": 0.3333, "standardize": True, "seed": 0}


def make_digits(path: Path) -> Path:
    from lossatlas.datasets import build_source_dataset

    build_source_dataset("digits", DIGITS_SPEC, str(path))
    return path


def tiny_spec(**overrides: Any) -> dict:
    """A run spec as ``lossatlas.config.run_spec`` builds it: a small MLP on digits, 2 seeds, 3 epochs."""
    spec = {
        "dataset": "digits", "architecture": {"name": "mlp16", "model": "mlp", "hidden": [16]},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "loss": "ce", "seeds": [0, 1], "epochs": 3,
        "batch_size": 64, "dtype": "float32", "dropout": True, "init": {"scheme": "default"},
        "checkpoints": {"every": 1, "within_epochs": 1, "per_epoch": 2}, "stop_at_train_loss": None,
        "eval": {"splits": ["train", "test"], "lp": [1, 2, "inf"], "full_softmax": False, "batch_size": 256},
        "vectorize": "auto", "device": "cpu",
    }
    spec.update(overrides)
    return spec


# ------------------------------------------------------------------------------------------ subprocess runs


_FORK_SERVER: Any = None


def _fork_context() -> Any:
    """A forkserver that imported torch and the engine once; every run forks from it (fresh state each time)."""
    global _FORK_SERVER
    if _FORK_SERVER is None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "h5py", "lossatlas.training", "lossatlas.evaluation",
                                     "lossatlas.models", "lossatlas.datasets", "tests.reliability_driver"])
        _FORK_SERVER = ctx
    return _FORK_SERVER


def _preloaded_entry(args: dict, env: dict[str, str], log_path: str) -> None:
    from . import reliability_driver

    reliability_driver.child(args, env, log_path)


def run_driver(what: str, args: dict, tmp: Path, fault: str | None = None, state_every_s: float = 0.0,
               timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run train_run / evaluate_run (tests/reliability_driver.py) in a process of its own, forked from a
    server that already imported torch; ``fault`` as documented there. Returns the exit code and stderr."""
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"{what}_{time.monotonic_ns()}.log"
    env = {"LOSSATLAS_STATE_EVERY_S": str(state_every_s), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           **(env or {})}
    if fault:
        env["LOSSATLAS_TEST_FAULT"] = fault
    plain = {"what": what, **{k: str(v) if isinstance(v, Path) else v for k, v in args.items()}}
    proc = _fork_context().Process(target=_preloaded_entry, args=(plain, env, str(log_path)))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise AssertionError(f"{what} did not finish within {timeout} s")
    stderr = log_path.read_text() if log_path.exists() else ""
    return subprocess.CompletedProcess([what], proc.exitcode, "", stderr)


def train(spec: dict, dataset: Path, run_dir: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    return run_driver("train", {"spec": spec, "dataset": dataset, "out": run_dir / "checkpoints.h5",
                                "work_dir": run_dir / "_work"}, run_dir.parent / "args", fault)


def evaluate(spec: dict, dataset: Path, run_dir: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    return run_driver("evaluate", {"spec": spec, "dataset": dataset, "checkpoints": run_dir / "checkpoints.h5",
                                   "out": run_dir / "metrics.h5"}, run_dir.parent / "args", fault)


def finished_looking_files(directory: Path) -> list[str]:
    """Files a later step could mistake for finished output: everything except hidden temporaries and the
    engine's resume folder ``_work``."""
    out = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if p.is_dir() or rel.parts[0] == "_work" or p.name.startswith("."):
            continue
        out.append(str(rel))
    return out


# --------------------------------------------------------------------------------------- comparing outputs


def h5_contents(path: Path) -> dict[str, Any]:
    """Every attribute and dataset of an HDF5 file, as plain values/arrays keyed by path."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            out[f"@{k}"] = v

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
            for k, v in obj.attrs.items():
                out[f"{name}@{k}"] = v

        f.visititems(visit)
    return out


def assert_h5_equal(a: Path, b: Path) -> None:
    """The two files hold the same attributes and datasets, bit for bit (NaN equal to NaN); a failure lists
    every differing key with its largest difference and first differing index (to tell training apart from
    bookkeeping)."""
    ca, cb = h5_contents(a), h5_contents(b)
    assert sorted(ca) == sorted(cb), f"{a} and {b} hold different keys"
    differ = []
    for key in ca:
        va, vb = np.asarray(ca[key]), np.asarray(cb[key])
        if va.dtype != vb.dtype or va.shape != vb.shape:
            differ.append(f"{key}: {va.dtype}{va.shape} vs {vb.dtype}{vb.shape}")
        elif not np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"):
            where = np.argwhere(va != vb)[:1].tolist() if va.ndim else []
            gap = float(np.nanmax(np.abs(va - vb))) if va.dtype.kind in "fiu" else "n/a"
            differ.append(f"{key}: max |diff| {gap}, first at {where}")
    assert not differ, f"{a} and {b} differ:\n  " + "\n  ".join(differ)


# ---------------------------------------------------------------------------------------------- snakemake


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, snakefile: Path | None = None,
              timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """One snakemake invocation on ``workdir`` (so runs never touch the repository's results/)."""
    snakefile = snakefile or REPO / "Snakefile"
    cmd = [SNAKEMAKE, "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", *args]
    if configfile is not None:  # last: --configfile takes several values and would swallow the targets
        cmd += ["--configfile", str(configfile)]
    full_env = dict(os.environ, LOSSATLAS_STATE_EVERY_S="0", **(env or {}))
    return subprocess.run(cmd, cwd=snakefile.parent, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def start_snakemake(workdir: Path, *args: str, configfile: Path | None = None,
                    env: dict | None = None) -> subprocess.Popen:
    """Start snakemake in its own process group (so the whole tree can be killed like a preempted node)."""
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    full_env = dict(os.environ, LOSSATLAS_STATE_EVERY_S="0", **(env or {}))
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> str:
    """Send ``sig`` to the process group of ``proc`` (started by start_snakemake) and collect its output."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    out, _ = proc.communicate(timeout=120)
    return out or ""


def wait_for(predicate, timeout: float = 120, what: str = "condition", proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{out[-4000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class Job:
    rule: str
    outputs: tuple[str, ...]


_JOB_RE = re.compile(r"^(?:local)?rule (\S+):\n((?:[ \t]+.*\n?)*)", re.MULTILINE)


def dry_run_jobs(text: str) -> list[Job]:
    """The jobs a ``snakemake -n`` output lists: rule name and output paths of each ``rule X:`` block."""
    jobs = []
    for m in _JOB_RE.finditer(text):
        outputs: tuple[str, ...] = ()
        for line in m.group(2).splitlines():
            line = line.strip()
            if line.startswith("output:"):
                outputs = tuple(p.strip() for p in line[len("output:"):].split(","))
        jobs.append(Job(m.group(1), outputs))
    return jobs


def job_counts(text: str) -> dict[str, int]:
    """The ``Job stats`` table of a dry run as {rule: count} (empty when nothing is to be done)."""
    m = re.search(r"Job stats:\n\s*job\s+count\n[-\s]+\n((?:\S+\s+\d+\n)+)", text)
    if not m:
        return {}
    counts = {}
    for line in m.group(1).splitlines():
        rule, n = line.split()
        if rule != "total":
            counts[rule] = int(n)
    return counts


# ------------------------------------------------------------------------------------------- repo copies


def copy_repo(dst: Path) -> Path:
    """Copy the repository's source files (tracked, plus untracked files git does not ignore) to ``dst``."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in files:
        if not rel:
            continue
        src = REPO / rel
        if not src.is_file():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dst
