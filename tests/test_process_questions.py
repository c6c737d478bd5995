"""Question 6 (sources, collaborators, hours): written-answer cells at the end of the first
notebook. The grader reports whether they were filled in, in an entry worth no points,
and never scores their content."""
from __future__ import annotations

import json
import shutil

import pytest
from hw10kit import manifest, notebook

from grading_helpers import REPO

PROCESS_NB = REPO / "release" / "hw10" / manifest.PROCESS_NOTEBOOK


def _grade(folder, tmp_path) -> dict:
    """The judge in-process with no graded questions: only the notebooks are read."""
    from hw10grader import judge

    return judge.grade(folder, tmp_path / "results.json", seed=1, questions=[])


def _entry(doc) -> dict:
    return next(t for t in doc["tests"] if t["number"] == f"{manifest.PROCESS_NUMBER}.1")


def _with_answers(tmp_path, answers: dict):
    """The released first notebook with some process answers written in."""
    nb = json.loads(PROCESS_NB.read_text())
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell["source"] = answers[gid]
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / manifest.PROCESS_NOTEBOOK).write_text(json.dumps(nb))
    return folder


def test_every_process_question_has_its_answer_cell_in_the_release():
    found = {w.grade_id for w in notebook.written_answers(json.loads(PROCESS_NB.read_text()))}
    assert {q.grade_id for q in manifest.PROCESS} <= found


def test_a_release_answer_cell_counts_as_empty_and_a_written_one_as_filled(tmp_path):
    folder = _with_answers(tmp_path, {"q6_hours": "About ten hours."})
    nb = json.loads((folder / manifest.PROCESS_NOTEBOOK).read_text())
    filled = {w.grade_id: w.filled for w in notebook.written_answers(nb)}
    assert filled["q6_hours"] and not filled["q6_sources"]


def test_empty_answers_are_named_with_what_they_ask(tmp_path):
    entry = _entry(_grade(_with_answers(tmp_path, {"q6_hours": "10"}), tmp_path))
    assert entry["status"] == "failed"
    assert "Q6(a) (the sources you used)" in entry["output"]
    assert "Q6(b)" in entry["output"] and "Q6(c)" not in entry["output"]
    assert "written side" in entry["output"]


def test_filled_answers_pass_whatever_they_say(tmp_path):
    answers = {q.grade_id: "none" for q in manifest.PROCESS}
    entry = _entry(_grade(_with_answers(tmp_path, answers), tmp_path))
    assert entry["status"] == "passed"


@pytest.mark.parametrize("filled", [False, True])
def test_the_entry_is_worth_no_autograded_points(tmp_path, filled):
    answers = {q.grade_id: "x" for q in manifest.PROCESS} if filled else {}
    entry = _entry(_grade(_with_answers(tmp_path, answers), tmp_path))
    assert entry["score"] == 0 and entry["max_score"] == 0


def test_a_missing_first_notebook_is_reported_in_the_entry(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    shutil.copy(REPO / "release" / "hw10" / "hw10_vae.ipynb", folder)
    entry = _entry(_grade(folder, tmp_path))
    assert entry["status"] == "failed" and manifest.PROCESS_NOTEBOOK in entry["output"]


def test_the_summary_says_whether_they_were_filled_in(tmp_path):
    doc = _grade(_with_answers(tmp_path, {}), tmp_path)
    assert any(line.startswith(f"Q{manifest.PROCESS_NUMBER} process questions") and "Still empty" in line
               for line in doc["output"].splitlines())


def test_the_build_refuses_a_first_notebook_without_a_process_answer_cell():
    nb = json.loads((REPO / "source" / "hw10" / manifest.PROCESS_NOTEBOOK).read_text())
    nb["cells"] = [c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "q6_hours"]
    problem = next(p for p in manifest.PROBLEMS if p.notebook == manifest.PROCESS_NOTEBOOK)
    messages = manifest.notebook_problems(problem, nb)
    assert any("'q6_hours'" in m and "Q6(c)" in m for m in messages)
