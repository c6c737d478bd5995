"""The grader's own code runs on Gradescope's default image (Ubuntu 22.04, Python 3.10)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from grading_helpers import FULL_MARKS, REPO, master_notebook, score_of, write_folder

#: What runs on Gradescope: the judge and everything it or the sandbox imports.
GRADER_CODE = ["autograder/hw10grader", "hw10kit/checks", "hw10kit/notebook.py", "hw10kit/__init__.py",
               "hw10kit/unfinished.py", "hw10kit/handin.py", "hw10kit/export.py",
               "pipeline/grade_local.py"]


def test_grader_code_needs_nothing_newer_than_python_3_10():
    vermin = Path(sys.executable).parent / "vermin"
    proc = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.10-",
                           *GRADER_CODE], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _python310():
    """A real 3.10 interpreter (pyenv's shims answer to the name but may refuse to run)."""
    for cand in (str(Path.home() / ".pyenv/versions/3.10.13/bin/python3.10"), "/usr/bin/python3.10",
                 shutil.which("python3.10")):
        if cand and Path(cand).exists() and subprocess.run([cand, "-c", "pass"]).returncode == 0:
            return cand
    return None


@pytest.mark.slow
@pytest.mark.skipif(_python310() is None, reason="no Python 3.10 on this machine")
def test_judge_grades_the_solution_under_python_3_10(tmp_path):
    """Builds a 3.10 venv from autograder/requirements-grader.txt (needs PyPI), runs the
    judge there; the sandboxed workers use this venv's torch."""
    venv = tmp_path / "py310"
    subprocess.run([_python310(), "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "-r", REPO / "autograder" / "requirements-grader.txt"],
                   check=True)
    sub = write_folder(tmp_path / "sub", master_notebook())
    proc = subprocess.run([venv / "bin" / "python", "-m", "hw10grader", "--submission", sub,
                           "--results", tmp_path / "r.json", "--seed", "3"],
                          cwd=REPO / "autograder", capture_output=True, text=True,
                          env={"PYTHONPATH": f"{REPO}:{REPO / 'autograder'}", "PATH": "/usr/bin:/bin",
                               "HW10_WORKER_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    import json
    assert score_of(json.loads((tmp_path / "r.json").read_text())) == FULL_MARKS
