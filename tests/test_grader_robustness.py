"""The judge, end to end with its sandbox: whatever a submission does, results.json
is written and valid, a broken question costs only its own points, and the
feedback says what to fix."""
import json
import os

import nbformat
import pytest
from grading_helpers import (vae_entry, FULL_MARKS, check_entries, needs_pool_users, by_name, judge, master_notebook, score_of,
                             solution_with, write_folder, write_zip)
from hw10grader.results import validate

Q2A, Q2B = "Q2(a)", "Q2(b)"


def graded(tmp_path, nb, **env):
    return judge(write_folder(tmp_path / "sub", nb), tmp_path / "results.json", **env)


def assert_valid(doc):
    validate(doc)
    assert doc["tests"], "one entry per check, even when nothing could run"


def test_solution_gets_full_marks(tmp_path):
    doc = graded(tmp_path, master_notebook())
    assert_valid(doc)
    assert score_of(doc) == FULL_MARKS, [t["output"] for t in doc["tests"] if t["status"] == "failed"]


def test_results_record_the_seed_of_the_hidden_inputs(tmp_path):
    doc = graded(tmp_path, master_notebook())
    assert doc["extra_data"]["seed"] == 1 and "HW10_SEED=1" in doc["output"]


def test_hidden_checks_are_shown_after_publishing_and_public_ones_now(tmp_path):
    doc = graded(tmp_path, master_notebook())
    vis = {t["visibility"] for t in check_entries(doc)}
    assert vis == {"visible", "after_published"}
    from hw10grader.assignment import QUESTIONS

    assert {t["name"].split(":")[0].split(" ", 1)[1] for t in check_entries(doc)} == {q.target for q in QUESTIONS}


def test_empty_zip_gets_zero_and_says_the_notebook_is_missing(tmp_path):
    doc = judge(write_zip(tmp_path / "s.zip", {}), tmp_path / "r.json")
    assert_valid(doc)
    assert score_of(doc) == 0
    from hw10grader.assignment import QUESTIONS

    notebook_of = {q.target: q.notebook for q in QUESTIONS}
    assert all(f"{notebook_of[t['name'].split(':')[0].split(' ', 1)[1]]} was not found" in t["output"]
               for t in check_entries(doc))


def test_renamed_copy_in_a_nested_folder_with_debris_is_found(tmp_path):
    nb = json.dumps(master_notebook())
    doc = judge(write_zip(tmp_path / "s.zip", {
        "__MACOSX/hw10/._hw10_vae (1).ipynb": b"\x00\x05junk",
        "hw10/.ipynb_checkpoints/hw10_vae-checkpoint.ipynb": "{}",
        "hw10/hw10_vae (1).ipynb": nb}), tmp_path / "r.json")
    assert score_of(doc) == FULL_MARKS
    assert "hw10/hw10_vae (1).ipynb (renamed copy)" in doc["output"]


def test_zip_entries_escaping_the_folder_are_ignored(tmp_path):
    doc = judge(write_zip(tmp_path / "s.zip", {"../../evil.ipynb": "{}", "/abs.ipynb": "{}"}),
                tmp_path / "r.json")
    assert_valid(doc)
    assert not (tmp_path.parent / "evil.ipynb").exists()


