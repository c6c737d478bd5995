"""A homework folder as a student holds it (release/hw10 with the notebooks filled in or
not), built from the master sources for tests of ``experiment.py`` and the kit."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from hw10kit import data as hw10data
from hw10kit import manifest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "hw10"
NOTEBOOKS = tuple(p.notebook for p in manifest.PROBLEMS)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION.*?### END SOLUTION[^\n]*", re.S | re.M)


def write_student_notebook(master: Path, path: Path, *, filled: bool = True) -> Path:
    """``master`` without its hidden tests (nbgrader strips them in release), with the
    solutions kept (``filled``) or replaced by nbgrader's stub ``raise NotImplementedError()``."""
    nb = nbformat.read(master, as_version=4)
    for cell in nb.cells:
        cell.source = HIDDEN.sub("", cell.source)
        if not filled and cell.cell_type == "code":
            cell.source = SOLUTION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n"
                                                 f"{m.group(1)}raise NotImplementedError()",
                                       cell.source)
    nbformat.write(nb, str(path))
    return path


def make_release_folder(base: Path, *, filled: bool = True) -> Path:
    """``base/hw10`` with experiment.py, the notebooks, hw10kit/ and data/ (a link)."""
    folder = base / "hw10"
    folder.mkdir()
    shutil.copy(SOURCE / "experiment.py", folder / "experiment.py")
    for name in NOTEBOOKS:
        write_student_notebook(SOURCE / name, folder / name, filled=filled)
    shutil.copytree(ROOT / "hw10kit", folder / "hw10kit",  # as released: no grader-only stand-ins
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "stand_ins.py"))
    (folder / "data").symlink_to(hw10data.find_root(ROOT).resolve(), target_is_directory=True)
    return folder


def run_experiment(folder: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python experiment.py ARGS`` in ``folder``, as a student runs it from a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("HW10_DATA", "PYTHONPATH")}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, "experiment.py", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)
