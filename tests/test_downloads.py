"""The real download code against tiny archives in the true formats, served from 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lossatlas.datasets import build_source_dataset, derive_dataset, load_dataset
from lossatlas.downloads import RAW_SOURCES, DownloadError, download_source
from tests.raw_fixtures import http_server, md5_of, write_cifar10, write_cifar100, write_mnist


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def _checksums(served: Path, source: str) -> dict[str, str]:
    return {name: md5_of(served / name) for name in RAW_SOURCES[source].md5}


@pytest.mark.parametrize("source", ["mnist", "fashion_mnist"])
def test_mnist_like_download_and_build(tmp_path, source):
    served = tmp_path / "served"
    expected = write_mnist(served)
    out = tmp_path / "data" / "raw" / source
    with http_server(served) as url:
        download_source(source, str(out), mirror=url, checksums=_checksums(served, source))
    assert sorted(p.name for p in out.iterdir()) == sorted(RAW_SOURCES[source].md5)
    assert _leftovers(out.parent) == [source]  # no temporary directory left beside it

    h5 = tmp_path / "data" / f"{source}.h5"
    build_source_dataset(source, {"source": source, "seed": 0}, str(h5), raw_dir=str(out))
    ds = load_dataset(h5, verify=True)
    for split in ("train", "test"):
        x, y, ids = ds.split(split)
        assert x.dtype == np.uint8 and x.shape == expected[split]["x"].shape
        np.testing.assert_array_equal(x, expected[split]["x"])
        np.testing.assert_array_equal(y, expected[split]["y"])
    np.testing.assert_array_equal(ds.id_test, np.arange(12, 19))
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    mean = expected["train"]["x"].astype(np.float64).mean() / 255
    assert ds.attrs["channel_mean"] == pytest.approx([mean], abs=1e-7)
    assert ds.attrs["channel_std"] == pytest.approx([(expected["train"]["x"] / 255).std()], abs=1e-7)
    if source == "fashion_mnist":
        assert ds.class_names[0] == "T-shirt/top"
    # Normalised inputs have (train) mean 0 and std 1.
    xf = ds.float_inputs("train")
    assert xf.dtype == np.float32 and abs(xf.mean()) < 1e-5 and abs(xf.std() - 1) < 1e-4


def test_cifar10_download_and_build(tmp_path):
    served = tmp_path / "served"
    expected = write_cifar10(served)
    out = tmp_path / "raw" / "cifar10"
    with http_server(served) as url:
        download_source("cifar10", str(out), mirror=url.rstrip("/"), checksums=_checksums(served, "cifar10"))
    h5 = tmp_path / "cifar10.h5"
    build_source_dataset("cifar10", {"source": "cifar10"}, str(h5), raw_dir=str(out))
    ds = load_dataset(h5)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, expected["train"]["x"])
    np.testing.assert_array_equal(ds.y_train, expected["train"]["y"])
    np.testing.assert_array_equal(ds.y_test, expected["test"]["y"])
    assert ds.class_names == expected["class_names"]
    assert len(ds.attrs["channel_mean"]) == 3
    red = expected["train"]["x"][:, 0].astype(np.float64) / 255
    assert ds.attrs["channel_mean"][0] == pytest.approx(red.mean(), abs=1e-7)


@pytest.mark.parametrize("label_kind", ["fine", "coarse"])
def test_cifar100_labels_and_superclass(tmp_path, label_kind):
    served = tmp_path / "served"
    expected = write_cifar100(served)
    out = tmp_path / "raw" / "cifar100"
    with http_server(served) as url:
        download_source("cifar100", str(out), mirror=url, checksums=_checksums(served, "cifar100"))
    h5 = tmp_path / "cifar100.h5"
    spec = {"source": "cifar100", "label_kind": label_kind}
    build_source_dataset("cifar100", spec, str(h5), raw_dir=str(out))
    ds = load_dataset(h5)
    key = "y_fine" if label_kind == "fine" else "y_coarse"
    np.testing.assert_array_equal(ds.y_train, expected["train"][key])
    np.testing.assert_array_equal(ds.extras["train"]["y_coarse"], expected["train"]["y_coarse"])
    np.testing.assert_array_equal(ds.extras["test"]["y_fine"], expected["test"]["y_fine"])
    assert ds.num_classes == (100 if label_kind == "fine" else 20)

    small = tmp_path / "small_mammals.h5"
    spec = {"derive_from": "cifar100", "derivation": "superclass", "superclass": 16, "seed": 0}
    derive_dataset("small_mammals", spec, str(h5), str(small))
    sm = load_dataset(small, verify=True)
    mask = expected["train"]["y_coarse"] == 16
    assert sm.num_classes == 5 and sm.class_names == [f"fine_{f}" for f in range(80, 85)]
    np.testing.assert_array_equal(sm.y_train, expected["train"]["y_fine"][mask] - 80)
    np.testing.assert_array_equal(sm.x_train, expected["train"]["x"][mask])
    np.testing.assert_array_equal(sm.id_train, np.flatnonzero(mask))  # ids survive the derivation
    assert np.all(sm.extras["test"]["y_coarse"] == 16)


def test_official_checksums_are_the_default_and_a_mismatch_leaves_nothing(tmp_path):
    served = tmp_path / "served"
    write_mnist(served)
    out = tmp_path / "raw" / "mnist"
    with http_server(served) as url, pytest.raises(DownloadError) as err:
        download_source("mnist", str(out), mirror=url)  # tiny files cannot match the published MD5
    msg = str(err.value)
    assert "checksum mismatch" in msg and "-ubyte.gz" in msg and url in msg
    assert f'expected md5 {RAW_SOURCES["mnist"].md5["train-images-idx3-ubyte.gz"]}' in msg  # the first file
    assert md5_of(served / msg.split(":")[0]) in msg  # the actual checksum is named
    assert not out.exists() and _leftovers(out.parent) == []


def test_wrong_override_checksum_names_expected_and_actual(tmp_path):
    served = tmp_path / "served"
    write_cifar10(served)
    out = tmp_path / "raw" / "cifar10"
    wrong = {"cifar-10-python.tar.gz": "0" * 32}
    expected_msg = "expected md5 0{32}, got [0-9a-f]{32}"
    with http_server(served) as url, pytest.raises(DownloadError, match=expected_msg):
        download_source("cifar10", str(out), mirror=url, checksums=wrong)
    assert not out.exists() and _leftovers(out.parent) == []


def test_truncated_transfer_fails_clearly(tmp_path):
    served = tmp_path / "served"
    write_cifar10(served)
    out = tmp_path / "raw" / "cifar10"
    with http_server(served, truncate=("cifar-10-python.tar.gz",)) as url:
        with pytest.raises(DownloadError, match="cifar-10-python.tar.gz.*truncated"):
            download_source("cifar10", str(out), mirror=url, checksums=_checksums(served, "cifar10"))
    assert not out.exists() and _leftovers(out.parent) == []


@pytest.mark.parametrize("source", ["cifar10", "mnist"])
def test_truncated_archive_with_matching_checksum_fails_clearly(tmp_path, source):
    served = tmp_path / "served"
    (write_cifar10 if source == "cifar10" else write_mnist)(served)
    victim = sorted(RAW_SOURCES[source].md5)[0]
    data = (served / victim).read_bytes()
    (served / victim).write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "raw" / source
    with http_server(served) as url, pytest.raises(DownloadError, match=f"{victim}.*not a complete archive"):
        download_source(source, str(out), mirror=url, checksums=_checksums(served, source))
    assert not out.exists() and _leftovers(out.parent) == []


def test_unreachable_server_and_bad_arguments(tmp_path):
    with pytest.raises(DownloadError, match="unknown download source 'svhn'"):
        download_source("svhn", str(tmp_path / "x"))
    with pytest.raises(DownloadError, match="must name exactly the files"):
        download_source("cifar10", str(tmp_path / "x"), checksums={"other.tar.gz": "0" * 32})
    with pytest.raises(DownloadError, match="download from http://127.0.0.1:9/.*failed"):
        download_source("cifar10", str(tmp_path / "x"), mirror="http://127.0.0.1:9/",
                        checksums={"cifar-10-python.tar.gz": "0" * 32}, timeout=5)
    assert _leftovers(tmp_path) == []


def test_build_without_download_names_the_rule(tmp_path):
    with pytest.raises(Exception, match="download_dataset"):
        build_source_dataset("mnist", {"source": "mnist"}, str(tmp_path / "m.h5"),
                             raw_dir=str(tmp_path / "none"))
    assert not (tmp_path / "m.h5").exists()


def test_cifar_unpickler_takes_old_numpy_names_and_refuses_code():
    import io
    import pickle

    from lossatlas.downloads import _CifarUnpickler

    # The official batches were pickled by Python 2 with numpy 1: they name numpy.core.multiarray.
    old = pickle.dumps({b"data": np.arange(6, dtype=np.uint8)}, protocol=2)
    old = old.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    loaded = _CifarUnpickler(io.BytesIO(old), encoding="latin1").load()
    np.testing.assert_array_equal(loaded[b"data"], np.arange(6))
    evil = b"cos\nsystem\n(S'true'\ntR."
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        _CifarUnpickler(io.BytesIO(evil), encoding="latin1").load()