def test_corrupt_notebook_json_gets_a_clear_message(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hw10_vae.ipynb").write_text('{"cells": [')
    doc = judge(tmp_path / "sub", tmp_path / "r.json")
    assert_valid(doc)
    assert score_of(doc) == 0 and "not valid JSON" in vae_entry(doc)["output"]


def test_syntax_error_in_another_cell_costs_nothing_and_is_reported(tmp_path):
    doc = graded(tmp_path, solution_with("def broken(:\n    pass"))
    assert score_of(doc) == FULL_MARKS
    assert "SyntaxError in code cell" in doc["output"]


def test_exception_at_import_in_another_cell_costs_nothing(tmp_path):
    doc = graded(tmp_path, solution_with("import a_module_that_does_not_exist"))
    assert score_of(doc) == FULL_MARKS


def test_training_cells_are_not_run(tmp_path):
    doc = graded(tmp_path, solution_with("import os\nos._exit(1)", "while True:\n    pass"))
    assert score_of(doc) == FULL_MARKS


def test_infinite_loop_costs_only_its_question_and_says_timed_out(tmp_path):
    nb = solution_with("class VAE(VAE):\n    def negative_elbo_bound(self, x):\n        while True:\n            pass")
    doc = graded(tmp_path, nb, HW10_QUESTION_TIMEOUT_S=8)
    assert_valid(doc)
    assert score_of(doc, Q2A) == 4.0 and score_of(doc, Q2B) == 0
    assert all("timed out" in t["output"] for t in doc["tests"] if t["name"].startswith(Q2B))


def test_os_exit_costs_only_its_question(tmp_path):
    nb = solution_with("import os\nclass VAE(VAE):\n    def negative_elbo_bound(self, x):\n        os._exit(3)")
    doc = graded(tmp_path, nb)
    assert score_of(doc, Q2A) == 4.0 and score_of(doc, Q2B) == 0
    assert "exited with code 3" in by_name(doc)[f"{Q2B} negative_elbo_bound: returns three scalars"]["output"]


def test_fake_json_on_stdout_changes_nothing(tmp_path):
    fake = json.dumps({"id": 1, "ok": {"shape": [5, 3]}, "tests": [], "score": 100})
    nb = solution_with(f"_sg = sample_gaussian\ndef sample_gaussian(m, v):\n    print({fake!r})\n    return m")
    doc = graded(tmp_path, nb)
    assert_valid(doc)
    assert score_of(doc, Q2A) < 4.0


def test_runaway_output_is_capped_and_grading_continues(tmp_path):
    nb = solution_with("_sg = sample_gaussian\ndef sample_gaussian(m, v):\n"
                       "    for _ in range(20000):\n        print('x' * 100)\n    return _sg(m, v)")
    doc = graded(tmp_path, nb)
    assert score_of(doc) == FULL_MARKS
    assert len(json.dumps(doc)) < 100_000


def test_exception_feedback_is_trimmed_to_the_students_lines(tmp_path):
    nb = solution_with("def sample_gaussian(m, v):\n    eps = torch.randn_like(m)\n    return m + v.sqrt() @ eps")
    doc = graded(tmp_path, nb)
    out = by_name(doc)[f"{Q2A} sample_gaussian: output has the shape of m"]["output"]
    assert "sample_gaussian raised an exception" in out and "return m + v.sqrt() @ eps" in out
    assert "hw10kit" not in out and "site-packages" not in out


def test_blank_function_says_not_implemented(tmp_path):
    nb = solution_with("def sample_gaussian(m, v):\n    raise NotImplementedError()")
    doc = graded(tmp_path, nb)
    assert score_of(doc, Q2A) == 0
    assert "NotImplementedError" in vae_entry(doc)["output"]


def test_monkeypatching_the_checks_does_not_reach_the_judge(tmp_path):
    nb = solution_with("import hw10kit.checks.core as _core\n_core.judge = lambda *a, **k: (True, 'ok')\n"
                       "def sample_gaussian(m, v):\n    return m")
    doc = graded(tmp_path, nb)
    assert score_of(doc, Q2A) < 4.0


@needs_pool_users
def test_student_code_runs_as_an_unprivileged_user(tmp_path):
    nb = solution_with("import os\ndef sample_gaussian(m, v):\n    raise RuntimeError(f'uid={os.getuid()}')")
    doc = graded(tmp_path, nb)
    out = vae_entry(doc)["output"]
    assert "uid=" in out and "uid=0" not in out


@needs_pool_users
def test_student_code_cannot_write_next_to_the_results(tmp_path):
    marker = tmp_path / "planted.json"
    nb = solution_with(f"_sg = sample_gaussian\ndef sample_gaussian(m, v):\n"
                       f"    try:\n        open({str(marker)!r}, 'w').write('{{}}')\n"
                       f"    except OSError:\n        pass\n    return _sg(m, v)")
    doc = graded(tmp_path, nb)
    assert score_of(doc) == FULL_MARKS and not marker.exists()


def test_a_process_that_stops_itself_cannot_hold_grading_past_the_deadline(tmp_path):
    nb = solution_with("import os, signal, threading, time\n_sg = sample_gaussian\n"
                       "def sample_gaussian(m, v):\n"
                       "    threading.Thread(target=lambda: (time.sleep(0.2), os.kill(os.getpid(), signal.SIGSTOP))).start()\n"
                       "    return _sg(m, v)")
    doc = graded(tmp_path, nb, HW10_QUESTION_TIMEOUT_S=8)
    assert_valid(doc)
    assert any("timed out" in t["output"] for t in doc["tests"] if t["name"].startswith(Q2A))
    assert doc["execution_time"] < 30


def test_overall_budget_writes_results_even_if_grading_hangs(tmp_path):
    import subprocess
    import sys

    from grading_helpers import REPO

    sub = write_folder(tmp_path / "sub", master_notebook())
    results = tmp_path / "r.json"
    script = ("import time, hw10grader.judge as j, hw10grader.__main__ as entry\n"
              "j._grade_question = lambda *a: time.sleep(1000)\n"
              f"entry.main(['--submission', {str(sub)!r}, '--results', {str(results)!r}, '--budget', '12'])\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'autograder'}"})
    assert proc.returncode == 0
    doc = json.loads(results.read_text())
    assert_valid(doc)
    assert "overall time budget" in doc["output"] and score_of(doc) == 0


