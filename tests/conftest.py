"""Shared fixtures.

``built_course``: the repository's inputs copied into a temporary course root
and built once per test session with ``python -m pipeline release --root <tmp>``,
so tests never write into the working tree.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: What the build reads (everything else in the repository is irrelevant to it).
BUILD_INPUTS = ("source", "hw10kit", "autograder", "data", "pipeline", "nbgrader_config.py")
#: Never copied: caches, the decompressed MNIST, and outputs of an earlier build.
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*-ubyte", "autograder.zip",
                              ".ipynb_checkpoints")


@dataclass(frozen=True)
class BuiltCourse:
    root: Path
    stdout: str
    seconds: float

    @property
    def release(self) -> Path:
        return self.root / "release" / "hw10"

    @property
    def solutions(self) -> Path:
        return self.root / "solutions" / "hw10"

    @property
    def zip(self) -> Path:
        return self.root / "autograder" / "autograder.zip"


def copy_inputs(dest: Path) -> Path:
    for name in BUILD_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=SKIP)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def run_release(root: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "release", "--root", str(root)],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    return proc, time.perf_counter() - start


@pytest.fixture(scope="session")
def built_course(tmp_path_factory) -> BuiltCourse:
    root = copy_inputs(tmp_path_factory.mktemp("course"))
    proc, seconds = run_release(root)
    if proc.returncode != 0:
        pytest.fail(f"make release failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return BuiltCourse(root=root, stdout=proc.stdout, seconds=seconds)
