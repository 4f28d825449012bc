"""Tiny raw datasets in their TRUE published formats, and a local HTTP server to download them from.

CIFAR: the python-pickle batches in a tar.gz (cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta;
cifar-100-python/train, test, meta), dicts with bytes keys as the Python-2 pickles read with encoding='bytes'.
MNIST / FashionMNIST: gzipped IDX files (magic 0x00000803 images, 0x00000801 labels, big-endian dims).
Everything is generated at test time; no binary fixture is committed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_cifar10(directory: Path, n_per_batch: int = 6, n_test: int = 8, seed: int = 0) -> dict:
    """cifar-10-python.tar.gz with 5 train batches of n_per_batch images; returns the expected arrays."""
    rng = np.random.default_rng(seed)
    names = [f"c10_{i}" for i in range(10)]
    batches = {f"data_batch_{i}": n_per_batch for i in range(1, 6)} | {"test_batch": n_test}
    expected = {"train": {"x": [], "y": []}, "test": {"x": [], "y": []}}
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
        for member, n in batches.items():
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, size=n)]
            batch = {b"batch_label": member.encode(), b"labels": labels, b"data": data,
                     b"filenames": [f"img{i}.png".encode() for i in range(n)]}
            _add(tar, f"cifar-10-batches-py/{member}", pickle.dumps(batch, protocol=2))
            split = "test" if member == "test_batch" else "train"
            expected[split]["x"].append(data.reshape(n, 3, 32, 32))
            expected[split]["y"].append(np.array(labels))
        meta = {b"label_names": [n.encode() for n in names], b"num_vis": 3072,
                b"num_cases_per_batch": n_per_batch}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    out = {s: {k: np.concatenate(v) for k, v in d.items()} for s, d in expected.items()}
    out["class_names"] = names
    return out


def write_cifar100(directory: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """cifar-100-python.tar.gz; fine label f has coarse label f // 5 (unlike the real map; irrelevant)."""
    rng = np.random.default_rng(seed)
    fine_names = [f"fine_{i}" for i in range(100)]
    coarse_names = [f"coarse_{i}" for i in range(20)]
    out: dict = {"class_names": fine_names, "coarse_class_names": coarse_names}
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(directory / "cifar-100-python.tar.gz", "w:gz") as tar:
        for split, n in (("train", n_train), ("test", n_test)):
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            # Make superclass 16 (fine 80..84) well represented.
            fine = np.where(np.arange(n) % 2 == 0, 80 + np.arange(n) % 5, rng.integers(0, 100, size=n))
            coarse = fine // 5
            batch = {b"filenames": [b"x.png"] * n, b"batch_label": split.encode(),
                     b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) for v in coarse],
                     b"data": data}
            _add(tar, f"cifar-100-python/{split}", pickle.dumps(batch, protocol=2))
            out[split] = {"x": data.reshape(n, 3, 32, 32), "y_fine": fine, "y_coarse": coarse}
        meta = {b"fine_label_names": [n.encode() for n in fine_names],
                b"coarse_label_names": [n.encode() for n in coarse_names]}
        _add(tar, "cifar-100-python/meta", pickle.dumps(meta, protocol=2))
    return out


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def write_mnist(directory: Path, n_train: int = 12, n_test: int = 7, seed: int = 0) -> dict:
    """The four MNIST IDX .gz files (the same names serve FashionMNIST); returns the expected arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(x))
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(y))
        out[split] = {"x": x[:, None], "y": y.astype(np.int64)}
    return out


@contextlib.contextmanager
def http_server(directory: Path, truncate: tuple[str, ...] = ()) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1; files named in ``truncate`` are cut off after half their bytes
    (Content-Length still announces the whole file). Yields the base URL."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            if name in truncate:
                data = (directory / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
