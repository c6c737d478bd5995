"""MNIST: the real files, verified, loaded once into tensors, readable by torchvision."""
import gzip
import shutil

import pytest
import torch
from hw10kit import data

from grading_helpers import REPO


@pytest.fixture()
def data_copy(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MD5:
        shutil.copy(REPO / "data" / "MNIST" / "raw" / f"{name}.gz", raw)
    return tmp_path


def test_test_split_loads_as_float_images_and_int_labels():
    x, y = data.load("test", root=REPO / "data")
    assert x.shape == (10000, 784) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert y.shape == (10000,) and y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def test_damaged_file_fails_with_md5_and_how_to_get_the_data(data_copy):
    path = data_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.MnistError, match="md5") as info:
        data.load("test", root=data_copy)
    assert "download=True" in str(info.value)


def test_missing_file_fails_clearly(data_copy):
    (data_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.MnistError, match="Missing MNIST file"):
        data.load("test", root=data_copy)


def test_prepare_leaves_the_layout_torchvision_expects(data_copy):
    torchvision = pytest.importorskip("torchvision")
    data.prepare(data_copy)
    ds = torchvision.datasets.MNIST(root=str(data_copy), train=False, download=False)
    x, _ = data.load("test", root=data_copy)
    assert len(ds) == 10000
    assert torch.equal(torch.as_tensor(list(ds[0][0].tobytes()), dtype=torch.float32) / 255, x[0])


def test_fixed_test_subset_has_ten_of_each_digit_and_is_binary_and_repeatable():
    x, y = data.load("test", root=REPO / "data")
    xs, ys = data.fixed_test_subset(x, y)
    assert xs.shape == (100, 784) and torch.bincount(ys).tolist() == [10] * 10
    assert set(xs.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(xs, data.fixed_test_subset(x, y)[0])


def _course_images(x, y):
    """The course's get_mnist_data: for each digit, its hand-picked positions, float32 / 255."""
    return torch.cat([x[y == d][list(data.COURSE_TEST_INDEX[d])] for d in range(10)])


def test_fixed_test_subset_is_bit_identical_to_the_course_binarization():
    x, y = data.load("test", root=REPO / "data")
    xl = _course_images(x, y)
    torch.manual_seed(0)
    course = torch.bernoulli(xl)
    assert torch.equal(data.fixed_test_subset(x, y)[0], course)


def test_fixed_test_subset_leaves_the_global_generator_alone():
    x, y = data.load("test", root=REPO / "data")
    torch.manual_seed(7)
    want = torch.rand(3)
    torch.manual_seed(7)
    data.fixed_test_subset(x, y)
    assert torch.equal(torch.rand(3), want)


def test_root_is_found_from_a_subfolder(monkeypatch, tmp_path):
    monkeypatch.delenv("HW10_DATA", raising=False)
    assert data.find_root(REPO / "release" / "hw10") in (REPO / "release" / "hw10" / "data", REPO / "data")
