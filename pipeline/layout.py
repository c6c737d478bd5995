"""Where things live in the course repository (the nbgrader course root)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ASSIGNMENT = "hw10"

#: Names nbgrader and the build never copy out of a source folder.
IGNORED_NAMES = ("__pycache__", "*.pyc", ".ipynb_checkpoints", ".DS_Store")

#: The MNIST files shipped to students (compressed only; ``*-ubyte`` is local cache).
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Folders of data/ shipped whole (each with its README and licence): Problem 1's
#: CommonsenseQA dev split, GPT-2's vocabulary and the noun list.
DATA_FOLDERS = ("commonsenseqa", "gpt2", "nouns")

#: Kit files the grader needs but students must not get (each is an answer), relative to
#: hw10kit/: left out of release/hw10/hw10kit, kept in the autograder zip.
GRADER_ONLY = ("checks/stand_ins.py",)

#: Files at the root of the autograder zip (besides the hw10grader and hw10kit packages).
AUTOGRADER_ROOT_FILES = ("setup.sh", "run_autograder", "requirements-grader.txt")
#: Root files of the zip that must be executable.
AUTOGRADER_EXECUTABLES = frozenset({"setup.sh", "run_autograder"})


@dataclass(frozen=True)
class Layout:
    root: Path
    assignment: str = ASSIGNMENT

    @classmethod
    def at(cls, root: str | Path) -> "Layout":
        return cls(Path(root).resolve())

    # inputs
    @property
    def source(self) -> Path:
        return self.root / "source" / self.assignment

    @property
    def kit(self) -> Path:
        return self.root / "hw10kit"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def autograder(self) -> Path:
        return self.root / "autograder"

    @property
    def config(self) -> Path:
        return self.root / "nbgrader_config.py"

    # outputs
    @property
    def release(self) -> Path:
        return self.root / "release" / self.assignment

    @property
    def solutions(self) -> Path:
        return self.root / "solutions" / self.assignment

    @property
    def executed(self) -> Path:
        """Where ``make solutions`` puts executed copies (see pipeline.execute)."""
        return self.solutions / "executed"

    @property
    def zip(self) -> Path:
        return self.autograder / "autograder.zip"

    def master_notebooks(self) -> list[Path]:
        return sorted(self.source.glob("*.ipynb"))
