"""``make grade-batch``: a whole class graded through the same judge as ``make grade``
(``pipeline.grade_batch``), several gradings at once, into one folder per student, a
gradebook and a report. Most submissions here are tiny (an empty zip, a corrupt notebook)
so that each grades in about a second; one holds the VAE solution (a real score), and the
isolation tests run real student code. The autograder zip is packed from this checkout's
grader and kit as ``make release`` packs it, without the rest of the build."""
from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import nbformat
import pytest
from grading_helpers import ALL_MARKS, REPO, needs_pool_users

from pipeline import batch_report, grade_batch, grade_local

EXPORT_METADATA = """\
submission_111:
  :submitters:
  - :name: Ada Lovelace
    :sid: '3031234567'
    :email: ada@berkeley.edu
  :created_at: 2026-11-30 23:59:59.000000000 -08:00
  :score: 0.0
  :history: !ruby/object:Gradescope::History
    attempts: 1
submission_222:
  :submitters:
  - :name: Alan Turing
    :sid: '3037654321'
    :email: alan@berkeley.edu
  - :name: Grace Hopper
    :sid: '3030000001'
    :email: grace@berkeley.edu
submission_333:
  :submitters:
  - :name: Nobody Uploaded
    :sid: '3039999999'
    :email: nobody@berkeley.edu
"""
VAE_POINTS = 10.0  # what the VAE solution alone scores
#: Why student code would not run as a pool user here (None as root with a venv the pool
#: users reach): the batches below then need --unsafe-no-isolation, as an ordinary user does.
NO_ISOLATION = grade_batch.isolation_problem(sys.executable)
UNSAFE_FLAG = ["--unsafe-no-isolation"] if NO_ISOLATION else []


def empty_zip(path: Path) -> Path:
    zipfile.ZipFile(path, "w").close()
    return path


def private_folder(path: Path) -> Path:
    """Submissions live where other users (the pool users) cannot reach them."""
    path.mkdir(mode=0o700, parents=True)
    return path


def read_gradebook(out: Path) -> tuple:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def section(page: str, anchor: str) -> str:
    """The report's section under the heading with id ``anchor``, up to the next heading."""
    start = page.index(f'<h2 id="{anchor}">')
    end = page.find("<h2", start + 1)
    return page[start:end if end > 0 else None]


def batch(grader_zip, source, out, **kw):
    kw.setdefault("log", lambda *_: None)
    kw.setdefault("unsafe_no_isolation", NO_ISOLATION is not None)
    return grade_batch.run_batch(source, out, zip_path=grader_zip, progress=kw.pop("progress", False), **kw)


@pytest.fixture(scope="module")
def grader_zip(tmp_path_factory) -> Path:
    """The autograder zip as ``make release`` packs it, from this checkout."""
    from pipeline.autograder_zip import mode_for, settings_json, write_zip, zip_entries
    from pipeline.layout import Layout

    entries = [(name, path.read_bytes()) for name, path in zip_entries(Layout.at(REPO))
               if name != "hw10grader/settings.json"]
    return write_zip(tmp_path_factory.mktemp("zip") / "autograder.zip",
                     entries + [("hw10grader/settings.json", settings_json())], mode_for)


