"""The manifest (hw10kit/manifest.py): each way of declaring or building a problem wrongly
is an immediate error that names the fix, and a broken problem costs only its own
questions."""
from __future__ import annotations

import dataclasses
import json

import pytest
from grading_helpers import REPO
from hw10kit import manifest
from hw10kit.checks import vae_probes
from hw10kit.manifest import ManifestError, Question

VAE = manifest.BY_KEY["vae"]


def vae_checks():
    loaded = manifest.load(VAE)
    return loaded.public, loaded.hidden


def with_questions(problem, *questions):
    return dataclasses.replace(problem, questions=tuple(questions))


def test_the_declared_problems_load_and_agree_with_their_checks():
    for problem in manifest.PROBLEMS:
        manifest.load(problem)


def test_a_label_that_does_not_start_with_q_and_the_number_is_refused_with_the_form_to_use():
    bad = with_questions(VAE, Question("Toy(a)", "sample_gaussian", 4))
    with pytest.raises(ManifestError, match=r"must look like 'Q2\(a\)'"):
        manifest.validate([bad])


def test_a_label_numbered_for_another_problem_is_refused():
    bad = with_questions(VAE, Question("Q3(a)", "sample_gaussian", 4))
    with pytest.raises(ManifestError, match=r"write 'Q2\(a\)'"):
        manifest.validate([bad])


def test_a_problem_numbered_as_the_process_questions_is_refused():
    bad = dataclasses.replace(VAE, number=manifest.PROCESS_NUMBER,
                              questions=tuple(dataclasses.replace(q, label=q.label.replace("Q2", f"Q{manifest.PROCESS_NUMBER}"))
                                              for q in VAE.questions))
    with pytest.raises(ManifestError, match="process questions"):
        manifest.validate([bad])


def test_a_graded_function_declared_twice_is_refused():
    gan = manifest.BY_KEY["gan"]
    bad = with_questions(gan, Question("Q3(c)", "sample_gaussian", 2))
    with pytest.raises(ManifestError, match="already graded"):
        manifest.validate([VAE, bad])


def test_a_keyword_that_cannot_find_the_notebook_is_refused():
    with pytest.raises(ManifestError, match="keyword"):
        manifest.validate([dataclasses.replace(VAE, keyword="variational")])


def test_checks_outside_hw10kit_checks_are_refused_as_modules_the_sandbox_cannot_import():
    with pytest.raises(ManifestError, match="sandbox"):
        manifest.validate([dataclasses.replace(VAE, probes="hw10grader.hidden.vae_probes")])


def hidden_probe(ns, inputs):  # a probe defined outside hw10kit/checks (here: a test module)
    return vae_probes.sample_gaussian_call(ns, inputs)


def test_a_probe_defined_outside_the_problems_probe_module_is_refused():
    public, hidden = vae_checks()
    moved = dataclasses.replace(hidden[0], probe=hidden_probe)
    with pytest.raises(ManifestError, match="unknown probe"):
        manifest.check_problem(VAE, public, [moved, *hidden[1:]])


def test_a_probe_that_is_not_a_top_level_function_is_refused():
    public, hidden = vae_checks()
    nested = dataclasses.replace(public[0], probe=lambda ns, inputs: {})
    nested.probe.__module__ = "hw10kit.checks.vae_probes"
    with pytest.raises(ManifestError, match="top-level function"):
        manifest.check_problem(VAE, [nested, *public[1:]], hidden)


def test_a_hidden_check_whose_target_has_a_typo_is_refused_with_a_suggestion():
    public, hidden = vae_checks()
    typo = dataclasses.replace(hidden[0], target="sample_gausian")
    with pytest.raises(ManifestError, match="did you mean 'sample_gaussian'"):
        manifest.check_problem(VAE, public, [typo, *hidden[1:]])


def test_checks_whose_points_do_not_add_up_to_the_declared_points_are_refused():
    public, hidden = vae_checks()
    heavier = dataclasses.replace(hidden[0], points=hidden[0].points + 0.5)
    with pytest.raises(ManifestError, match="carry 4.5 points.*give Q2\\(a\\) sample_gaussian 4"):
        manifest.check_problem(VAE, public, [heavier, *hidden[1:]])


def test_a_question_without_public_checks_is_refused():
    public, hidden = vae_checks()
    with pytest.raises(ManifestError, match="no public check"):
        manifest.check_problem(VAE, [c for c in public if c.target != "sample_gaussian"], hidden)


