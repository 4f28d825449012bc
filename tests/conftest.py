"""Shared test fixtures and ordering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def pytest_collection_modifyitems(config, items):
    # Longest first: the SLURM end-to-end test (minutes of scheduler polling, little CPU), then the other slow
    # end-to-end files, then the rest in file order. With `pytest -n 4 --dist loadfile --no-loadscope-reorder`
    # (README's test command) xdist hands out files in this order (by default it hands out the files with the most
    # tests first, which started the one-test SLURM file last), one file per worker at a time, so a module-scoped
    # finished run is built once.
    items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, item.get_closest_marker("slow") is None))


@pytest.fixture
def snakemake_bin() -> str:
    exe = VENV_BIN / "snakemake"
    return str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake")


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (timing-free tests stay fast beside other processes), then restore."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
