"""Shared test fixtures and ordering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def pytest_collection_modifyitems(config, items):
    # The SLURM end-to-end test is the longest (minutes of scheduler polling, little CPU): start it first, so
    # that with `pytest -n 2` the rest of the suite runs beside it.
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)


@pytest.fixture
def snakemake_bin() -> str:
    exe = VENV_BIN / "snakemake"
    return str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake")