@pytest.fixture(scope="module")
def small_class(grader_zip, tmp_path_factory):
    """A plain folder: alice.zip (empty), bob/ (a notebook that is not JSON), carol.zip
    (not a zip at all), dave/ (the VAE solution alone), graded once."""
    base = tmp_path_factory.mktemp("class")
    subs = private_folder(base / "submissions")
    empty_zip(subs / "alice.zip")
    (subs / "bob").mkdir()
    (subs / "bob" / "hw10_vae.ipynb").write_text("{not json")
    (subs / "carol.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    (subs / "dave").mkdir()
    (subs / "dave" / "hw10_vae.ipynb").write_bytes((REPO / "solutions" / "hw10" / "hw10_vae.ipynb").read_bytes())
    rows = batch(grader_zip, subs, base / "out")
    return base / "out", rows


@pytest.fixture(scope="module")
def gradescope_export(grader_zip, tmp_path_factory):
    """Gradescope's "Download submissions" zip: a top folder holding the metadata and one
    folder per submission; submission_333 is listed but has no folder. Graded through the
    command line."""
    base = tmp_path_factory.mktemp("export")
    export = base / "submissions_export.zip"
    with zipfile.ZipFile(export, "w") as zf:
        zf.writestr("assignment_42_export/submission_metadata.yml", EXPORT_METADATA)
        zf.writestr("assignment_42_export/submission_111/notes.txt", "I forgot the notebooks")
        zf.writestr("assignment_42_export/submission_222/hw10_vae.ipynb", "{not json")
    os.chmod(export, 0o600)
    proc = subprocess.run([sys.executable, "-m", "pipeline.grade_batch", "--submissions", str(export),
                           "--out", str(base / "out"), "--zip", str(grader_zip), "--no-progress", *UNSAFE_FLAG],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / "out", proc


# ---------------------------------------------------------------- finding submissions

def test_a_folder_of_zips_and_folders_is_graded_one_student_each(small_class):
    out, rows = small_class
    assert [r["record"]["student"] for r in rows] == ["alice", "bob", "carol", "dave"]
    for student in ("alice", "bob", "carol", "dave"):
        doc = json.loads((out / student / "results.json").read_text())
        assert len(doc["tests"]) > 0 and doc["extra_data"]["seed"] is not None
    bob = json.loads((out / "bob" / "results.json").read_text())
    assert "hw10_vae.ipynb could not be read" in bob["output"]


def test_a_gradescope_export_puts_each_submitters_name_email_and_sid_in_the_gradebook(gradescope_export):
    out, proc = gradescope_export
    _, rows = read_gradebook(out)
    ada = next(r for r in rows if r["email"] == "ada@berkeley.edu")
    assert (ada["name"], ada["sid"], ada["submission"]) == ("Ada Lovelace", "3031234567", "submission_111")
    assert (out / "ada@berkeley.edu" / "results.json").exists()
    assert "3 submissions" in proc.stdout


def test_each_member_of_a_group_submission_gets_the_groups_row(gradescope_export):
    out, _ = gradescope_export
    _, rows = read_gradebook(out)
    alan, grace = (next(r for r in rows if r["email"] == e) for e in ("alan@berkeley.edu", "grace@berkeley.edu"))
    assert (grace["name"], grace["sid"]) == ("Grace Hopper", "3030000001")
    assert alan["student"] == grace["student"] == "alan@berkeley.edu"
    assert alan["score"] == grace["score"] and alan["results"] == "alan@berkeley.edu/results.json"


def test_a_submission_the_export_lists_without_files_gets_a_row_saying_so(gradescope_export):
    out, _ = gradescope_export
    _, rows = read_gradebook(out)
    nobody = next(r for r in rows if r["email"] == "nobody@berkeley.edu")
    assert nobody["status"] == "failed" and "holds no files" in nobody["detail"]
    assert nobody["score"] == "" and not (out / "nobody@berkeley.edu" / "results.json").exists()


def test_an_unpacked_export_folder_is_read_like_its_zip(tmp_path):
    export = private_folder(tmp_path / "assignment_42_export")
    (export / "submission_metadata.yml").write_text(EXPORT_METADATA)
    for folder in ("submission_111", "submission_222"):
        (export / folder).mkdir()
    subs = grade_batch.discover(export, tmp_path / "work")
    assert [(s.key, s.submission_id, s.path) for s in subs] == [
        ("ada@berkeley.edu", "submission_111", export / "submission_111"),
        ("alan@berkeley.edu", "submission_222", export / "submission_222"),
        ("nobody@berkeley.edu", "submission_333", None)]
    assert [p["email"] for p in subs[1].submitters] == ["alan@berkeley.edu", "grace@berkeley.edu"]


def test_metadata_keys_lose_rubys_colons_and_unknown_tags_read_as_plain_values(tmp_path):
    path = tmp_path / "submission_metadata.yml"
    path.write_text(EXPORT_METADATA)
    meta = grade_batch.read_metadata(path)
    assert meta["submission_222"]["submitters"][1] == {"name": "Grace Hopper", "sid": "3030000001",
                                                        "email": "grace@berkeley.edu"}
    assert meta["submission_111"]["history"] == {"attempts": 1}


# ---------------------------------------------------------------- the gradebook

def test_the_gradebook_has_a_column_per_check_in_the_results_order(small_class):
    out, _ = small_class
    head, _ = read_gradebook(out)
    checks = [t["name"] for t in json.loads((out / "dave" / "results.json").read_text())["tests"]]
    first = head.index("max_score") + 1
    assert head[first:first + len(checks)] == checks and head[first + len(checks):] == ["seed", "seconds", "results"]


def test_the_gradebook_has_a_row_per_student_with_each_checks_score(small_class):
    out, _ = small_class
    head, rows = read_gradebook(out)
    assert [r["student"] for r in rows] == ["alice", "bob", "carol", "dave"]
    dave = {t["name"]: t["score"] for t in json.loads((out / "dave" / "results.json").read_text())["tests"]}
    assert {name: float(rows[3][name]) for name in dave} == dave


def test_the_gradebook_totals_are_each_students_score_out_of_every_point(small_class):
    _, rows = read_gradebook(small_class[0])
    assert [float(r["score"]) for r in rows] == [0, 0, 0, VAE_POINTS]
    assert all(float(r["max_score"]) == ALL_MARKS for r in rows)


def test_a_gradebook_cell_that_looks_like_a_formula_is_kept_as_text(tmp_path):
    record = {"student": "eve", "submitters": [{"name": '=HYPERLINK("http://x","y")', "email": "+1@x", "sid": "-3"}]}
    doc = {"tests": [{"name": "Q2(a) sample_gaussian: shape", "score": -0.5, "max_score": 1}]}
    grade_batch.write_gradebook(tmp_path / "gradebook.csv", [{"record": record, "doc": doc, "status": "graded",
                                                              "detail": "@SUM(A1)"}], ["Q2(a) sample_gaussian: shape"])
    _, (row,) = read_gradebook(tmp_path)
    assert [row[k] for k in ("name", "email", "sid", "detail")] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1@x", "'-3", "'@SUM(A1)"]
    assert row["Q2(a) sample_gaussian: shape"] == "-0.5" and row["score"] == "-0.5"  # numbers stay numbers


def test_the_gradebooks_link_to_the_results_is_kept_as_text_too(tmp_path):
    record = {"student": "=cmd|' /C calc'!A0", "submitters": [{"name": "x"}]}
    grade_batch.write_gradebook(tmp_path / "gradebook.csv", [{"record": record, "doc": {"tests": []},
                                                              "status": "graded", "detail": ""}], [])
    _, (row,) = read_gradebook(tmp_path)
    assert row["results"] == "'=cmd|' /C calc'!A0/results.json"


def test_a_students_folder_name_never_starts_like_a_formula():
    assert [grade_batch.slug(n) for n in ("+15105550100", "-alice", "@bob", "._-+@carol@x.edu")] == [
        "15105550100", "alice", "bob", "carol@x.edu"]


# ---------------------------------------------------------------- re-runs

def test_a_rerun_skips_the_students_already_graded(grader_zip, tmp_path):
    subs = private_folder(tmp_path / "subs")
    empty_zip(subs / "alice.zip")
    batch(grader_zip, subs, tmp_path / "out")
    results = tmp_path / "out" / "alice" / "results.json"
    before = results.stat().st_mtime_ns
    empty_zip(subs / "bob.zip")  # a late submission
    rows = batch(grader_zip, subs, tmp_path / "out")
    assert results.stat().st_mtime_ns == before
    assert [(r["record"]["student"], bool(r["record"].get("skipped"))) for r in rows] == [("alice", True), ("bob", False)]


def test_a_regrade_grades_everyone_again_each_with_their_recorded_seed(grader_zip, tmp_path):
    subs = private_folder(tmp_path / "subs")
    for student in ("alice", "bob"):
        empty_zip(subs / f"{student}.zip")
    batch(grader_zip, subs, tmp_path / "out")
    results = {s: tmp_path / "out" / s / "results.json" for s in ("alice", "bob")}
    seeds = {s: json.loads(p.read_text())["extra_data"]["seed"] for s, p in results.items()}
    assert seeds["alice"] != seeds["bob"]  # each grading drew its own
    before = {s: p.stat().st_mtime_ns for s, p in results.items()}
    rows = batch(grader_zip, subs, tmp_path / "out", regrade=True)
    assert all(results[s].stat().st_mtime_ns != before[s] for s in results)
    assert not any(r["record"].get("skipped") for r in rows)
    assert {s: json.loads(p.read_text())["extra_data"]["seed"] for s, p in results.items()} == seeds
    assert {r["record"]["student"]: r["record"]["seed"] for r in rows} == seeds


@pytest.fixture(scope="module")
def failed_regrade(grader_zip, tmp_path_factory):
    """alice.zip graded; regraded with an autograder "zip" that is not one (the grading
    dies before the judge starts); then the batch run again as at first. Returns the first
    results, the failed regrade's row, the results after it, and the last run's row and results."""
    base = tmp_path_factory.mktemp("failed-regrade")
    subs = private_folder(base / "subs")
    empty_zip(subs / "alice.zip")
    out, results = base / "out", base / "out" / "alice" / "results.json"
    batch(grader_zip, subs, out)
    first = json.loads(results.read_text())
    (base / "broken.zip").write_bytes(b"not a zip")
    failed = batch(base / "broken.zip", subs, out, regrade=True)[0]
    kept = json.loads(results.read_text()) if results.exists() else None
    again = batch(grader_zip, subs, out)[0]
    return first, failed, kept, again, json.loads(results.read_text())


def test_a_regrade_that_fails_keeps_the_earlier_results(failed_regrade):
    first, failed, kept, *_ = failed_regrade
    assert failed["status"] == "failed" and "still the earlier grading's" in failed["detail"]
    assert kept == first and failed["doc"] == first


def test_a_student_whose_last_grading_failed_is_graded_again_with_the_same_seed(failed_regrade):
    first, _, _, again, last = failed_regrade
    assert again["status"] == "graded" and not again["record"].get("skipped")
    assert last["extra_data"]["seed"] == again["record"]["seed"] == first["extra_data"]["seed"]


def test_a_grading_whose_results_are_gone_takes_the_seed_recorded_in_batch_json(grader_zip, tmp_path):
    subs = private_folder(tmp_path / "subs")
    empty_zip(subs / "alice.zip")
    batch(grader_zip, subs, tmp_path / "out")
    seed = json.loads((tmp_path / "out" / "alice" / "batch.json").read_text())["seed"]
    (tmp_path / "out" / "alice" / "results.json").unlink()
    rows = batch(grader_zip, subs, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "alice" / "results.json").read_text())["extra_data"]["seed"] == seed
    assert rows[0]["record"]["seed"] == seed


# ---------------------------------------------------------------- what other users can read

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_the_batch_writes_is_readable_by_its_owner_only(small_class):
    out, _ = small_class
    assert mode(out) == 0o700 and mode(out / "gradebook.csv") == 0o600 and mode(out / "report.html") == 0o600
    for student in ("alice", "bob", "carol", "dave"):
        assert mode(out / student) == 0o700
        assert {f.name: mode(f) for f in (out / student).iterdir()} == {
            "results.json": 0o600, "batch.json": 0o600, "grading.log": 0o600}


def test_an_out_folder_that_others_could_enter_is_made_private(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    (out / "gradebook.csv").write_text("from an earlier batch")
    (out / "gradebook.csv").chmod(0o644)
    subs = private_folder(tmp_path / "subs")
    empty_zip(subs / "alice.zip")
    monkeypatch.setattr(grade_batch, "grade_one", lambda sub, out, opts: {  # nothing is graded
        "student": sub.key, "submitters": [], "status": "failed", "detail": ""})
    batch(Path("unused.zip"), subs, out)
    assert mode(out) == 0o700 and mode(out / "gradebook.csv") == 0o600


# ---------------------------------------------------------------- gradings that go wrong

def stand_in_python(folder: Path, marker: str) -> Path:
    """An interpreter for run_autograder that, for a submission holding HANG, hangs (as
    ``marker``, so the test can look for it afterwards); for STALL writes a checkpoint
    worth one point and then hangs; for CRASH dies; and is this Python otherwise."""
    checkpoint = json.dumps({"tests": [{"name": "Q2(a) sample_gaussian: shape", "number": "2.1", "score": 1.0,
                                        "max_score": 1.0, "status": "passed", "output": "ok"}],
                             "output": "checkpoint", "extra_data": {"seed": 77}})
    script = folder / "python"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        if [ -e "$AUTOGRADER_ROOT/submission/HANG" ]; then exec -a {marker} sleep 600; fi
        if [ -e "$AUTOGRADER_ROOT/submission/STALL" ]; then
          echo '{checkpoint}' > "$AUTOGRADER_ROOT/results/results.json"
          exec -a {marker} sleep 600
        fi
        if [ -e "$AUTOGRADER_ROOT/submission/CRASH" ]; then kill -KILL $$; fi
        exec {sys.executable} "$@"
        """))
    script.chmod(0o755)
    return script


def processes_named(marker: str) -> list:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def troubled_class(grader_zip, tmp_path_factory):
    """hangs/ (the judge never returns), stalls/ (it checkpoints, then never returns),
    dies/ (it is killed at once) and fine.zip, graded with a 4-second limit per grading.
    The stand-in interpreter lives where the pool users cannot reach it: graded
    --unsafe-no-isolation, as root or not."""
    base = tmp_path_factory.mktemp("troubled")
    subs = private_folder(base / "subs")
    for name, sign in (("hangs", "HANG"), ("stalls", "STALL"), ("dies", "CRASH")):
        (subs / name).mkdir()
        (subs / name / sign).write_text("")
    empty_zip(subs / "fine.zip")
    marker = f"hw10-test-hang-{uuid.uuid4().hex[:8]}"
    logged = []
    start = time.monotonic()
    rows = batch(grader_zip, subs, base / "out", timeout_s=4, jobs=2, python=str(stand_in_python(base, marker)),
                 log=logged.append, unsafe_no_isolation=True)
    seconds = time.monotonic() - start
    return base / "out", {r["record"]["student"]: r for r in rows}, seconds, marker, logged


def test_a_grading_that_hangs_or_dies_gets_its_row_and_the_batch_goes_on(troubled_class):
    out, rows, seconds, marker, _ = troubled_class
    status = {s: (r["status"], r["detail"]) for s, r in rows.items()}
    assert status["fine"] == ("graded", "")
    assert status["hangs"][0] == "time limit" and "killed after 4 s" in status["hangs"][1]
    assert status["dies"][0] == "internal error" and "could not start" in status["dies"][1]
    assert seconds < 60 and processes_named(marker) == []
    _, book = read_gradebook(out)
    assert {r["student"]: r["status"] for r in book} == {"dies": "internal error", "fine": "graded",
                                                          "hangs": "time limit", "stalls": "time limit"}


def test_a_grading_killed_at_its_limit_keeps_what_the_judge_had_checkpointed(troubled_class):
    out, rows, *_ = troubled_class
    assert "what it had checkpointed" in rows["stalls"]["detail"]
    doc = json.loads((out / "stalls" / "results.json").read_text())
    assert doc["output"].startswith("The batch killed this grading after 4 s")
    assert doc["tests"][0]["score"] == 1.0 and rows["stalls"]["record"]["seed"] == 77


def test_the_report_lists_the_gradings_that_hit_a_time_limit_or_an_internal_error(troubled_class):
    out, *_ = troubled_class
    needs_a_look = section((out / "report.html").read_text(), "needs-a-look")
    for student, status in (("hangs", "time limit"), ("stalls", "time limit"), ("dies", "internal error")):
        assert re.search(rf"<td>{student}</td><td><span class=\"status [^\"]+\">{status}</span>", needs_a_look)
    assert "<td>fine</td>" not in needs_a_look


def test_the_placeholder_of_a_judge_that_died_counts_as_an_internal_error():
    doc = {"tests": [{"name": "Q2(a) sample_gaussian: shape", "score": 0, "max_score": 1, "status": "failed",
                      "output": "not run"}],
           "output": "Grading did not finish. Hidden-input seed: 5 (a regrade with HW10_SEED=5 reproduces these inputs)."}
    assert grade_batch.classify(doc) == ("internal error", doc["output"])


def test_a_students_exception_asking_for_the_course_staff_is_not_an_internal_error():
    doc = {"output": "Autograded score: 0 / 1.\nQ2(a) sample_gaussian: 0/1",
           "tests": [{"name": "Q2(a) sample_gaussian: shape", "score": 0, "max_score": 1, "status": "failed",
                      "output": "sample_gaussian raised RuntimeError: the autograder could not start; "
                                "internal: please tell the course staff"}]}
    assert grade_batch.classify(doc) == ("graded", "")


def test_the_judges_own_internal_error_on_a_question_is_one():
    doc = {"output": "Autograded score: 0 / 1.",
           "tests": [{"name": "Q2(a) sample_gaussian: shape", "score": 0, "max_score": 1, "status": "failed",
                      "output": "the autograder hit an internal error on this question; please tell the "
                                "course staff.\nTraceback (most recent call last):"}]}
    assert grade_batch.classify(doc) == (
        "internal error", "Q2(a) sample_gaussian: shape: the autograder hit an internal error on this "
                          "question; please tell the course staff.")


def test_gradings_run_one_at_a_time_when_student_code_would_not_run_as_a_pool_user(troubled_class):
    *_, logged = troubled_class
    assert any("grading one submission at a time" in line and "WITHOUT ISOLATION" in line for line in logged)


def test_a_batch_graded_without_isolation_says_so_at_the_top_of_the_report(troubled_class):
    out, rows, *_ = troubled_class
    page = (out / "report.html").read_text()
    assert 'id="no-isolation"' in page and "Graded WITHOUT ISOLATION" in page
    assert page.index('id="no-isolation"') < page.index('<div class="cards">')
    assert all(r["record"]["no_isolation"] for r in rows.values())


def test_without_isolation_the_batch_refuses_unless_told_it_is_unsafe(grader_zip, tmp_path, capsys):
    subs = private_folder(tmp_path / "subs")
    empty_zip(subs / "alice.zip")
    python = stand_in_python(private_folder(tmp_path / "bin"), "unused")  # pool users cannot reach it
    code = grade_batch.main(["--submissions", str(subs), "--out", str(tmp_path / "out"), "--zip", str(grader_zip),
                             "--python", str(python), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "refusing to grade" in err and "--unsafe-no-isolation" in err and "root" in err
    assert not (tmp_path / "out").exists()


def test_a_batch_with_isolation_forbids_the_judge_to_fall_back_to_running_code_as_root(tmp_path, monkeypatch):
    """HW10_LOCAL=1 lets a root judge whose pool users cannot reach the interpreter run
    student code as root; a batch that has checked the isolation never allows it."""
    seen = {}

    def grade_one(sub, out, opts):
        seen.update(opts.env)
        return {"student": sub.key, "submitters": [], "status": "graded", "detail": ""}

    subs = private_folder(tmp_path / "subs")
    empty_zip(subs / "alice.zip")
    monkeypatch.setattr(grade_batch, "isolation_problem", lambda python: None)
    monkeypatch.setattr(grade_batch, "grade_one", grade_one)
    batch(Path("unused.zip"), subs, tmp_path / "out", unsafe_no_isolation=False)
    assert seen["HW10_LOCAL"] == "0"


# ---------------------------------------------------------------- isolation

LEASE_HOLDER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from hw10grader import sandbox_users
for _ in range(3):
    lease = sandbox_users.acquire(time.monotonic() + 60)
    start = time.time()
    time.sleep(0.3)
    print(json.dumps([lease.uid, start, time.time()]), flush=True)
    sandbox_users.release(lease)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root judge leases pool users")
def test_a_pool_user_is_leased_to_one_process_at_a_time():
    """Three separate processes (as three judges of a batch) share two pool users: none
    ever holds a user another process holds."""
    env = {**os.environ, "HW10_SANDBOX_USERS": "hw10sb7,hw10sb8"}
    procs = [subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, str(REPO / "autograder")], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    leases = [(i, *json.loads(line)) for i, p in enumerate(procs) for line in p.communicate(timeout=120)[0].splitlines()]
    assert len(leases) == 9 and all(p.returncode == 0 for p in procs)
    for a in leases:
        for b in leases:
            if a[0] != b[0] and a[1] == b[1]:
                assert a[3] <= b[2] or b[3] <= a[2], f"uid {a[1]} held by two processes at once: {a}, {b}"


SLOW_STUDENT = """\
import os, time
def sample_gaussian(m, v):
    start = time.time()
    time.sleep(0.8)
    raise RuntimeError(f"RAN uid={os.getuid()} from={start:.3f} to={time.time():.3f}")
"""


def _runs(doc) -> list:
    return [(int(u), float(a), float(b)) for t in doc["tests"]
            for u, a, b in re.findall(r"RAN uid=(\d+) from=([\d.]+) to=([\d.]+)", t["output"])]


@needs_pool_users
def test_two_students_graded_at_once_never_run_code_under_one_uid_at_the_same_time(grader_zip, tmp_path):
    subs = private_folder(tmp_path / "subs")
    for student in ("ann", "ben"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SLOW_STUDENT)])
        (subs / student).mkdir()
        nbformat.write(nb, subs / student / "hw10_vae.ipynb")
    batch(grader_zip, subs, tmp_path / "out", jobs=2)
    runs = {s: _runs(json.loads((tmp_path / "out" / s / "results.json").read_text())) for s in ("ann", "ben")}
    assert runs["ann"] and runs["ben"] and all(uid != 0 for s in runs for uid, _, _ in runs[s])
    overlapping = [(a, b) for a in runs["ann"] for b in runs["ben"] if a[1] < b[2] and b[1] < a[2]]
    assert overlapping, "the two gradings did not run at the same time: the test shows nothing"
    assert all(a[0] != b[0] for a, b in overlapping), overlapping


def test_the_layout_hides_the_judge_the_submission_and_the_results_before_it_is_opened(grader_zip, tmp_path):
    """Other students' code runs beside a layout being built: what run_autograder will hide
    is never reachable by other users, not even before it runs."""
    student = private_folder(tmp_path / "student")
    (student / "hw10_vae.ipynb").write_text("{}")
    (student / "hw10_vae.ipynb").chmod(0o644)
    root = grade_local.gradescope_layout(grader_zip, student, private_folder(tmp_path / "base"))
    for private in (root / "source" / "hw10grader", root / "submission", root / "results"):
        assert not private.stat().st_mode & 0o077, private
    assert all(p.stat().st_mode & stat.S_IXOTH for p in (root.parent, root, root / "source"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is about the pool users of a root judge")
def test_a_submissions_folder_other_users_can_enter_is_warned_about():
    logged = []
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # pytest's own folders are 0700
        os.chmod(top, 0o755)
        for name, mode in (("open", 0o755), ("closed", 0o700)):
            os.mkdir(Path(top) / name)
            os.chmod(Path(top) / name, mode)
            grade_batch._warn_if_exposed(Path(top) / name, lambda line, name=name: logged.append((name, line)))
    assert [name for name, _ in logged] == ["open"] and "chmod 700" in logged[0][1]


# ---------------------------------------------------------------- progress and report

def test_the_batch_shows_a_progress_bar(grader_zip, tmp_path, capfd):
    subs = private_folder(tmp_path / "subs")
    empty_zip(subs / "alice.zip")
    batch(grader_zip, subs, tmp_path / "out", progress=True)
    assert re.search(r"grading: 100%\|.*\| 1/1 ", capfd.readouterr().err)


def test_the_report_is_one_self_contained_page(small_class):
    page = (small_class[0] / "report.html").read_text()
    assert "<svg" in page  # the histogram, inline
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"url\((?!#)", page)  # only references inside the page


def test_the_report_has_the_distribution_the_failure_rates_and_the_common_messages(small_class):
    page = (small_class[0] / "report.html").read_text()
    assert "<svg" in section(page, "score-distribution")
    assert "Q2(a) sample_gaussian: output has the shape of m" in section(page, "checks-by-failure-rate")
    messages = section(page, "most-common-failure-messages")
    assert "<h3>Q2(a) sample_gaussian" in messages and 'href="bob/results.json"' in messages


def test_the_report_groups_failure_messages_that_differ_only_in_numbers():
    doc = lambda value: {"tests": [{"name": "Q2(b) negative_elbo_bound: reconstruction term", "score": 0,  # noqa: E731
                                    "max_score": 1, "status": "failed",
                                    "output": f"rec = {value}, expected 631.096: it is summed over the batch"}]}
    rows = [{"record": {"student": s}, "doc": doc(v), "status": "graded", "detail": ""}
            for s, v in (("a", 5048.77), ("b", 7084.45), ("c", -1e-3))]
    students, messages = batch_report.common_failures(rows)["Q2(b) negative_elbo_bound"]
    assert students == {"a", "b", "c"}
    assert [(gist, who) for gist, who, _ in messages] == [
        ("rec = #, expected #: it is summed over the batch", ["a", "b", "c"])]


def test_the_report_lists_checks_by_failure_rate_worst_first():
    def doc(passed):
        return {"tests": [{"name": n, "score": float(n in passed), "max_score": 1.0,
                           "status": "passed" if n in passed else "failed", "output": ""} for n in "xyz"]}
    rows = [{"record": {"student": s}, "doc": doc(p), "status": "graded", "detail": ""}
            for s, p in (("a", "xy"), ("b", "x"), ("c", "xz"))]
    assert [name for name, _, _ in batch_report.failure_rates(rows, ["x", "y", "z"])] == ["y", "z", "x"]
