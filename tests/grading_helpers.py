"""Building submissions and running the judge for the grader tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
MASTER = REPO / "source" / "hw10" / "hw10_vae.ipynb"
from hw10kit import manifest  # noqa: E402

FULL_MARKS = manifest.BY_KEY["vae"].autograded_points  # the VAE notebook (what solution_with() submits)


def _all_marks() -> float:
    from hw10grader.assignment import QUESTIONS

    return float(sum(c.points for q in QUESTIONS for c in q.checks))


#: Every notebook's autograded points (what the solutions folder gets).
ALL_MARKS = _all_marks()


def master_notebook():
    return nbformat.read(MASTER, as_version=4)


def solution_with(*extra_cells: str):
    """The master notebook (solutions filled in) with code cells appended."""
    nb = master_notebook()
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in extra_cells)
    return nb


def write_folder(path: Path, nb, name="hw10_vae.ipynb") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path / name)
    return path


def write_zip(path: Path, files: dict) -> Path:
    """files: name in zip -> bytes/str."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def judge(submission: Path, results: Path, seed: int = 1, **env) -> dict:
    """Run ``python -m hw10grader`` in a subprocess, as run_autograder does."""
    run_env = {**os.environ, "HW10_LOCAL": "1",
               "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'autograder'}",
               **{k: str(v) for k, v in env.items()}}
    subprocess.run([sys.executable, "-m", "hw10grader", "--submission", str(submission),
                    "--results", str(results), "--seed", str(seed)],
                   cwd=REPO, env=run_env, check=True, capture_output=True, timeout=300)
    return json.loads(results.read_text())


def by_name(doc) -> dict:
    return {t["name"]: t for t in doc["tests"]}


def check_entries(doc) -> list:
    """The results' entries for the autograded checks: all but question 6's entry, which
    is worth no points and only says whether the process answers were filled in."""
    return [t for t in doc["tests"] if t["max_score"] > 0]


def score_of(doc, prefix="") -> float:
    return sum(t["score"] for t in doc["tests"] if t["name"].startswith(prefix))


def _pool_users_reach_this_checkout() -> bool:
    """A root judge runs student code as the pool users only when they can reach the
    interpreter and the kit (not from a checkout inside a 0700 folder such as /root)."""
    if os.geteuid() != 0:
        return False
    from hw10grader import sandbox, sandbox_users

    nobody = 65534  # any uid that owns nothing here
    return all(sandbox_users.blocked_directory(p, nobody, nobody) is None
               for p in sandbox._needed_paths(sys.executable))


#: Tests of the isolation itself: they need student code to run as a pool user.
needs_pool_users = pytest.mark.skipif(
    not _pool_users_reach_this_checkout(),
    reason="student code runs as a pool user only under a root judge whose interpreter other "
           "users can reach (a checkout under a 0700 folder falls back to root, see "
           "test_root_grading_from_a_0700_folder_gets_full_marks_and_names_the_folder)")


def vae_entry(doc) -> dict:
    """The first check of Q2(a) (the VAE notebook is what solution_with() submits)."""
    return next(t for t in doc["tests"] if t["name"].startswith("Q2(a)"))
