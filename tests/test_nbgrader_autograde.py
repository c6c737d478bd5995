"""``nbgrader autograde hw10`` on JupyterHub: the course's own ``nbgrader_config.py``, run
for real in a temporary course directory on a filled-in release notebook.

The gradebook comes from ``nbgrader generate_assignment hw10`` on the masters (what an
instructor runs); the submission is the release notebook that ``make release`` wrote, with
the solution cells filled in from the solutions and every cell tagged ``training`` made to
fail at once if it is run. A second student submits the release notebook unanswered, with
every graded test cell tagged ``training`` and ``skip-execution`` (the tags are the
student's: nbgrader restores a locked cell's source, not its tags).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbformat.v4 import new_code_cell, new_notebook

from conftest import copy_inputs
from hw10kit import manifest
from pipeline.preprocessors import SkipTaggedCells

PROBLEM = manifest.BY_KEY["diffusion"]  # small, quick to grade, with training cells
NOTEBOOK = Path(PROBLEM.notebook).stem
STUDENT = "student1"
CHEAT = "student2"
TRAINING_RAN = 'raise RuntimeError("a cell tagged training ran during grading")'


def tags(cell) -> list:
    return cell.metadata.get("tags", [])


def nbgrader(course: Path, *args: str) -> str:
    """Run the ``nbgrader`` command line at ``course``; hw10kit is importable only through
    the course's config (no PYTHONPATH). nbgrader runs ``alembic`` from its own bin folder."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def filled_in(release: Path, solutions: Path) -> nbformat.NotebookNode:
    """The release notebook with its solution code cells taken from the solutions notebook
    (same cell ids) and its training cells replaced by one that raises."""
    nb = nbformat.read(release, as_version=4)
    answers = {c.id: c.source for c in nbformat.read(solutions, as_version=4).cells}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.id]
        if "training" in tags(cell):
            cell.source = TRAINING_RAN
    return nb


def tagged_to_skip(release: Path) -> nbformat.NotebookNode:
    """The release notebook, unanswered, with its graded test cells tagged to be skipped."""
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
            cell.metadata["tags"] = [*tags(cell), "training", "skip-execution"]
    return nb


def code_score(course: Path, student: str) -> tuple:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(NOTEBOOK, "hw10", student)
        return nb.code_score, nb.max_code_score


@pytest.fixture(scope="module")
def graded(built_course, tmp_path_factory) -> Path:
    """A course directory after ``generate_assignment`` and ``autograde`` of two submissions:
    the solutions (STUDENT) and an unanswered notebook whose test cells are tagged to be
    skipped (CHEAT)."""
    course = copy_inputs(tmp_path_factory.mktemp("nbgrader-course"))
    for master in (course / "source" / "hw10").glob("*.ipynb"):
        if master.stem != NOTEBOOK:
            master.unlink()
    nbgrader(course, "generate_assignment", "hw10", "--force")
    name = f"{NOTEBOOK}.ipynb"
    submission = course / "submitted" / STUDENT / "hw10" / name
    submission.parent.mkdir(parents=True)
    nbformat.write(filled_in(built_course.release / name, built_course.solutions / name), submission)
    cheat = course / "submitted" / CHEAT / "hw10" / name
    cheat.parent.mkdir(parents=True)
    nbformat.write(tagged_to_skip(built_course.release / name), cheat)
    nbgrader(course, "autograde", "hw10")
    return course


def test_autograde_gives_the_solutions_full_marks(graded):
    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(NOTEBOOK, "hw10", STUDENT)
        scores = {g.name: (g.auto_score, g.max_score) for g in nb.grades if g.cell_type == "code"}
        code_score, max_code_score = nb.code_score, nb.max_code_score
    assert scores and all(got == full for got, full in scores.values()), scores
    assert code_score == max_code_score == PROBLEM.autograded_points


def test_autograde_does_not_run_cells_tagged_training(graded):
    nb = nbformat.read(graded / "autograded" / STUDENT / "hw10" / f"{NOTEBOOK}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    training = [c for c in code if "training" in tags(c)]
    assert training and all(c.source == TRAINING_RAN for c in training)
    assert all(c.execution_count is None and not c.outputs for c in training)
    assert any(c.execution_count for c in code if "training" not in tags(c))  # the rest ran


def test_skip_tagged_cells_marks_only_tagged_code_cells_for_the_executor():
    cells = [new_code_cell("train()", metadata={"tags": ["training"]}),
             new_code_cell("demo()", metadata={"tags": ["skip-grader"]}),
             new_code_cell("export()", metadata={"tags": ["export"]}),
             new_code_cell("check()")]
    nb, _ = SkipTaggedCells()(new_notebook(cells=cells), {})
    assert ["skip-execution" in tags(c) for c in nb.cells] == [True, True, True, False]


@pytest.mark.parametrize("nbgrader_kind", [{"grade": True, "locked": True, "points": 1},  # a test cell
                                           {"locked": True}, {"solution": True}])
def test_skip_tagged_cells_runs_an_nbgrader_cell_whatever_its_tags(nbgrader_kind):
    meta = {"grade": False, "solution": False, "locked": False, "grade_id": "q1", **nbgrader_kind}
    cell = new_code_cell("assert answer() == 42", metadata={"nbgrader": meta,
                                                             "tags": ["training", "skip-execution"]})
    nb, _ = SkipTaggedCells()(new_notebook(cells=[cell]), {})
    assert tags(nb.cells[0]) == ["training"]


def test_autograde_runs_test_cells_a_student_tagged_to_be_skipped(graded):
    got, possible = code_score(graded, CHEAT)
    assert possible == PROBLEM.autograded_points and got < possible
