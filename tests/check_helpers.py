"""Helpers for the check specifications (test_q2_checks.py, test_q3_checks.py): run the
grader's own checks (public + hidden) in-process on a notebook's definitions, with one
function swapped."""
from __future__ import annotations

import textwrap

from hw10grader.assignment import QUESTIONS
from hw10kit.checks.core import run_checks

SEED = 2024


def grade(ns: dict, target: str, seed: int = SEED) -> dict:
    """``{check title: (passed, message)}`` for every check of ``target``."""
    (question,) = [q for q in QUESTIONS if q.target == target]
    return {c.title: (ok, msg) for c, ok, msg, _ in run_checks(question.checks, ns, seed, question.references)}


def with_code(ns: dict, code: str, **names) -> dict:
    """A copy of ``ns`` with ``names`` added, then ``code`` (dedented) run in it."""
    ns = dict(ns, **names)
    exec(textwrap.dedent(code), ns)
    return ns


def failed(results: dict) -> set:
    """The titles of the checks that failed."""
    return {title for title, (ok, _) in results.items() if not ok}


def public_titles(target: str) -> set:
    return {c.title for q in QUESTIONS if q.target == target for c in q.public}
