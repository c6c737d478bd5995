"""Saying once, in one line, that a part of the homework is not filled in yet.

The kit's training and evaluation functions turn a ``NotImplementedError`` raised by
the student's code into ``Unfinished``, which Jupyter shows as a single line instead of
a traceback (``_render_traceback_``), so that running a blank notebook top to bottom
says what to fill in and nothing else.
"""
from __future__ import annotations

import functools
import traceback


def unfinished_name(exc: BaseException, default: str = "a function") -> str:
    """The function that raised ``exc`` (the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    name = frames[-1].name if frames else ""
    return name if name.isidentifier() and name != "<module>" else default


class Unfinished(RuntimeError):
    """Raised by the kit when the student's code still raises NotImplementedError."""

    def __init__(self, name: str, what: str):
        self.name, self.what = name, what
        super().__init__(f"{what} skipped: `{name}` is not implemented yet. Fill it in, run its "
                         "check cell, then run this cell again.")

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [f"\u23f8 {self}"]


class guard:
    """``@guard("Training")`` on a function, or ``with guard("This comparison"):`` around
    notebook code: a NotImplementedError inside becomes ``Unfinished(name, what)``."""

    def __init__(self, what: str):
        self.what = what

    def __call__(self, fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return inner

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, NotImplementedError):
            raise Unfinished(unfinished_name(exc.with_traceback(tb)), self.what) from None
        return False
