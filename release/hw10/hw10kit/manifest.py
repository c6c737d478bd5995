"""The homework's problems, declared once. Everything else is derived from this list:
the grader's questions and ``check()``, ``experiment.py``'s models, the ``bench`` targets,
the build's checks of headings and points, and the tests.

A problem names its notebook, its questions (label, graded function, points) and where
its code lives, by module name, so that nothing here imports a problem's code: a problem
whose modules are broken costs only its own questions (see ``load``).

Adding a problem = one ``Problem`` below, a master notebook, a public-checks module
(``hw10kit/checks/<key>.py``, exporting ``PUBLIC``), a probes module
(``hw10kit/checks/<key>_probes.py``) and a hidden-checks module
(``autograder/hw10grader/hidden/<key>.py``, exporting ``HIDDEN``). ``validate`` and
``check_problem`` say what is missing; docs/adding-a-problem.md has the steps.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field


class ManifestError(ValueError):
    """A problem is declared or built wrongly. The message names the fix."""


@dataclass(frozen=True)
class Question:
    """One autograded question: one graded function and its points (public + hidden)."""
    label: str      # "Q2(a)": Q<problem number>(<part letters>)
    target: str     # the graded function, e.g. "sample_gaussian"
    points: float   # the nbgrader check cell's points = the sum of its checks' points


@dataclass(frozen=True)
class Written:
    """A written answer, graded by hand (its markdown cell carries the points)."""
    label: str
    points: float


@dataclass(frozen=True)
class Problem:
    key: str                  # short name: module names, ``--model``, ``make bench-<key>``
    number: int               # the seed's problem number
    title: str
    notebook: str             # release file name, e.g. "hw10_vae.ipynb"
    keyword: str              # matches a renamed copy ("Copy of hw10_vae (2).ipynb")
    questions: tuple = ()     # Question, in the notebook's order
    written: tuple = ()       # Written, in the notebook's order
    public: str = ""          # module exporting PUBLIC (list of checks.core.Check)
    probes: str = ""          # module holding every probe of this problem's checks
    hidden: str = ""          # module exporting HIDDEN (judge side only)
    experiment: str | None = None   # "module:attribute" of a training.Experiment, or None
    bench: str | None = None        # module run by ``make bench-<key>``, or None
    bench_target: str = ""          # what the benchmark must show (docs/performance.md)

    @property
    def autograded_points(self) -> float:
        return float(sum(q.points for q in self.questions))

    @property
    def written_points(self) -> float:
        return float(sum(w.points for w in self.written))


@dataclass(frozen=True)
class ProcessQuestion:
    """A question about how the homework was done (seed question 6): a written-answer
    cell every submission carries. The grader reports whether it was filled in and never
    scores its content; its points are given by hand, on the written side."""
    label: str      # "Q6(a)"
    grade_id: str   # the nbgrader grade_id of its markdown answer cell
    points: float
    asks: str       # what it asks, in a few words (the grader's feedback names it)


#: Question 6 sits at the end of the first notebook, so that every submission carries it.
PROCESS_NOTEBOOK = "hw10_prompting.ipynb"
PROCESS_NUMBER = 6
PROCESS: tuple = (
    ProcessQuestion("Q6(a)", "q6_sources", 1, "the sources you used"),
    ProcessQuestion("Q6(b)", "q6_collaborators", 1, "who you worked with"),
    ProcessQuestion("Q6(c)", "q6_hours", 1, "how many hours the homework took"),
)


LABEL = re.compile(r"^Q(\d+)\(([a-z]+)\)$")
#: Lines the build strips from what it ships; a test fails if one ever leaks.
#: (Spelled in two halves so that this file, which ships in the kit, carries neither.)
SOLUTION_SENTINEL, HIDDEN_SENTINEL = "SOLUTION-" "SENTINEL-7f3a", "HIDDEN-TEST-" "SENTINEL-c41d"
CHECKS_PACKAGE = "hw10kit.checks."


PROBLEMS: tuple = (
    Problem(
        key="vae", number=2, title="Variational autoencoders", notebook="hw10_vae.ipynb",
        keyword="vae",
        questions=(Question("Q2(a)", "sample_gaussian", 4), Question("Q2(b)", "negative_elbo_bound", 6)),
        written=(Written("Q2(c)", 4), Written("Q2(d)", 3), Written("Q2(e)", 4), Written("Q2(f)", 3)),
        public="hw10kit.checks.vae", probes="hw10kit.checks.vae_probes", hidden="hw10grader.hidden.vae",
        experiment="hw10kit.vae_training:EXPERIMENT", bench="bench.vae",
        bench_target="2x the conventional pipeline's speed; NELBO on the course subset as the course's"),
    Problem(
        key="gan", number=3, title="Generative adversarial networks", notebook="hw10_gan.ipynb",
        keyword="gan",
        questions=(Question("Q3(c)", "loss_nonsaturating_d", 3), Question("Q3(c)", "loss_nonsaturating_g", 2),
                   Question("Q3(c)", "loss_minimax_g", 2)),
        written=(Written("Q3(a)", 3), Written("Q3(b)", 5), Written("Q3(d)", 3)),
        public="hw10kit.checks.gan", probes="hw10kit.checks.gan_probes", hidden="hw10grader.hidden.gan",
        experiment="hw10kit.gan_training:EXPERIMENT", bench="bench.gan",
        bench_target="2x the conventional pipeline's speed; Inception Score within 10% of real digits'"),
    Problem(
        key="diffusion", number=4, title="Diffusion models: the closed forms", notebook="hw10_diffusion.ipynb",
        keyword="diffusion",
        questions=(Question("Q4(a)", "alpha_bar", 1.5), Question("Q4(a)", "q_xt_given_x0", 2),
                   Question("Q4(a)", "q_sample", 1.5), Question("Q4(b)", "q_posterior", 3)),
        written=(Written("Q4(a)", 3), Written("Q4(b)", 4)),
        public="hw10kit.checks.diffusion", probes="hw10kit.checks.diffusion_probes",
        hidden="hw10grader.hidden.diffusion",
        experiment="hw10kit.diffusion_training:EXPERIMENT", bench="bench.diffusion",
        bench_target="the default run (training plus 200 samples) in 10 minutes on a 2-core CPU; "
                     "Inception Score of 1000 samples at least 85% of real digits', mean of 3 seeds"),
    Problem(
        key="prompting", number=1, title="Prompting language models", notebook="hw10_prompting.ipynb",
        keyword="prompting",
        questions=(Question("Q1(b)", "build_prompt", 3), Question("Q1(b)", "parse_answer", 2),
                   Question("Q1(b)", "choice_probabilities", 2), Question("Q1(b)", "prepend_soft_prompt", 3),
                   Question("Q1(b)", "trainable_parameters", 1)),
        written=(Written("Q1(a)", 6), Written("Q1(b)", 6)),
        public="hw10kit.checks.prompting", probes="hw10kit.checks.prompting_probes",
        hidden="hw10grader.hidden.prompting"),
    Problem(
        key="continual", number=5, title="Continual learning", notebook="hw10_continual.ipynb",
        keyword="continual",
        questions=(Question("Q5(b)", "estimate_fisher", 4), Question("Q5(b)", "ewc_penalty", 3),
                   Question("Q5(c)", "mix_replay", 3)),
        written=(Written("Q5(a)", 2), Written("Q5(a)", 3), Written("Q5(b)", 3), Written("Q5(b)", 3),
                 Written("Q5(c)", 3)),
        public="hw10kit.checks.continual", probes="hw10kit.checks.continual_probes",
        hidden="hw10grader.hidden.continual", bench="bench.continual",
        bench_target="final average accuracy after 3 tasks over 3 seeds: EWC at the sweep's best lambda >= 90%, "
                     "rehearsal with 1000 examples per task >= 93%, naive forgetting shown"),
    # new problems go above this line (python -m pipeline.scaffold adds one here)
)


# --------------------------------------------------------------------- validation
def validate(problems=None) -> None:
    """Check the declarations themselves (no problem code is imported). Raises
    ManifestError naming the fix. Runs when this module loads."""
    problems = PROBLEMS if problems is None else problems
    keys, numbers, notebooks, targets = set(), set(), set(), {}
    for p in problems:
        where = f"hw10kit/manifest.py, problem {p.key!r}"
        if not p.key.isidentifier():
            raise ManifestError(f"{where}: key must be a Python identifier (it names modules)")
        for seen, value, what in ((keys, p.key, "key"), (numbers, p.number, "number"),
                                  (notebooks, p.notebook, "notebook")):
            if value in seen:
                raise ManifestError(f"{where}: another problem has the same {what} {value!r}")
            seen.add(value)
        if p.number == PROCESS_NUMBER:
            raise ManifestError(f"{where}: number {p.number} is the process questions' "
                                f"(PROCESS_NUMBER); number a new problem {PROCESS_NUMBER + 1} or above")
        if not p.notebook.endswith(".ipynb") or "/" in p.notebook:
            raise ManifestError(f"{where}: notebook must be a file name ending in .ipynb, not {p.notebook!r}")
        if not p.keyword or p.keyword.lower() not in p.notebook.lower():
            raise ManifestError(f"{where}: keyword {p.keyword!r} must be part of the notebook name "
                                f"{p.notebook!r} (it finds renamed copies)")
        if not p.questions:
            raise ManifestError(f"{where}: declare at least one Question (label, graded function, points)")
        for q in (*p.questions, *p.written):
            m = LABEL.match(q.label)
            if not m:
                raise ManifestError(f"{where}: label {q.label!r} must look like 'Q{p.number}(a)': "
                                    "Q, the problem number, and the part's letters in brackets")
            if int(m.group(1)) != p.number:
                raise ManifestError(f"{where}: label {q.label!r} is numbered {m.group(1)}, but the "
                                    f"problem's number is {p.number}: write 'Q{p.number}({m.group(2)})'")
            if not q.points > 0:
                raise ManifestError(f"{where}: {q.label} must carry positive points, not {q.points!r}")
        for q in p.questions:
            if not q.target.isidentifier():
                raise ManifestError(f"{where}: graded function {q.target!r} is not a Python name")
            if q.target in targets:
                raise ManifestError(f"{where}: graded function {q.target!r} is already graded by "
                                    f"problem {targets[q.target]!r}; names must be unique")
            targets[q.target] = p.key
        for attr in ("public", "probes"):
            value = getattr(p, attr)
            if not value.startswith(CHECKS_PACKAGE):
                raise ManifestError(f"{where}: {attr} must be a module in hw10kit/checks/ (the sandbox "
                                    f"imports only from there), e.g. '{CHECKS_PACKAGE}{p.key}', not {value!r}")
        if not p.hidden.startswith("hw10grader.hidden."):
            raise ManifestError(f"{where}: hidden must be a module in autograder/hw10grader/hidden/, "
                                f"e.g. 'hw10grader.hidden.{p.key}', not {p.hidden!r}")
        if p.experiment is not None and ":" not in p.experiment:
            raise ManifestError(f"{where}: experiment must be 'module:attribute', not {p.experiment!r}")
    if not any(p.notebook == PROCESS_NOTEBOOK for p in problems) and problems is PROBLEMS:
        raise ManifestError(f"hw10kit/manifest.py: PROCESS_NOTEBOOK {PROCESS_NOTEBOOK!r} is no problem's notebook")
    for q in PROCESS:
        m = LABEL.match(q.label)
        if not m or int(m.group(1)) != PROCESS_NUMBER or not q.points > 0 or not q.grade_id.isidentifier():
            raise ManifestError(f"hw10kit/manifest.py, process question {q.label!r}: write it as "
                                f"'Q{PROCESS_NUMBER}(a)' with positive points and a grade_id that is a name")


validate()
PROBLEMS = tuple(sorted(PROBLEMS, key=lambda p: p.number))  # graded and listed in the homework's order

BY_KEY = {p.key: p for p in PROBLEMS}
BY_TARGET = {q.target: p for p in PROBLEMS for q in p.questions}


def problem_of(target: str) -> Problem:
    if target not in BY_TARGET:
        raise ValueError(f"no checks for {target!r}; known: {', '.join(sorted(BY_TARGET))}")
    return BY_TARGET[target]


# --------------------------------------------------------------------- loading checks
@dataclass
class Loaded:
    """A problem's checks, loaded and checked against its declaration."""
    problem: Problem
    public: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    references: dict = field(default_factory=dict)  # the hidden module's REFERENCES


