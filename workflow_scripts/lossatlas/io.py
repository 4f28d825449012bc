"""Atomic outputs (a failed job never leaves a file that looks finished) and reproducible HDF5 writing."""

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


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file, parsed safely by libyaml where PyYAML has it: the Snakefile parses the schemas and the claims
    registry at every start, dry runs and cluster jobs included, and the pure-Python parser is ~10x slower."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)


class H5Writer:
    """Creates datasets (and their parent groups) without modification times, so that equal content gives
    equal bytes (h5py records times on groups by default)."""

    def __init__(self, f: Any):
        self.f = f

    def group(self, path: str) -> Any:
        import h5py

        node = self.f
        for part in [p for p in path.split("/") if p]:
            if part not in node:
                gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
                gcpl.set_obj_track_times(False)
                h5py.h5g.create(node.id, part.encode(), gcpl=gcpl)
            node = node[part]
        return node

    def __call__(self, path: str, data: Any, **kwargs: Any) -> Any:
        parent, _, name = path.rpartition("/")
        return self.group(parent).create_dataset(name, data=data, track_times=False, **kwargs)