def test_a_broken_sample_gaussian_costs_only_its_own_question(tmp_path):
    doc = graded(tmp_path, solution_with("def sample_gaussian(m, v):\n    raise NotImplementedError()"))
    assert score_of(doc, Q2A) == 0 and score_of(doc, Q2B) == 6.0


def test_a_name_the_reader_skipped_is_explained(tmp_path):
    nb = solution_with("for _ in range(1):\n    SCALE = 1.0\n"
                       "def sample_gaussian(m, v):\n    return m + SCALE * v.sqrt() * torch.randn_like(m)")
    out = vae_entry(graded(tmp_path, nb))["output"]
    assert "NameError" in out and "`SCALE` is assigned in code cell" in out and "does not run" in out


def test_a_statement_that_failed_while_defining_is_named_in_the_feedback(tmp_path):
    nb = solution_with("SCALE = compute_scale_slowly()\n"
                       "def sample_gaussian(m, v):\n    return m + SCALE * v.sqrt() * torch.randn_like(m)")
    out = vae_entry(graded(tmp_path, nb))["output"]
    assert "line 1 (`SCALE = compute_scale_slowly()`) raised" in out and "compute_scale_slowly" in out


def test_a_failing_import_costs_nothing_when_grading_does_not_need_it(tmp_path):
    nb = solution_with()
    nb.cells.insert(0, nbformat.v4.new_code_cell("import seaborn_not_installed as sns\nimport torch\nK = 1"))
    assert score_of(graded(tmp_path, nb)) == FULL_MARKS


def test_a_failing_import_that_grading_needs_is_named_in_the_feedback(tmp_path):
    nb = solution_with("import scipy_not_installed as sp\n"
                       "def sample_gaussian(m, v):\n    return m + sp.sqrt(v) * torch.randn_like(m)")
    out = vae_entry(graded(tmp_path, nb))["output"]
    assert "No module named 'scipy_not_installed'" in out


@pytest.mark.parametrize("char", ["\u2028", "\u0085", "\x0c"], ids=["U+2028", "U+0085", "form-feed"])
def test_odd_line_break_characters_in_a_correct_answer_cost_nothing(tmp_path, char):
    nb = solution_with(f"import torch  # noise{char}comment\nSEP = '{char}'\n"
                       "def sample_gaussian(m, v):\n    return m + v.sqrt() * torch.randn_like(m)  # ok" + char)
    assert score_of(graded(tmp_path, nb)) == FULL_MARKS


def test_a_module_level_distribution_object_is_defined_for_grading(tmp_path):
    nb = solution_with("import torch\nfrom torch.distributions import Normal\nSTD_NORMAL = Normal(0.0, 1.0)\n"
                       "def sample_gaussian(m, v):\n    return m + v.sqrt() * STD_NORMAL.sample(m.shape)")
    assert score_of(graded(tmp_path, nb)) == FULL_MARKS