def public_checks(problem: Problem) -> list:
    """The problem's public checks (imports only its public module)."""
    return list(importlib.import_module(problem.public).PUBLIC)


def load(problem: Problem, *, hidden: bool = True) -> Loaded:
    """Import a problem's checks and check them against its declaration. Raises
    whatever the import raises, or ManifestError naming the fix."""
    public = public_checks(problem)
    module = importlib.import_module(problem.hidden) if hidden else None
    hidden_checks = list(module.HIDDEN) if hidden else []
    references = dict(getattr(module, "REFERENCES", {})) if hidden else {}
    check_problem(problem, public, hidden_checks if hidden else None, references if hidden else None)
    return Loaded(problem, public, hidden_checks, references)


def check_problem(problem: Problem, public: list, hidden: list | None, references: dict | None = None) -> None:
    """Every check targets a declared question, under its label, with a probe the sandbox
    can import and a reference the hidden module defines; every question has public
    checks; the points add up."""
    from .checks.core import probe_id, resolve_probe

    declared = {q.target: q for q in problem.questions}
    where = f"problem {problem.key!r}"
    if references is not None:
        for c in [*public, *(hidden or [])]:
            if c.reference is not None and c.reference not in references:
                raise ManifestError(f"{where}: check {c.name!r} compares with the reference {c.reference!r}, "
                                    f"which {problem.hidden}.REFERENCES does not define")
    for kind, checks, module in (("public", public, problem.public), ("hidden", hidden or [], problem.hidden)):
        for c in checks:
            q = declared.get(c.target)
            if q is None:
                close = [t for t in declared if _similar(t, c.target)]
                raise ManifestError(
                    f"{where}: {kind} check {c.title!r} in {module} targets {c.target!r}, which is not "
                    f"one of its questions ({', '.join(declared)})"
                    + (f": did you mean {close[0]!r}?" if close else "; declare it in hw10kit/manifest.py"))
            if c.question != q.label:
                raise ManifestError(f"{where}: {kind} check {c.name!r} is labelled {c.question!r}, but "
                                    f"hw10kit/manifest.py labels {c.target} {q.label!r}")
            ident = probe_id(c.probe)
            if not ident.startswith(problem.probes + ":"):
                raise ManifestError(
                    f"{where}: {kind} check {c.name!r} uses the probe {ident}, but this problem's probes "
                    f"live in {problem.probes}: the sandbox imports probes only from hw10kit/checks/, "
                    "so define it there (a probe in hidden/ fails every student with 'unknown probe')")
            try:
                found = resolve_probe(ident)
            except (ValueError, ImportError, AttributeError) as exc:
                found = exc
            if found is not c.probe:
                raise ManifestError(f"{where}: the probe {ident} of {c.name!r} cannot be found by name "
                                    "(make it a top-level function of its module, not a lambda or a "
                                    "nested function)")
            if not c.points > 0:
                raise ManifestError(f"{where}: check {c.name!r} must carry positive points")
    for q in problem.questions:
        mine = [c for c in public if c.target == q.target]
        if not mine:
            raise ManifestError(f"{where}: {q.target} has no public check in {problem.public}: students "
                                "must be able to run check(...) on it")
        if hidden is not None:
            total = sum(c.points for c in mine) + sum(c.points for c in hidden if c.target == q.target)
            if abs(total - q.points) > 1e-9:
                raise ManifestError(f"{where}: the checks of {q.target} carry {total:g} points, but "
                                    f"hw10kit/manifest.py (and the notebook) give {q.label} {q.target} "
                                    f"{q.points:g}: make them agree")
    names = [c.name for c in [*public, *(hidden or [])]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ManifestError(f"{where}: two checks share the name {dupes[0]!r}: give each its own title")


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


# --------------------------------------------------------------------- the notebooks
def notebook_problems(problem: Problem, nb: dict, *, release: bool = False) -> list:
    """What is wrong with ``nb`` (the master, or the release when ``release``) against the
    declaration: each question's check cell with its points and heading, each graded
    function defined in an editable solution cell, the written answers' points. Returns
    messages (empty when all agree)."""
    problems = []
    cells = nb.get("cells", [])
    grade = {}
    written_points = 0.0
    heading = None
    headings = {}
    process = {q.grade_id: q for q in PROCESS} if problem.notebook == PROCESS_NOTEBOOK else {}
    process_seen = set()
    for cell in cells:
        text = "".join(cell.get("source", ""))
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") in process and cell.get("cell_type") == "markdown":
            q = process[meta["grade_id"]]
            process_seen.add(q.grade_id)
            if not (meta.get("grade") and meta.get("solution")) or abs(float(meta.get("points", 0)) - q.points) > 1e-9:
                problems.append(f"{problem.notebook}: the process answer cell {q.grade_id!r} ({q.label}) should be "
                                f"a manually graded answer worth {q.points:g} point(s), as hw10kit/manifest.py says")
            continue
        if cell.get("cell_type") == "markdown" and text.startswith("#") and not meta.get("grade"):
            heading = text.split("\n")[0]  # a markdown cell that opens with a heading
        if meta.get("grade") and meta.get("points"):
            if cell.get("cell_type") == "code":
                grade[meta.get("grade_id")] = (float(meta["points"]), text)
            else:
                written_points += float(meta["points"])
            headings[meta.get("grade_id")] = heading
            if not heading or f"({float(meta['points']):g} point" not in heading:
                problems.append(f"{problem.notebook}: the heading above the graded cell "
                                f"{meta.get('grade_id')!r} should show its points, "
                                f"'({float(meta['points']):g} points)'; it reads {heading!r}")
    for q in problem.questions:
        gid = f"{q.target}_check"
        if gid not in grade:
            problems.append(f"{problem.notebook}: no graded check cell with grade_id {gid!r} "
                            f"(running check(\"{q.target}\"), {q.points:g} points)")
            continue
        points, text = grade[gid]
        if abs(points - q.points) > 1e-9:
            problems.append(f"{problem.notebook}: the check cell {gid!r} carries {points:g} points, but "
                            f"hw10kit/manifest.py gives {q.label} {q.target} {q.points:g}")
        if f'check("{q.target}")' not in text:
            problems.append(f"{problem.notebook}: the check cell {gid!r} should run check(\"{q.target}\")")
        if not release and (f'run_hidden("{q.target}")' not in text or HIDDEN_SENTINEL not in text):
            problems.append(f"{problem.notebook}: the check cell {gid!r} should end with a hidden-tests "
                            f"block: ### BEGIN HIDDEN TESTS, the line '# {HIDDEN_SENTINEL}' (the build's "
                            "leak detector), 'from hw10grader.local import run_hidden', "
                            f"run_hidden(\"{q.target}\"), ### END HIDDEN TESTS")
        defining = [c for c in cells if c.get("cell_type") == "code"
                    and re.search(rf"^\s*def {re.escape(q.target)}\(", "".join(c.get("source", "")), re.M)]
        if not defining:
            problems.append(f"{problem.notebook}: no code cell defines `def {q.target}(` "
                            f"(the graded function of {q.label})")
        elif not any(c.get("metadata", {}).get("nbgrader", {}).get("solution") for c in defining):
            problems.append(f"{problem.notebook}: the cell defining {q.target} is not an editable "
                            "solution cell (nbgrader 'Autograded answer')")
        elif not release and not any(SOLUTION_SENTINEL in "".join(c.get("source", "")) for c in defining):
            problems.append(f"{problem.notebook}: the solution of {q.target} should carry the line "
                            f"'# {SOLUTION_SENTINEL}' after ### BEGIN SOLUTION (the build's leak detector)")
    for gid in sorted(set(process) - process_seen):
        problems.append(f"{problem.notebook}: no written-answer cell with grade_id {gid!r} "
                        f"({process[gid].label}, {process[gid].asks}): question 6 belongs at the end of this notebook")
    if problem.written and abs(written_points - problem.written_points) > 1e-9:
        problems.append(f"{problem.notebook}: the written-answer cells carry {written_points:g} points, but "
                        f"hw10kit/manifest.py gives {problem.written_points:g} "
                        f"({', '.join(f'{w.label} {w.points:g}' for w in problem.written)})")
    return problems


def summary(problems=None) -> str:
    """A table of the problems, their questions, points and checks (``python -m hw10kit.manifest``)."""
    problems = PROBLEMS if problems is None else problems
    lines = []
    for p in problems:
        lines.append(f"Problem {p.number} ({p.key}): {p.title}, {p.notebook}: {p.autograded_points:g} autograded + "
                     f"{p.written_points:g} written points")
        try:
            loaded = load(p)
        except Exception as exc:  # noqa: BLE001 - the summary shows a broken problem, not a traceback
            lines.append(f"  BROKEN: {type(exc).__name__}: {exc}")
            loaded = None
        for q in p.questions:
            counts = ""
            if loaded is not None:
                counts = (f"  ({sum(c.target == q.target for c in loaded.public)} public, "
                          f"{sum(c.target == q.target for c in loaded.hidden)} hidden checks)")
            lines.append(f"  {q.label} {q.target}: {q.points:g}{counts}")
        for w in p.written:
            lines.append(f"  {w.label} written: {w.points:g}")
    process = [q for q in PROCESS if any(p.notebook == PROCESS_NOTEBOOK for p in problems)]
    if process:
        lines.append(f"Question {PROCESS_NUMBER} (process, end of {PROCESS_NOTEBOOK}): reported filled in or "
                     "empty by the grader, graded by hand")
        lines.extend(f"  {q.label} written: {q.points:g} ({q.asks})" for q in process)
    total = (sum(p.autograded_points for p in problems),
             sum(p.written_points for p in problems) + sum(q.points for q in process))
    lines.append(f"Total: {total[0]:g} autograded + {total[1]:g} written = {sum(total):g} points")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    grader = Path(__file__).resolve().parents[1] / "autograder"  # the hidden checks, in a checkout
    if grader.is_dir() and str(grader) not in sys.path:
        sys.path.append(str(grader))
    print(summary())
