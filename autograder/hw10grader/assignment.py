"""What is graded: one ``Question`` per graded function of the manifest
(``hw10kit.manifest.PROBLEMS``), with its public checks (the ones students run) followed
by its hidden checks (``hw10grader.hidden.<problem>``).

Each problem's checks are loaded on their own: a problem whose modules fail to import, or
whose checks disagree with the manifest, keeps its questions and their declared points,
with ``broken`` saying why, so that it costs only its own points (the judge fails its
entries with that message) and every other problem is graded as usual. Questions are
numbered by problem and by their order in the manifest: Q2(a) is "2.1".
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field

from hw10kit import manifest
from hw10kit.checks.core import Check, References


@dataclass(frozen=True)
class Question:
    number: str        # Gradescope's "number", e.g. "2.1"
    label: str         # "Q2(a)"
    target: str        # graded function name
    notebook: str      # release file name
    keyword: str       # fallback match for renamed notebooks
    points: float      # declared in the manifest
    public: tuple = field(default=(), compare=False)
    hidden: tuple = field(default=(), compare=False)
    broken: str | None = None  # why this problem's checks could not be loaded
    references: References = field(default_factory=References, compare=False)

    @property
    def checks(self) -> list[Check]:
        return [*self.public, *self.hidden]


def _why(problem, exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename.rsplit('/', 1)[-1]}, line {exc.lineno})"
    else:
        where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}, line {frames[-1].lineno})" if frames else ""
    message = exc.msg if isinstance(exc, SyntaxError) else exc
    return (f"the autograder could not load the checks of Problem {problem.number} "
            f"({type(exc).__name__}: {message}{where}). This is not about your code; please tell the "
            "course staff.")


def questions_of(problem) -> list[Question]:
    """The problem's questions; ``broken`` set (and no checks) if its checks cannot load."""
    try:
        loaded = manifest.load(problem)
        broken = None
    except Exception as exc:  # noqa: BLE001 - one problem's fault costs that problem only
        loaded, broken = manifest.Loaded(problem), _why(problem, exc)
    return [Question(f"{problem.number}.{k}", q.label, q.target, problem.notebook, problem.keyword,
                     float(q.points), tuple(c for c in loaded.public if c.target == q.target),
                     tuple(c for c in loaded.hidden if c.target == q.target), broken,
                     References(loaded.references))
            for k, q in enumerate(problem.questions, start=1)]


def load_questions(problems=None) -> list[Question]:
    return [q for p in (manifest.PROBLEMS if problems is None else problems) for q in questions_of(p)]


QUESTIONS = load_questions()
