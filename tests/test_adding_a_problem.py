"""docs/adding-a-problem.md, followed in a temporary copy of the course: the scaffold
writes a problem (``toy``, numbered 7), ``make release`` validates and builds it, and the
judge grades it beside the others. A problem whose checks cannot be imported costs only
its own points. (Keeps the instructions from going stale.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import copy_inputs, run_release
from grading_helpers import ALL_MARKS

TOY = dict(key="toy", number=7, title="A toy problem", function="double_it")


def scaffold(root, **kw):
    args = {**TOY, **kw}
    return subprocess.run([sys.executable, "-m", "pipeline.scaffold", "--root", str(root),
                           *[x for k, v in args.items() for x in (f"--{k}", str(v))]],
                          cwd=root, capture_output=True, text=True, timeout=60)


def judge_in(root, submission, results):
    env = {**os.environ, "HW10_LOCAL": "1", "PYTHONPATH": f"{root}{os.pathsep}{root / 'autograder'}"}
    subprocess.run([sys.executable, "-m", "hw10grader", "--submission", str(submission),
                    "--results", str(results), "--seed", "3"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=300)
    return json.loads(results.read_text())


def toy_score(doc):
    return sum(t["score"] for t in doc["tests"] if t["name"].startswith("Q7(a) double_it"))


@pytest.fixture(scope="module")
def toy_course(tmp_path_factory):
    root = copy_inputs(tmp_path_factory.mktemp("toy-course"))
    made = scaffold(root)
    assert made.returncode == 0, made.stderr
    proc, _ = run_release(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_the_scaffolded_problem_is_released_with_its_notebook(toy_course):
    nb = json.loads((toy_course / "release" / "hw10" / "hw10_toy.ipynb").read_text())
    assert any("raise NotImplementedError()" in "".join(c["source"]) for c in nb["cells"])


def test_the_solutions_get_full_marks_on_every_problem_including_the_new_one(toy_course, tmp_path):
    doc = judge_in(toy_course, toy_course / "source" / "hw10", tmp_path / "r.json")
    assert sum(t["score"] for t in doc["tests"]) == ALL_MARKS + 3, \
        [t["output"] for t in doc["tests"] if t["status"] == "failed"]
    assert toy_score(doc) == 3


def test_the_blank_release_of_the_new_problem_gets_zero(toy_course, tmp_path):
    doc = judge_in(toy_course, toy_course / "release" / "hw10", tmp_path / "r.json")
    assert toy_score(doc) == 0 and sum(t["score"] for t in doc["tests"]) == 0


def test_scaffolding_the_same_problem_twice_is_refused(toy_course):
    again = scaffold(toy_course)
    assert again.returncode != 0 and "already declares a problem 'toy'" in again.stderr


def test_a_build_whose_notebook_disagrees_with_the_manifest_stops_and_names_the_fix(tmp_path):
    root = copy_inputs(tmp_path)
    assert scaffold(root).returncode == 0
    path = root / "source" / "hw10" / "hw10_toy.ipynb"
    nb = json.loads(path.read_text())
    check = next(c for c in nb["cells"] if c["id"] == "q7a-check")
    check["metadata"]["nbgrader"]["points"] = 4
    path.write_text(json.dumps(nb))
    proc, _ = run_release(root)
    assert proc.returncode != 0
    assert "carries 4 points, but hw10kit/manifest.py gives Q7(a) double_it 3" in proc.stderr


def test_a_problem_whose_module_cannot_be_imported_costs_only_its_own_points(tmp_path):
    root = copy_inputs(tmp_path)
    assert scaffold(root).returncode == 0
    checks = root / "hw10kit" / "checks" / "toy.py"
    checks.write_text(checks.read_text() + "\nimport openai_is_not_installed_here\n")
    doc = judge_in(root, root / "source" / "hw10", tmp_path / "r.json")
    (toy,) = [t for t in doc["tests"] if t["name"].startswith("Q7(a)")]
    assert toy["score"] == 0 and toy["max_score"] == 3
    assert "No module named 'openai_is_not_installed_here'" in toy["output"]
    assert sum(t["score"] for t in doc["tests"]) == ALL_MARKS
