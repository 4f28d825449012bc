"""What an analysis job writes for one figure and the figure job reads: a nested dict as one HDF5 file.

Nested dicts become groups, numpy arrays datasets, every other value (numbers, strings, lists, None) a JSON
attribute, so a figure's arrays and the numbers its titles quote travel together and read back unchanged.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lossatlas.io import atomic_path


def write_figure_data(path: str | os.PathLike, tree: dict) -> None:
    """Write ``tree`` to ``path`` atomically (:func:`read_figure_data` reads it back)."""
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
