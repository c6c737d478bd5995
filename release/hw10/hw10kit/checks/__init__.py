"""Public checks for HW10. In a notebook: ``check("sample_gaussian")`` after the cell
that defines it. The same checks run again, with hidden ones, when the grader grades.

Which problem holds which graded function is declared once, in ``hw10kit.manifest``;
only the problem asked about is imported, so one broken problem cannot stop the others.
"""
from __future__ import annotations

import inspect
import os

from ..manifest import BY_TARGET, problem_of, public_checks
from .core import StoredReferences, run_checks

TARGETS = sorted(BY_TARGET)


class CheckReport:
    """What ``check`` returns: true when every public check passed. It shows nothing in
    a notebook (the report is already printed above it)."""

    def __init__(self, target: str, passed: int, total: int):
        self.target, self.passed, self.total = target, passed, total

    def __bool__(self) -> bool:
        return self.passed == self.total

    def _ipython_display_(self):
        pass

    def __repr__(self) -> str:
        return f"CheckReport({self.target!r}: {self.passed}/{self.total} passed)"


def check(target: str, namespace: dict | None = None, seed: int | None = None) -> CheckReport:
    """Run the public checks of ``target`` on the definitions in the caller's notebook
    and print what passed and what to fix. The result is true when all passed."""
    problem = problem_of(target)
    if namespace is None:
        namespace = inspect.currentframe().f_back.f_globals
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    checks = [c for c in public_checks(problem) if c.target == target]
    passed = 0
    # the values the build stored on fixed inputs: the kit holds no reference formulas
    for c, ok, message, unfinished in run_checks(checks, namespace, seed, StoredReferences(problem.key)):
        if unfinished:  # said once, instead of one traceback per check
            print(f"\u2718 {message}")
            print(f"{target}: 0/{len(checks)} public checks run; fill it in first.")
            return CheckReport(target, 0, len(checks))
        passed += ok
        mark = "\u2714" if ok else "\u2718"
        print(f"{mark} {c.name}" + ("" if ok else "\n    " + message.replace("\n", "\n    ")))
    total = len(checks)
    verdict = "all passed" if passed == total else "fix the first failure above and run again"
    print(f"{target}: {passed}/{total} public checks passed ({verdict}). "
          "The grader also runs hidden checks.")
    return CheckReport(target, passed, total)
