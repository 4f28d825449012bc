"""Atomic outputs: a failed job never leaves a file that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory (same filesystem, so the rename is atomic) and is
    removed on any exception, including KeyboardInterrupt; temporaries that killed writes of the same path left
    behind are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A write of this file killed before its rename (SIGKILL, node failure) left its temporary behind; the
    # workflow's lock means no other writer of this path is running, so leftovers are garbage (GBs at scale).
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; outputs get the usual permissions (0666 minus the umask), e.g. for a shared group.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically, with sorted keys so equal content gives equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------------- figure data (analysis -> figure)


def write_figure_data(path: str | os.PathLike, tree: dict) -> None:
    """Write what one figure draws as HDF5, atomically: nested dicts become groups, numpy arrays datasets,
    every other value (numbers, strings, lists, None) a JSON attribute. :func:`read_figure_data` inverts it."""
    import h5py
    import numpy as np

    def put(group, node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                put(group.create_group(key), value)
            elif isinstance(value, np.ndarray):
                group[key] = value
            else:
                group.attrs[key] = json.dumps(value, allow_nan=True)

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        put(f, tree)


def read_figure_data(path: str | os.PathLike) -> dict:
    """A file of :func:`write_figure_data` as the nested dict it was written from."""
    import h5py

    def get(group) -> dict:
        out: dict[str, Any] = {key: json.loads(value) for key, value in group.attrs.items()}
        for key, item in group.items():
            out[key] = get(item) if isinstance(item, h5py.Group) else item[()]
        return out

    with h5py.File(path, "r") as f:
        return get(f)
