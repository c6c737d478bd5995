"""What is graded: notebooks, their questions, and each question's checks, derived from
one list of problems (``hw10kit.checks.PROBLEMS``).

A question is one graded function. Its checks are its public checks (the ones students
run, from ``hw10kit.checks.<problem>``) followed by its hidden checks
(``hw10grader.hidden.<problem>``). Questions are numbered by problem and by the order in
which their functions first appear among the public checks: Q2(a) is "2.1".
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from hw10kit.checks import PROBLEMS, PUBLIC_CHECKS
from hw10kit.checks.core import Check

HIDDEN_CHECKS: list[Check] = [c for name in PROBLEMS
                              for c in importlib.import_module(f"{__package__}.hidden.{name}").HIDDEN]


@dataclass(frozen=True)
class Question:
    number: str        # Gradescope's "number", e.g. "2.1"
    label: str         # "Q2(a)"
    target: str        # graded function name
    notebook: str      # release file name
    keyword: str       # fallback match for renamed notebooks

    @property
    def public(self) -> list[Check]:
        return [c for c in PUBLIC_CHECKS if c.target == self.target]

    @property
    def hidden(self) -> list[Check]:
        return [c for c in HIDDEN_CHECKS if c.target == self.target]

    @property
    def checks(self) -> list[Check]:
        return self.public + self.hidden


def _questions() -> list[Question]:
    questions = []
    for name in PROBLEMS:
        module = importlib.import_module(f"hw10kit.checks.{name}")
        targets = list(dict.fromkeys(c.target for c in module.PUBLIC))
        for k, target in enumerate(targets, start=1):
            label = next(c.question for c in module.PUBLIC if c.target == target)
            problem = re.match(r"Q(\d+)", label).group(1)
            questions.append(Question(f"{problem}.{k}", label, target, module.NOTEBOOK, module.KEYWORD))
    return questions


QUESTIONS = _questions()
