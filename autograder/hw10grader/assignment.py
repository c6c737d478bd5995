"""What is graded: notebooks, their questions, and each question's checks.

A question's checks are its public checks (the ones students run, from
``hw10kit.checks``) followed by its hidden checks (``hw10grader.hidden``). To add a
problem: add its public checks to ``hw10kit.checks``, its hidden checks to
``hidden/``, and a ``Question`` here.
"""
from __future__ import annotations

from dataclasses import dataclass

from hw10kit.checks import PUBLIC_CHECKS
from hw10kit.checks.core import Check

from .hidden import vae as hidden_vae

HIDDEN_CHECKS: list[Check] = [*hidden_vae.HIDDEN]


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


QUESTIONS = [
    Question("2.1", "Q2(a)", "sample_gaussian", "hw10_vae.ipynb", "vae"),
    Question("2.2", "Q2(b)", "negative_elbo_bound", "hw10_vae.ipynb", "vae"),
]