@needs_pool_users
def test_a_process_that_escapes_the_session_does_not_hang_grading(tmp_path):
    nb = solution_with("class _Escape:\n    import os, time\n    if os.fork() == 0:\n        os.setsid()\n"
                       "        if os.fork() == 0:\n            time.sleep(3600)\n        os._exit(0)")
    doc = graded(tmp_path, nb)
    assert score_of(doc) == FULL_MARKS and doc["execution_time"] < 60


def test_a_lone_surrogate_in_an_exception_message_still_gives_valid_results(tmp_path):
    doc = graded(tmp_path, solution_with("def sample_gaussian(m, v):\n    raise RuntimeError('bad \\udcff byte')"))
    assert_valid(doc)
    json.dumps(doc).encode("utf-8")
    assert score_of(doc, Q2A) == 0 and score_of(doc, Q2B) == 6.0


def test_a_forged_reply_with_an_overflowing_shape_costs_only_its_own_question(tmp_path):
    forged = ('{"id": 1, "ok": {"__nd__": ["float32", [4611686018427387904, 4611686018427387904, 0], ""]}}\n')
    nb = solution_with("import os, sys\n_sg = sample_gaussian\ndef sample_gaussian(m, v):\n"
                       f"    os.write(int(sys.argv[2]), {forged!r}.encode())\n    return _sg(m, v)")
    doc = graded(tmp_path, nb)
    assert_valid(doc)
    assert "internal error" not in doc["output"]
    assert score_of(doc, Q2B) == 6.0 and score_of(doc, Q2A) < 4.0


def test_a_notebook_that_takes_too_long_to_read_is_refused_at_the_deadline():
    import time

    from hw10grader import reading
    from hw10kit import notebook

    slow_cell = "x = " + "a." * 240 + "a?"  # just under the reader's limit, still slow to transform
    nb = solution_with(*[slow_cell] * 2000)
    started = time.monotonic()
    try:
        answer = reading.read_answer(nbformat.writes(nb).encode(), timeout_s=2.0)
    except notebook.NotebookError as exc:  # killed at the deadline
        assert "longer than" in str(exc)
    else:  # or stopped reading just before it, keeping what it read
        assert any("took too long to read" in m for _, m in answer.problems)
    assert time.monotonic() - started < 6


def test_the_outside_watchdog_stops_a_judge_that_holds_the_gil(tmp_path):
    """A regular expression that backtracks for hours holds the GIL: no thread of the
    judge can run, but the watchdog process can still stop it and keep the results."""
    import subprocess
    import sys
    import time

    from grading_helpers import REPO

    sub = write_folder(tmp_path / "sub", master_notebook())
    results = tmp_path / "r.json"
    script = ("import re, hw10grader.judge as j, hw10grader.__main__ as entry\n"
              "j._grade_question = lambda *a: re.match(r'(a+)+$', 'a' * 60 + 'b')\n"
              f"entry.main(['--submission', {str(sub)!r}, '--results', {str(results)!r}, '--budget', '12'])\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=90,
                          env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'autograder'}"})
    assert time.monotonic() - started < 40
    doc = json.loads(results.read_text())
    assert_valid(doc)
    assert proc.returncode != 0 and "overall time budget" in doc["output"] and score_of(doc) == 0


def test_a_missing_notebook_is_summarised_by_its_reason_not_by_hidden_points(tmp_path):
    doc = graded(tmp_path, master_notebook())  # the VAE alone: hw10_gan.ipynb is missing
    gan = [line for line in doc["output"].splitlines() if line.startswith("Q3(c)")]
    assert gan and all("hw10_gan.ipynb was not found" in line and "hidden checks took" not in line
                       for line in gan)


def test_nothing_in_the_sandboxs_environment_names_the_grader(tmp_path):
    """Code that behaves only when it sees the grader has nothing stable to look for."""
    doc = graded(tmp_path, solution_with("""
import os
def sample_gaussian(m, v):
    if any("HW10" in k or "SANDBOX" in k.upper() for k in os.environ):
        return m
    return m + torch.sqrt(v) * torch.randn_like(m)
"""))
    assert score_of(doc, "Q2(a)") == 4, [t["output"] for t in doc["tests"] if t["status"] == "failed"]
