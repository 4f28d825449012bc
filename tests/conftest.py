"""Shared test fixtures and ordering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def pytest_collection_modifyitems(config, items):
    # The SLURM end-to-end test installs and starts daemons; run it after everything else.
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)


@pytest.fixture
def snakemake_bin() -> str:
    exe = VENV_BIN / "snakemake"
    return str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake")
