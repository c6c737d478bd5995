"""Hidden checks in-process, for instructors who autograde with nbgrader in a kernel.

The master notebook's hidden-test blocks call ``run_hidden(target)``. This path
trusts the notebook (as nbgrader does); Gradescope uses the sandboxed judge instead.
"""
from __future__ import annotations

import inspect
import os

from hw10kit.checks.core import run_checks

from .assignment import QUESTIONS


def run_hidden(target: str, namespace: dict | None = None, seed: int | None = None) -> None:
    """Run every check (public and hidden) of ``target``; raise AssertionError on failure."""
    if namespace is None:
        namespace = inspect.currentframe().f_back.f_globals
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    question = next((q for q in QUESTIONS if q.target == target), None)
    if question is None:
        raise ValueError(f"no checks for {target!r}")
    if question.broken:
        raise AssertionError(question.broken)
    checks = question.checks
    failed = [f"{c.name}: {msg}" for c, ok, msg, _ in run_checks(checks, namespace, seed, question.references)
              if not ok]
    if failed:
        raise AssertionError("\n".join(failed))
    print(f"{target}: all {len(checks)} checks passed (seed {seed})")
