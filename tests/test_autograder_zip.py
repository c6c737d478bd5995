"""The built autograder zip, run the way Gradescope runs it: its own run_autograder in
a Gradescope-like layout (``AUTOGRADER_ROOT``), the path ``make grade`` takes."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from grading_helpers import vae_entry, ALL_MARKS, REPO, check_entries, needs_pool_users, score_of, solution_with, write_folder
from hw10grader.assignment import QUESTIONS
from hw10grader.results import validate
from pipeline import grade_local


def run_zip(built_course, submission: Path, tmp_path, **env):
    return grade_local.run(built_course.zip, submission, tmp_path / "results.json", seed=5,
                           env={k: str(v) for k, v in env.items()})


def test_solutions_get_full_marks_through_run_autograder(built_course, tmp_path):
    doc = run_zip(built_course, built_course.solutions, tmp_path)
    validate(doc)
    assert score_of(doc) == ALL_MARKS, [t["output"] for t in doc["tests"] if t["status"] == "failed"]


def test_blank_release_gets_zero_with_a_valid_results_file(built_course, tmp_path):
    doc = run_zip(built_course, built_course.release, tmp_path)
    validate(doc)
    assert score_of(doc) == 0 and len(check_entries(doc)) == sum(len(q.checks) for q in QUESTIONS)
    assert "NotImplementedError" in vae_entry(doc)["output"]


def test_results_are_written_even_when_the_grader_cannot_start(built_course, tmp_path):
    base = tmp_path / "gs"
    root = grade_local.gradescope_layout(built_course.zip, built_course.solutions, base)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "HW10_PYTHON": "/nonexistent/python"}
    proc = subprocess.run([str(root / "run_autograder")], cwd=root, env=env)
    assert proc.returncode == 0
    doc = json.loads((root / "results" / "results.json").read_text())
    assert doc["tests"] == [] and "could not start" in doc["output"]


@needs_pool_users
def test_student_code_cannot_read_the_hidden_checks(built_course, tmp_path):
    cheat = ("import sys, os\ndef sample_gaussian(m, v):\n"
             "    path = os.path.join(sys.argv[1], 'hw10grader', 'hidden', 'vae.py')\n"
             "    raise RuntimeError('LEAKED' + str(len(open(path).read())))")
    doc = run_zip(built_course, write_folder(tmp_path / "sub", solution_with(cheat)), tmp_path)
    out = vae_entry(doc)["output"]
    assert "Permission denied" in out and not re.search(r"LEAKED\d", out)


def test_make_grade_writes_results_for_a_zip_submission(built_course, tmp_path):
    sub = tmp_path / "submission.zip"
    shutil.make_archive(str(sub.with_suffix("")), "zip", built_course.solutions)
    results = tmp_path / "out" / "results.json"
    proc = subprocess.run([sys.executable, "-m", "pipeline.grade_local", "--submission", str(sub),
                           "--results", str(results), "--zip", str(built_course.zip)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert score_of(json.loads(results.read_text())) == ALL_MARKS
    assert f"{ALL_MARKS:g} / {ALL_MARKS:g}" in proc.stdout


def test_make_grade_prints_the_results_once_with_a_path_that_exists(built_course, tmp_path):
    results = tmp_path / "out" / "results.json"
    proc = subprocess.run([sys.executable, "-m", "pipeline.grade_local", "--submission",
                           str(built_course.solutions), "--results", str(results), "--zip", str(built_course.zip)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    arrows = [line for line in proc.stdout.splitlines() if " -> " in line]
    assert len(arrows) == 1 and arrows[0].endswith(str(results)) and results.exists()
    assert proc.stdout.count("Q2(a) sample_gaussian: output has the shape of m") == 1


def test_make_grade_says_plainly_which_environment_it_grades_in(built_course, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline.grade_local", "--submission",
                           str(built_course.solutions), "--results", str(tmp_path / "r.json"),
                           "--zip", str(built_course.zip)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "the development environment, not the one setup.sh builds" in proc.stdout


def interpreter_inside(folder: Path) -> Path:
    """A virtual environment inside ``folder`` that sees the development packages: a
    checkout's .venv, as it sits under /root (mode 0700) in a container."""
    import site

    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_dir,) = venv.glob("lib/python*/site-packages")
    (site_dir / "dev.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin" / "python"


@pytest.fixture()
def private_folder():
    folder = Path(tempfile.mkdtemp(prefix="hw10-private-"))  # mode 0700, like /root
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox users only exist for a root judge")
def test_root_grading_from_a_0700_folder_gets_full_marks_and_names_the_folder(built_course, private_folder, tmp_path):
    python = interpreter_inside(private_folder)
    doc = grade_local.run(built_course.zip, built_course.solutions, tmp_path / "results.json",
                          seed=5, python=str(python))
    assert score_of(doc) == ALL_MARKS, [t["output"] for t in doc["tests"] if t["status"] == "failed"]
    assert f"cannot traverse {private_folder} (mode 0700)" in doc["output"]
    assert "ran as root" in doc["output"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox users only exist for a root judge")
def test_on_gradescope_an_unreachable_interpreter_is_an_internal_error_naming_the_folder(
        built_course, private_folder, tmp_path):
    python = interpreter_inside(private_folder)
    doc = grade_local.run(built_course.zip, built_course.solutions, tmp_path / "results.json",
                          seed=5, python=str(python), env={"HW10_LOCAL": "0"})
    assert score_of(doc) == 0
    assert all(f"cannot traverse {private_folder} (mode 0700)" in t["output"] for t in check_entries(doc))


def test_the_summary_says_how_many_points_the_hidden_checks_took_per_function(built_course, tmp_path):
    swap = "def sample_gaussian(m, v):\n    return m + v * torch.randn_like(m)"
    doc = run_zip(built_course, write_folder(tmp_path / "sub", solution_with(swap)), tmp_path)
    lines = {line.split(":")[0]: line for line in doc["output"].splitlines() if line.startswith("Q2(")}
    assert "hidden checks took 1 point(s) in 1 check(s)" in lines["Q2(a) sample_gaussian"]
    assert "hidden checks 2.5/2.5" in lines["Q2(b) negative_elbo_bound"]


def test_hidden_visibility_is_chosen_at_build_time(tmp_path):
    from conftest import copy_inputs

    root = copy_inputs(tmp_path / "course")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "release", "--root", str(root)], cwd=root,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HIDDEN_VISIBILITY": "after_due_date"})
    assert proc.returncode == 0, proc.stderr
    doc = grade_local.run(root / "autograder" / "autograder.zip", root / "solutions" / "hw10",
                          tmp_path / "r.json", seed=5)
    hidden = {c.name for q in QUESTIONS for c in q.hidden}
    assert {t["visibility"] for t in doc["tests"] if t["name"] in hidden} == {"after_due_date"}


def test_an_unknown_hidden_visibility_stops_the_build():
    from pipeline.autograder_zip import settings_json
    from pipeline.files import BuildError

    with pytest.raises(BuildError, match="HIDDEN_VISIBILITY"):
        settings_json("sometimes")


def test_a_relative_grader_python_is_made_absolute_for_run_autograder(tmp_path, monkeypatch):
    """`make grade GRADER_PYTHON=.grader-venv/bin/python`: run_autograder runs in the layout."""
    monkeypatch.chdir(REPO)
    env = grade_local.autograder_env(tmp_path, ".grader-venv/bin/python")
    assert env["HW10_PYTHON"] == str(REPO / ".grader-venv" / "bin" / "python")
