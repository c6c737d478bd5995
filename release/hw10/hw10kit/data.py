"""MNIST for HW10: verified against the published md5s, loaded once into tensors.

Conventions: images are float32 in [0, 1] with shape (N, 784) (rows are flattened
28x28 images); labels are int64 with shape (N,). The files live in the layout that
``torchvision.datasets.MNIST(root, download=False)`` expects: ``<root>/MNIST/raw/``.
The repository ships the four ``.gz`` files there; the decompressed copies that
torchvision wants are written next to them on first use.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

#: md5 of each *decompressed* file (the published MNIST checksums).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

HOW_TO_GET = (
    "MNIST is shipped with the homework in data/MNIST/raw/ (four .gz files). If yours is "
    "missing or damaged, copy it again from the homework release, point HW10_DATA at a "
    "folder that holds MNIST/raw/, or, online, run\n"
    "    import torchvision; torchvision.datasets.MNIST(root='data', train=True, download=True)\n"
    "    torchvision.datasets.MNIST(root='data', train=False, download=True)"
)


class MnistError(RuntimeError):
    """MNIST is missing or does not match its published checksum."""


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The data root: ``$HW10_DATA``, else the nearest ``data/`` holding ``MNIST/raw``
    in ``start`` (default: the working directory) or one of its parents."""
    if os.environ.get("HW10_DATA"):
        return Path(os.environ["HW10_DATA"])
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        for cand in (folder / "data", folder):
            if (cand / "MNIST" / "raw").is_dir():
                return cand
    raise MnistError(f"No data/MNIST/raw folder found from {here} upwards.\n{HOW_TO_GET}")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _read_verified(raw: Path, name: str) -> bytes:
    """Decompressed bytes of one file, checked against its md5; writes the
    decompressed copy torchvision expects when only the .gz is present."""
    plain, packed = raw / name, raw / f"{name}.gz"
    if plain.exists():
        data = plain.read_bytes()
    elif packed.exists():
        data = gzip.decompress(packed.read_bytes())
    else:
        raise MnistError(f"Missing MNIST file {packed} (or {plain.name}).\n{HOW_TO_GET}")
    got = _md5(data)
    if got != MD5[name]:
        raise MnistError(f"MNIST file {name} in {raw} has md5 {got}, expected {MD5[name]}: "
                         f"the file is damaged.\n{HOW_TO_GET}")
    if not plain.exists():
        try:
            tmp = plain.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(plain)
        except OSError:
            pass  # read-only data folder: we can still load from the .gz
    return data


def prepare(root: str | os.PathLike | None = None) -> Path:
    """Verify all four files and leave them decompressed for torchvision; returns the root."""
    root = Path(root) if root is not None else find_root()
    for name in MD5:
        _read_verified(root / "MNIST" / "raw", name)
    return root


def _parse_idx(data: bytes, magic: int):
    import numpy as np

    if int.from_bytes(data[0:4], "big") != magic:
        raise MnistError(f"Not an IDX file with magic {magic}.\n{HOW_TO_GET}")
    count = int.from_bytes(data[4:8], "big")
    if magic == 2051:
        rows, cols = int.from_bytes(data[8:12], "big"), int.from_bytes(data[12:16], "big")
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * cols)
    return np.frombuffer(data, dtype=np.uint8, offset=8).reshape(count)


def load(split: str = "train", root: str | os.PathLike | None = None, device="cpu"):
    """``(images, labels)`` of one split as tensors on ``device``.

    images: float32 (N, 784) in [0, 1]; labels: int64 (N,). Loaded once, in full:
    training draws batches by index from these tensors, with no DataLoader.
    """
    import torch

    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    raw = (Path(root) if root is not None else find_root()) / "MNIST" / "raw"
    img_name, lab_name = SPLITS[split]
    images = torch.from_numpy(_parse_idx(_read_verified(raw, img_name), 2051).copy())
    labels = torch.from_numpy(_parse_idx(_read_verified(raw, lab_name), 2049).copy())
    return (images.to(device=device, dtype=torch.float32).div_(255.0),
            labels.to(device=device, dtype=torch.int64))


#: The course's evaluation subset: for digit d, positions among the test images of
#: digit d (in test-set order). The course's own hand-picked list, duplicates included.
COURSE_TEST_INDEX = (
    (684, 559, 629, 192, 835, 763, 707, 359, 9, 723),
    (277, 599, 1094, 600, 314, 705, 551, 87, 174, 849),
    (537, 845, 72, 777, 115, 976, 755, 448, 850, 99),
    (984, 177, 755, 797, 659, 147, 910, 423, 288, 961),
    (265, 697, 639, 544, 543, 714, 244, 151, 675, 510),
    (459, 882, 183, 28, 802, 128, 128, 53, 550, 488),
    (756, 273, 335, 388, 617, 42, 442, 543, 888, 257),
    (57, 291, 779, 430, 91, 398, 611, 908, 633, 84),
    (203, 324, 774, 964, 47, 639, 131, 972, 868, 180),
    (1000, 846, 143, 660, 227, 954, 791, 719, 909, 373),
)


def course_test_images(images, labels):
    """The course's 100 evaluation images (``COURSE_TEST_INDEX``, 10 per digit), not yet
    binarized: float32 (100, 784) in [0, 1] on the CPU, and their labels (100,) on the CPU.

    Args: images float32 (10000, 784) in [0, 1] and labels (10000,) of the test split.
    """
    import torch

    labels_cpu = labels.cpu()
    idx = torch.cat([(labels_cpu == d).nonzero().flatten()[list(COURSE_TEST_INDEX[d])]
                     for d in range(10)])
    return images.detach().cpu().float()[idx], labels_cpu[idx]


def fixed_test_subset(images, labels, seed: int = 0):
    """The course's fixed evaluation subset, binarized exactly as the course binarizes it:
    ``torch.bernoulli`` of the float32 images on the CPU from a generator seeded with
    ``seed`` (bit-identical to ``torch.manual_seed(0); torch.bernoulli(x)``), whatever the
    training device. The global generator is left alone.

    Returns (x, y): x float32 (100, 784) in {0, 1} on ``images.device``, y int64 (100,)
    on ``labels.device``.
    """
    import torch

    probs, y = course_test_images(images, labels)
    binary = torch.bernoulli(probs, generator=torch.Generator(device="cpu").manual_seed(seed))
    return binary.to(images.device), y.to(labels.device)