def test_a_check_labelled_differently_from_its_question_is_refused():
    public, hidden = vae_checks()
    relabelled = dataclasses.replace(public[0], question="Q2(b)")
    with pytest.raises(ManifestError, match="labelled 'Q2\\(b\\)'"):
        manifest.check_problem(VAE, [relabelled, *public[1:]], hidden)


def master(name="hw10_vae.ipynb"):
    return json.loads((REPO / "source" / "hw10" / name).read_text(encoding="utf-8"))


def cell(nb, cell_id):
    return next(c for c in nb["cells"] if c["id"] == cell_id)


def test_the_master_notebooks_agree_with_the_manifest():
    for problem in manifest.PROBLEMS:
        assert manifest.notebook_problems(problem, master(problem.notebook)) == []


def test_a_check_cell_whose_points_differ_from_the_manifest_is_reported():
    nb = master()
    cell(nb, "q2a-check")["metadata"]["nbgrader"]["points"] = 5
    found = manifest.notebook_problems(VAE, nb)
    assert any("carries 5 points, but hw10kit/manifest.py gives Q2(a) sample_gaussian 4" in m for m in found)


def test_a_heading_that_does_not_show_the_points_is_reported():
    nb = master()
    heading = next(c for c in nb["cells"] if c["cell_type"] == "markdown" and "(4 points)" in "".join(c["source"]))
    heading["source"] = "".join(heading["source"]).replace("(4 points)", "")
    assert any("should show its points, '(4 points)'" in m for m in manifest.notebook_problems(VAE, nb))


def test_a_graded_function_missing_from_the_notebook_is_reported():
    nb = master()
    solution = cell(nb, "q2a-solution")
    solution["source"] = "".join(solution["source"]).replace("def sample_gaussian(", "def sample_gauss(")
    assert any("no code cell defines `def sample_gaussian(`" in m for m in manifest.notebook_problems(VAE, nb))


def test_a_check_cell_without_its_hidden_block_is_reported():
    nb = master()
    check = cell(nb, "q2a-check")
    check["source"] = 'check("sample_gaussian")\n'
    assert any("hidden-tests block" in m for m in manifest.notebook_problems(VAE, nb))


def test_written_points_that_differ_from_the_manifest_are_reported():
    nb = master()
    cell(nb, "q2c-answer")["metadata"]["nbgrader"]["points"] = 5
    assert any("written-answer cells carry 15 points" in m for m in manifest.notebook_problems(VAE, nb))


# ---------------------------------------------------------------- fault isolation
def test_a_problem_whose_checks_fail_to_import_keeps_its_questions_and_says_why():
    from hw10grader.assignment import questions_of

    broken = dataclasses.replace(VAE, public="hw10kit.checks.no_such_module")
    questions = questions_of(broken)
    assert [q.target for q in questions] == ["sample_gaussian", "negative_elbo_bound"]
    assert all(q.checks == [] and "ModuleNotFoundError" in q.broken and "course staff" in q.broken
               for q in questions)
    assert [q.points for q in questions] == [4.0, 6.0]


def test_a_problem_whose_checks_disagree_with_the_manifest_is_broken_alone():
    from hw10grader.assignment import load_questions

    wrong_points = with_questions(VAE, Question("Q2(a)", "sample_gaussian", 5),
                                  Question("Q2(b)", "negative_elbo_bound", 6))
    questions = load_questions([wrong_points, manifest.BY_KEY["gan"]])
    assert {q.target for q in questions if q.broken} == {"sample_gaussian", "negative_elbo_bound"}
    assert all(q.checks for q in questions if not q.broken)


def test_check_in_a_notebook_imports_only_the_problem_asked_about():
    import subprocess
    import sys

    code = ("import sys; from hw10kit.checks import check; "
            "import hw10kit.checks.vae; print('hw10kit.checks.gan' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_check_for_an_unknown_function_lists_the_known_ones():
    from hw10kit.checks import check

    with pytest.raises(ValueError, match="known: .*sample_gaussian"):
        check("sample_gausian", namespace={})


def test_every_manifest_problem_declares_a_check_module_a_probe_module_and_a_hidden_module():
    for p in manifest.PROBLEMS:
        for module in (p.public, p.probes):
            assert (REPO / (module.replace(".", "/") + ".py")).is_file()
        assert (REPO / "autograder" / (p.hidden.replace(".", "/") + ".py")).is_file()



def test_make_bench_runs_only_the_benchmarks_the_manifest_declares():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench", "nosuch"], cwd=REPO, capture_output=True, text=True)
    declared = ", ".join(p.key for p in manifest.PROBLEMS if p.bench)
    assert proc.returncode == 2 and f"declared: {declared}" in proc.stderr
