"""The grader's environment (what setup.sh builds) holds every module that grading
imports: the judge, the check library, and the release notebooks' kept code. The slow
test builds that environment with setup.sh itself and grades through run_autograder."""
import ast
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from grading_helpers import ALL_MARKS, REPO, score_of
from hw10kit import notebook
from pipeline import grade_local

AUTOGRADER = REPO / "autograder"


def grader_requirements() -> set:
    """Distribution names setup.sh installs: torch, then requirements-grader.txt."""
    names = {"torch"} if re.search(r"^TORCH=torch==", (AUTOGRADER / "setup.sh").read_text(), re.M) else set()
    for line in (AUTOGRADER / "requirements-grader.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[ ]", line)[0].lower())
    return names


def imported_modules(source: str, module_level_only: bool = False) -> set:
    tree = ast.parse(source)
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and not node.module:  # from . import a, b
                found.update("." * node.level + a.name for a in node.names)
            elif node.module:
                found.add("." * node.level + node.module)
    return found


def kit_file(module: str) -> Path | None:
    path = REPO / Path(*module.split("."))
    for cand in (path.with_suffix(".py"), path / "__init__.py"):
        if cand.exists():
            return cand
    return None


def external_imports(modules: set, module_level_only: bool) -> set:
    """Top-level names outside the standard library, following hw10kit's own modules."""
    todo, seen, external = list(modules), set(), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        if mod.startswith("."):  # hw10grader's own relative imports
            continue
        top = mod.split(".")[0]
        if top == "hw10kit":
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                path = kit_file(".".join(parts[:i]))
                if path:
                    found = imported_modules(path.read_text(), module_level_only)
                    package = parts[:i] if path.name == "__init__.py" else parts[:i - 1]
                    for m in found:
                        level = len(m) - len(m.lstrip("."))
                        base = package[:len(package) - level + 1] if level else None
                        todo.append(".".join([*base, m[level:]]) if level else m)
            continue
        if top not in sys.stdlib_module_names and top not in ("hw10grader", "__future__"):
            external.add(top)
    return external


def provided_by_requirements(module: str, requirements: set) -> bool:
    return any(d.lower() in requirements for d in packages_distributions().get(module, []))


def grading_imports(built_course) -> set:
    modules = set()
    for nb_path in built_course.release.glob("*.ipynb"):
        for chunk in notebook.read_answer(notebook.load(nb_path)).chunks:
            modules |= imported_modules(chunk.source)
    kit = {"hw10kit.notebook"} | {f"hw10kit.checks.{p.stem}" for p in (REPO / "hw10kit" / "checks").glob("*.py")}
    grader = set()
    for path in (AUTOGRADER / "hw10grader").rglob("*.py"):
        grader |= imported_modules(path.read_text())
    return external_imports(modules, True) | external_imports(kit | grader, False)


def test_the_grader_requirements_provide_every_module_grading_imports(built_course):
    requirements = grader_requirements()
    missing = {m for m in grading_imports(built_course) if not provided_by_requirements(m, requirements)}
    assert not missing, f"not in setup.sh or requirements-grader.txt: {sorted(missing)}"


def test_the_release_notebook_imports_plotting_and_the_requirements_hold_it(built_course):
    """The blocker: the locked first cell imports matplotlib, which the grader must hold."""
    assert "matplotlib" in grading_imports(built_course)
    assert provided_by_requirements("matplotlib", grader_requirements())


# ------------------------------------------------------------------ the real environment
def setup_gradescope(built_course, base: Path) -> Path:
    """A Gradescope layout whose venv is built by the zip's own setup.sh (PyPI's torch
    stands in for the CPU wheel index, which this machine cannot reach)."""
    root = grade_local.gradescope_layout(built_course.zip, built_course.solutions, base)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    env = {"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(base), "AUTOGRADER_ROOT": str(root),
           "HW10_TORCH_INDEX": "", "HW10_SETUP_PYTHON": python}
    subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, check=True, timeout=1800)
    return root


def run_autograder(root: Path, submission: Path) -> dict:
    shutil.rmtree(root / "submission")
    shutil.copytree(submission, root / "submission")
    env = {"PATH": "/usr/bin:/bin", "AUTOGRADER_ROOT": str(root), "HW10_SEED": "11"}
    subprocess.run([str(root / "run_autograder")], cwd=root, env=env, check=True, timeout=900)
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture(scope="module")
def gradescope_root(built_course):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="hw10-setup-sh-"))
    base.chmod(0o755)  # as on Gradescope: the sandbox users traverse /autograder
    try:
        yield setup_gradescope(built_course, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_solutions_get_full_marks_in_the_environment_setup_sh_builds(built_course, gradescope_root):
    doc = run_autograder(gradescope_root, built_course.solutions)
    assert score_of(doc) == ALL_MARKS, [t["output"] for t in doc["tests"] if t["status"] == "failed"]
    assert "Local grading" not in doc["output"]


@pytest.mark.slow
def test_the_blank_release_gets_zero_and_a_valid_file_in_that_environment(built_course, gradescope_root):
    doc = run_autograder(gradescope_root, built_course.release)
    assert score_of(doc) == 0 and doc["tests"]
    assert all("not implemented yet" in t["output"] for t in doc["tests"]), [t["output"] for t in doc["tests"]]
