"""What the student's kit holds: no correct answer to a graded function and no reference
formula; its public checks compare with values the build stored on fixed inputs."""
from __future__ import annotations

import ast
import importlib

import pytest
from check_helpers import with_code
from conftest import REPO
from hw10kit import manifest
from hw10kit.checks import check, wire
from hw10kit.checks.core import References, stored_cases
from hw10kit.notebook import load_definitions

VAE = manifest.BY_KEY["vae"]


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions(str(REPO / "source" / "hw10" / VAE.notebook))


def kit_functions(kit) -> set:
    return {node.name for path in (kit / "checks").glob("*.py")
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def test_the_released_kit_holds_no_stand_in_answer(built_course):
    kit = built_course.release / "hw10kit"
    assert not (kit / "checks" / "stand_ins.py").exists()
    assert "reference_sample_gaussian" not in kit_functions(kit)


@pytest.mark.parametrize("problem", manifest.PROBLEMS, ids=lambda p: p.key)
def test_the_released_kit_defines_none_of_the_judges_reference_functions(built_course, problem):
    references = manifest.load(problem).references
    judged = {fn.__name__ for fn in references.values()}
    for fn in references.values():  # and what they call in the hidden module
        judged |= {n for n in fn.__code__.co_names if callable(getattr(importlib.import_module(fn.__module__), n, None))
                   and getattr(importlib.import_module(fn.__module__), n).__module__ == fn.__module__}
    assert judged & kit_functions(built_course.release / "hw10kit") == set()


@pytest.mark.parametrize("problem", manifest.PROBLEMS, ids=lambda p: p.key)
def test_the_stored_values_are_what_the_judge_computes_on_the_fixed_inputs(problem):
    loaded = manifest.load(problem)
    fresh = stored_cases(loaded.public, References(loaded.references))
    path = REPO / "hw10kit" / "checks" / "expected" / f"{problem.key}.json"
    if not fresh:
        assert not path.exists()
        return
    assert path.read_bytes() == wire.dumps(fresh), "stale: run make release"


def test_a_notebook_check_passes_a_correct_answer_against_the_stored_values(solution_ns, capsys):
    assert check("negative_elbo_bound", namespace=solution_ns)


def test_a_notebook_check_names_the_mistake_from_the_stored_hints(solution_ns, capsys):
    ns = with_code(solution_ns, """
        _right = VAE.negative_elbo_bound
        def _summed(self, x):
            nelbo, kl, rec = _right(self, x)
            return nelbo + kl * (x.shape[0] - 1), kl * x.shape[0], rec
        VAE.negative_elbo_bound = _summed
    """)
    assert not check("negative_elbo_bound", namespace=ns)
    assert "summed over the batch" in capsys.readouterr().out


def test_the_notebook_uses_the_students_own_sampler_and_says_so_when_it_is_broken(built_course):
    import os
    import subprocess
    import sys

    code = (f"from hw10kit.notebook import load_definitions; from hw10kit.checks import check\n"
            f"ns = load_definitions({str(REPO / 'source' / 'hw10' / VAE.notebook)!r})\n"
            "exec('def sample_gaussian(m, v):\\n    return m.detach()\\n', ns)\n"
            "check('negative_elbo_bound', namespace=ns)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=built_course.release, env=env,
                         capture_output=True, text=True, timeout=120)
    assert "this check calls your own sample_gaussian" in out.stdout, out.stdout + out.stderr


def test_the_autograder_zip_leaves_out_the_values_only_a_notebook_reads(built_course):
    import zipfile

    names = zipfile.ZipFile(built_course.zip).namelist()
    assert "hw10kit/checks/core.py" in names and "hw10kit/checks/stand_ins.py" in names
    assert not [n for n in names if n.startswith("hw10kit/checks/expected/")]


@pytest.mark.parametrize("question", [q for p in manifest.PROBLEMS for q in p.questions], ids=lambda q: q.target)
def test_every_solution_passes_its_public_checks_against_the_stored_values(question, capsys):
    """What a student's notebook runs: check() on the stored inputs and expected values."""
    problem = manifest.problem_of(question.target)
    ns = load_definitions(str(REPO / "source" / "hw10" / problem.notebook))
    assert check(question.target, namespace=ns), capsys.readouterr().out
