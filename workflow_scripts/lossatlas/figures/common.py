"""What the five papers' figure modules share: the Agg backend, one resolution, an atomic save and the dispatch
from a figure's name (its file stem) to its drawing function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lossatlas.io import atomic_path  # noqa: E402

DPI = 110


def save(fig, out_path: str | Path, tight_layout: bool = True) -> None:
    """Write ``fig`` as PNG atomically (a killed job leaves no finished-looking figure) and close it."""
    if tight_layout:
        fig.tight_layout()
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    plt.close(fig)


def dispatch(figures: Mapping[str, Callable], paper: str, name: str, inputs, output: str) -> None:
    """Call the drawing function registered under ``name`` with the job's inputs and its output path."""
    if name not in figures:
        raise ValueError(f"{paper}: no figure named '{name}' (one of {', '.join(figures)})")
    figures[name](inputs, output)
