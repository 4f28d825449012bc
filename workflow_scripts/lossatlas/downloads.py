"""Raw downloads (CIFAR-10/100, MNIST, FashionMNIST), checksum-verified, and readers of their true formats.

``download_source`` fetches every file of one source into ``data/raw/<source>/`` exactly as published (the
CIFAR python-pickle tar.gz, the MNIST IDX .gz files). It streams into a temporary directory beside the
target, checks the byte count and the published MD5, checks that the archive reads to its end, and only then
renames the directory into place: after any failure the target does not exist.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download failed, was truncated, or its checksum does not match the published one."""


@dataclass(frozen=True)
class RawSource:
    base_url: str
    md5: dict[str, str]  # file name -> published MD5


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")

# Official URLs and MD5 checksums, as published on https://www.cs.toronto.edu/~kriz/cifar.html and as
# used by torchvision.datasets (cifar.py: tgz_md5; mnist.py: MNIST.resources, FashionMNIST.resources).
# MNIST: torchvision's first mirror (yann.lecun.com now refuses anonymous downloads); same files, same MD5.
RAW_SOURCES: dict[str, RawSource] = {
    "cifar10": RawSource("https://www.cs.toronto.edu/~kriz/",
                         {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "cifar100": RawSource("https://www.cs.toronto.edu/~kriz/",
                          {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}),
    "mnist": RawSource("https://ossci-datasets.s3.amazonaws.com/mnist/", dict(zip(_MNIST_FILES, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"), strict=True))),
    "fashion_mnist": RawSource("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                               dict(zip(_MNIST_FILES, (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"), strict=True))),
}

_CHUNK = 1 << 20


def download_source(source: str, out_dir: str, mirror: str | None = None,
                    checksums: dict[str, str] | None = None, timeout: float = 60.0) -> None:
    """Download every file of ``source`` into ``out_dir``, verified against the published MD5.

    ``mirror`` replaces the official base URL (config ``download.mirrors.<source>``); file names stay.
    ``checksums`` (file name -> MD5) replaces the published checksums: only for tests, which serve tiny
    archives in the true formats; the pipeline never passes it.
    """
    if source not in RAW_SOURCES:
        raise DownloadError(f"unknown download source '{source}' (known: {', '.join(RAW_SOURCES)})")
    raw = RAW_SOURCES[source]
    expected_md5 = raw.md5 if checksums is None else dict(checksums)
    if set(expected_md5) != set(raw.md5):
        raise DownloadError(f"checksums for '{source}' must name exactly the files {sorted(raw.md5)}")
    base = (mirror or raw.base_url).rstrip("/") + "/"
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, md5 in expected_md5.items():
            _fetch(base + name, tmp / name, md5, timeout)
            _check_readable(tmp / name, base + name)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fetch(url: str, dest: Path, expected_md5: str, timeout: float) -> None:
    log.info("downloading %s", url)
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as fh:
            declared = resp.headers.get("Content-Length")
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except http.client.IncompleteRead as exc:
        raise DownloadError(f"{dest.name}: download from {url} was truncated after "
                            f"{size + len(exc.partial)} bytes ({exc})") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{dest.name}: download from {url} failed: {exc}") from exc
    if declared is not None and int(declared) != size:
        raise DownloadError(f"{dest.name}: download from {url} was truncated: got {size} of {declared} bytes")
    actual = digest.hexdigest()
    if actual != expected_md5:
        raise DownloadError(f"{dest.name}: checksum mismatch for {url}: expected md5 {expected_md5}, "
                            f"got {actual} ({size} bytes); nothing was kept")
    log.info("%s: %d bytes, md5 %s ok", dest.name, size, actual)


def _check_readable(path: Path, url: str) -> None:
    """Read the archive to its end, so a truncated file is caught here and not when the dataset is built."""
    try:
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as tar:
                for member in tar:
                    if member.isfile():
                        tar.extractfile(member).read()
        elif path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                while fh.read(_CHUNK):
                    pass
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as exc:
        raise DownloadError(f"{path.name} from {url} is not a complete archive: {exc}") from exc


# ------------------------------------------------------------------------------------------- raw readers


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR batches hold (dicts, lists, strings, numpy arrays)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"),
                ("_codecs", "encode")}  # how Python 3's protocol-2 pickles spell bytes

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which CIFAR never holds")
        return super().find_class(module, name)


def _str_keys(d: dict) -> dict:
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _read_pickle_member(tar: tarfile.TarFile, member: str, archive: Path) -> dict:
    try:
        fh = tar.extractfile(member)
    except KeyError:
        raise DownloadError(f"{archive}: archive has no member '{member}'") from None
    return _str_keys(_CifarUnpickler(fh, encoding="latin1").load())


def _names(values) -> list[str]:
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def read_cifar(raw_dir: str | Path, source: str) -> dict:
    """Arrays of the official CIFAR-10 / CIFAR-100 python archive in ``raw_dir``.

    Returns ``{"train": {"x", "y"[, "y_fine", "y_coarse"]}, "test": {...}, "class_names": [...]
    [, "coarse_class_names"]}`` with x uint8 (N, 3, 32, 32) in the archive's order. For CIFAR-100 ``y`` is the
    fine label.
    """
    raw_dir = Path(raw_dir)
    fname, folder = {"cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py"),
                     "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python")}[source]
    archive = raw_dir / fname
    if not archive.exists():
        raise DownloadError(f"{archive} is missing (run the download_dataset rule for '{source}')")
    out: dict = {}
    with tarfile.open(archive, "r:gz") as tar:
        if source == "cifar10":
            parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
            for split, members in parts.items():
                batches = [_read_pickle_member(tar, f"{folder}/{m}", archive) for m in members]
                x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
                y = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
                out[split] = {"x": x.reshape(-1, 3, 32, 32), "y": y}
            meta = _read_pickle_member(tar, f"{folder}/batches.meta", archive)
            out["class_names"] = _names(meta["label_names"])
        else:
            for split in ("train", "test"):
                b = _read_pickle_member(tar, f"{folder}/{split}", archive)
                fine = np.asarray(b["fine_labels"], dtype=np.int64)
                coarse = np.asarray(b["coarse_labels"], dtype=np.int64)
                x = np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                out[split] = {"x": x, "y": fine, "y_fine": fine.copy(), "y_coarse": coarse}
            meta = _read_pickle_member(tar, f"{folder}/meta", archive)
            out["class_names"] = _names(meta["fine_label_names"])
            out["coarse_class_names"] = _names(meta["coarse_label_names"])
    return out


def read_idx(path: str | Path) -> np.ndarray:
    """One gzipped IDX file (the MNIST format: magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data)."""
    path = Path(path)
    if not path.exists():
        raise DownloadError(f"{path} is missing (run the download_dataset rule)")
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DownloadError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DownloadError(f"{path}: IDX header says {dims} = {int(np.prod(dims))} bytes, "
                            f"file holds {body.size}")
    return body.reshape(dims)


def read_mnist(raw_dir: str | Path) -> dict:
    """MNIST / FashionMNIST arrays: x uint8 (N, 1, 28, 28), y int64, in the files' order."""
    raw_dir = Path(raw_dir)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(raw_dir / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DownloadError(f"{raw_dir}: {split} images {x.shape} and labels {y.shape} do not match")
        out[split] = {"x": x[:, None, :, :].copy(), "y": y}
    return out
