"""The check library shared by the public checks (run in the student's notebook) and
the hidden checks (run by the grader).

A check has three parts, so that the grader can keep the student's code on the far
side of a process boundary:

* ``inputs(rng)`` builds plain data (numpy arrays, numbers) from a numpy Generator;
* ``probe(namespace, inputs)`` runs beside the student's code: it calls the graded
  function found in ``namespace`` and returns plain data (see ``probes``);
* ``verdict(inputs, outputs)`` decides, returning ``(passed, message)``.

In a notebook all three run in the kernel. Under the grader, ``inputs`` and
``verdict`` (which may hold reference values) run in the judge and only the probe runs
in the sandbox.

Rules for verdicts that compare with a reference:

* compare with relative tolerances (``close_rel``), never an absolute one alone, so
  that a degenerate answer (zeros, a constant, the input unchanged, the right formula
  scaled by 1e-6) cannot pass by being small on both sides;
* a check that rebuilds a quantity from the student's output (the noise of a sample,
  say) first establishes that it is on the right scale (``stats.unit_variance``);
* every reference check is tested against those degenerate answers.
"""
from __future__ import annotations

import traceback
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..notebook import CELL_FILE_PREFIX


@dataclass(frozen=True)
class Check:
    question: str                       # "Q2(a)"
    target: str                         # graded function, e.g. "sample_gaussian"
    title: str                          # what is checked, e.g. "gradient w.r.t. v"
    points: float
    inputs: Callable[[np.random.Generator], dict]
    probe: Callable[[dict, dict], dict]
    verdict: Callable[[dict, dict], tuple]
    false_failure: float = 0.0          # P(a correct implementation fails), stated bound
    #: The judge-side reference this verdict compares with (a key of the hidden module's
    #: REFERENCES): its values reach the verdict as ``inputs["expected"]``, never the probe.
    #: Public checks keep formulas out of the kit this way (see ``References``).
    reference: str | None = None

    @property
    def name(self) -> str:
        return f"{self.question} {self.target}: {self.title}"

    def rng(self, seed: int) -> np.random.Generator:
        """The Generator for this check's inputs: fixed by (seed, check name)."""
        return np.random.default_rng([seed, zlib.crc32(self.name.encode())])

    def torch_seed(self, seed: int) -> int:
        """Seed for torch in the student's process before the probe runs (makes a
        regrade reproduce the student's own random draws)."""
        return (seed * 1_000_003 + zlib.crc32(self.name.encode())) % (2**63)


class ProbeError(Exception):
    """The student's code could not be probed (missing name, wrong return type...).
    The message is written for the student."""


# ------------------------------------------------------------ helpers for probes
def lookup(ns: dict, name: str):
    """The student's ``name`` from ``ns``, or a ProbeError saying to run its cell."""
    if name not in ns:
        raise ProbeError(f"`{name}` is not defined: run (or restore) the cell that defines it.")
    return ns[name]


def tensor_out(value, what: str):
    """``value`` if it is a tensor, else a ProbeError naming ``what``."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise ProbeError(f"{what} should be a torch.Tensor, but it is a {type(value).__name__}.")
    return value


def to_numpy(t):
    """A tensor as a float64 numpy array (detached, on the CPU)."""
    return t.detach().cpu().double().numpy()


def student_traceback(exc: BaseException, limit_chars: int = 1500) -> str:
    """The exception with its traceback trimmed to the student's own notebook lines."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(CELL_FILE_PREFIX)]
    lines = [f'  {f.filename[1:-1]}, line {f.lineno}, in {f.name}\n    {(f.line or "").strip()}'
             for f in frames[-5:]]
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    out = ("\n".join(lines) + "\n" if lines else "") + text
    return out if len(out) <= limit_chars else out[:limit_chars] + " ..."


def probe_id(probe) -> str:
    """How a probe is named on the wire: ``module:function`` inside ``hw10kit.checks``."""
    return f"{probe.__module__}:{probe.__qualname__}"


def resolve_probe(ident: str):
    """The probe function named by ``probe_id`` (only ``hw10kit.checks`` modules)."""
    import importlib

    module, _, name = ident.partition(":")
    if not module.startswith("hw10kit.checks.") or not name.isidentifier():
        raise ValueError(f"unknown probe {ident!r}")
    return getattr(importlib.import_module(module), name)


def not_implemented_message(target: str, exc: BaseException) -> str:
    """What to say when the student's function still raises NotImplementedError."""
    from ..unfinished import unfinished_name

    name = unfinished_name(exc, target)
    return (f"`{name}` is not implemented yet: in the cell that defines `{name}`, replace "
            "`raise NotImplementedError()` with your code, run that cell, then run this check again.")


def call_probe(probe, target: str, namespace: dict, inputs: dict, torch_seed: int) -> dict:
    """Run one probe beside the student's code. Returns ``{"ok": outputs}`` or
    ``{"error": message}`` (with ``"unfinished": True`` when the code still raises
    NotImplementedError); never raises for the student's errors.

    An exception whose traceback holds no line of the student's cells is not reported
    as theirs: the reply says ``"internal": True``, with the probe's own traceback, and
    ``judge`` decides (it reruns the probe without the student's code). A graded name
    bound to one of the kit's own functions (``from hw10kit... import f as sample_gaussian``)
    is refused."""
    try:
        import types

        import torch
        torch.manual_seed(torch_seed)
        fn = namespace.get(target) if isinstance(namespace, dict) else None
        if isinstance(fn, types.FunctionType) and str(getattr(fn, "__module__", "")).startswith("hw10kit") \
                and not fn.__code__.co_filename.startswith(CELL_FILE_PREFIX):
            return {"error": f"`{target}` is the course kit's own function ({fn.__module__}."
                             f"{fn.__qualname__}), not an answer: write {target} yourself."}
        return {"ok": probe(namespace, inputs)}
    except ProbeError as exc:
        return {"error": str(exc)}
    except NotImplementedError as exc:
        return {"error": not_implemented_message(target, exc), "unfinished": True}
    except Exception as exc:  # noqa: BLE001 - whatever the student's code raised
        frames = traceback.extract_tb(exc.__traceback__)
        if any(f.filename.startswith(CELL_FILE_PREFIX) for f in frames):
            return {"error": f"{target} raised an exception:\n{student_traceback(exc)}"}
        shown = "".join(f"  {f.filename.rsplit('/', 1)[-1]}, line {f.lineno}, in {f.name}\n"
                        f"    {(f.line or '').strip()}\n" for f in frames[-4:])
        text = shown + "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {"error": text if len(text) <= 1500 else text[:1500] + " ...", "internal": True}


def judge(check: Check, inputs: dict, reply: dict) -> tuple:
    """(passed, message) for a probe's reply.

    A reply marked ``internal`` (an error no line of the student's cells raised) is not
    taken on trust, since code in the student's process could write one: the probe is
    run again here with an empty namespace, without any of the student's code. If it
    fails the same way, the fault is the check's: it passes, and says so ("costs
    nothing"). If not, the error arose only once the student's objects were in play
    (a tensor whose backward fails, an object whose attributes raise...): it fails,
    and the message says that no line of their code is in the traceback."""
    if reply.get("internal"):
        trace = str(reply.get("error", ""))
        try:
            again = call_probe(check.probe, check.target, {}, inputs, 0)
        except Exception:  # noqa: BLE001 - call_probe only raises for BaseExceptions
            again = {}
        if again.get("internal"):
            return True, ("internal error in the check (not your code): this check is given its "
                          "points; please tell the course staff:\n" + str(again.get("error", trace)))
        return False, (f"this check failed while it used what {check.target} returned or did; no line "
                       "of your code is in the traceback (the error came from library or check code "
                       "working on your function's result, e.g. a tensor whose backward pass fails, "
                       "or a result on another device or of another type), and the check runs without "
                       f"that error up to the call of your code:\n{trace}")
    if "error" in reply:
        return False, str(reply["error"])
    try:
        passed, message = check.verdict(inputs, reply["ok"])
    except Exception as exc:  # noqa: BLE001 - malformed outputs must not crash grading
        return False, f"could not interpret what {check.target} returned ({type(exc).__name__}: {exc})"
    return bool(passed), str(message)


class References:
    """Where a check's inputs and expected values come from. The judge computes them:
    ``References(table)`` with the hidden module's ``REFERENCES`` (key -> ``f(inputs) ->
    expected``), on inputs drawn from the seed. A notebook reads them: ``StoredReferences``,
    values the build computed on fixed inputs, so the kit holds no reference formula."""

    def __init__(self, table=None):
        self.table = dict(table or {})

    def case(self, check: Check, seed: int) -> tuple:
        """``(probe inputs, verdict inputs)``: the verdict's carry ``"expected"`` when the
        check has a reference; the probe's never do."""
        inputs = check.inputs(check.rng(seed))
        if check.reference is None:
            return inputs, inputs
        if check.reference not in self.table:
            raise KeyError(f"no reference {check.reference!r} for {check.name!r}")
        return inputs, {**inputs, "expected": self.table[check.reference](inputs)}


class StoredReferences(References):
    """The fixed inputs and expected values ``make release`` stored for a problem's public
    checks (``hw10kit/checks/expected/<key>.json``), by check name."""

    def __init__(self, key: str):
        super().__init__()
        from pathlib import Path

        from . import wire

        self.path = Path(__file__).with_name("expected") / f"{key}.json"
        try:
            self.cases = wire.loads(self.path.read_bytes())
        except OSError:
            self.cases = None

    def case(self, check: Check, seed: int) -> tuple:
        if check.reference is None:
            return super().case(check, seed)
        if self.cases is None or check.name not in self.cases:
            raise ProbeError(f"the kit's stored values for this check are missing ({self.path}): "
                             "download hw10kit/ again with the homework")
        stored = self.cases[check.name]
        return stored["inputs"], {**stored["inputs"], "expected": stored["expected"]}


def stored_cases(checks, references: References, seed: int = 0) -> dict:
    """What ``StoredReferences`` reads, for the checks that have a reference: fixed inputs
    (from ``seed``) and their expected values, rounded to float32 so that the file is the
    same on every CPU. Written by ``make release``."""
    def f32(value):
        if isinstance(value, dict):
            return {k: f32(v) for k, v in sorted(value.items())}
        if isinstance(value, (list, tuple)):
            return [f32(v) for v in value]
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return value.astype(np.float32)
        if isinstance(value, (float, np.floating)):  # stays a Python float, rounded to float32
            return float(np.float32(value))
        return value

    cases = {}
    for check in checks:
        if check.reference is not None:
            inputs, judged = references.case(check, seed)
            cases[check.name] = {"inputs": f32(inputs), "expected": f32(judged["expected"])}
    return cases


def run_checks(checks, namespace: dict, seed: int, references: References | None = None):
    """Run checks in this process (the notebook's way). Yields (check, passed, message,
    unfinished), ``unfinished`` being True when the code raised NotImplementedError."""
    references = References() if references is None else references
    for check in checks:
        try:
            inputs, judged = references.case(check, seed)
        except ProbeError as exc:
            yield check, False, str(exc), False
            continue
        reply = call_probe(check.probe, check.target, namespace, inputs, check.torch_seed(seed))
        yield (check, *judge(check, judged, reply), bool(reply.get("unfinished")))


def close(got, want, rtol=1e-4, atol=1e-5) -> bool:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return got.shape == want.shape and bool(np.all(np.isfinite(got))) and \
        bool(np.allclose(got, want, rtol=rtol, atol=atol))


def close_rel(got, want, rtol=1e-4) -> bool:
    """Equal up to ``rtol`` relative to the reference's own size (its largest entry),
    so that a small reference cannot be matched by a tiny answer."""
    want64 = np.asarray(want, dtype=np.float64)
    scale = float(np.max(np.abs(want64))) if want64.size else 0.0
    return close(got, want, rtol=rtol, atol=rtol * scale if scale > 0 else 1e-12)


def describe_mismatch(got, want, what="value") -> str:
    """A short message with numbers: where the values differ most."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if not np.all(np.isfinite(got)):
        return f"{what} contains NaN or inf"
    diff = np.abs(got - want)
    i = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
    g, w = (got[i], want[i]) if diff.ndim else (float(got), float(want))
    where = f" at index {tuple(int(k) for k in i)}" if diff.ndim else ""
    return f"{what} is {g:.6g}{where}, expected {w:.6g} (difference {abs(g - w):.3g})"


# ------------------------------------------------------------ one style for verdicts
def softplus(t):
    """log(1 + e^t) in float64, stable for any t."""
    return np.logaddexp(0.0, np.asarray(t, np.float64))


def log_sigmoid(t):
    """log sigmoid(t) = -softplus(-t), stable for any t."""
    return -softplus(-np.asarray(t, np.float64))


def sigmoid(t):
    return np.exp(log_sigmoid(t))


def shape_guard(shape, want=(), what="the value", fix="") -> str | None:
    """None when ``shape`` (a list, as probes report it) is ``want``; else a message that
    says so, and how to fix it (``fix``). ``want=()`` asks for a scalar."""
    if list(shape) == list(want):
        return None
    expected = "a scalar" if not want else f"shape {tuple(want)}"
    return f"{what} has shape {tuple(shape)}, expected {expected}" + (f": {fix}" if fix else "")


@dataclass(frozen=True)
class Mistake:
    """A wrong answer students write: its value on the check's inputs, and the hint
    that names it (said only when the answer matches that value)."""
    value: object
    hint: str


def reference_verdict(got, want, *, what: str, formula: str = "", mistakes=(), rtol: float = 1e-4,
                      where: str = "", fallback: str | None = None) -> tuple:
    """(passed, message) comparing ``got`` with the reference ``want`` (``close_rel``).
    On a miss the message gives the numbers and the hint of the first matching
    ``Mistake``, else ``fallback`` (if any): a hint is said only for the mistake it names."""
    expected = f" = {formula}" if formula else ""
    if close_rel(got, want, rtol=rtol):
        return True, f"{what} is correct{where}" + (f": {formula}" if formula else "")
    got64 = np.asarray(got, np.float64)
    if got64.shape == np.shape(want) and not np.all(np.isfinite(got64)):
        hint = next((m.hint for m in mistakes if not np.all(np.isfinite(np.asarray(m.value, np.float64)))), fallback)
        return False, f"{what} contains NaN or inf{where}" + (f": {hint}" if hint else "")
    hint = next((m.hint for m in mistakes if close_rel(got, m.value, rtol=rtol)), fallback)
    if got64.ndim == 0 and np.ndim(want) == 0:
        message = f"{what} = {float(got64):.6g}{where}, expected {float(want):.6g}{expected}"
    else:
        message = describe_mismatch(got, want, what) + where
    return False, message + (f": {hint}" if hint else "")


def expectation(value, mistakes=()) -> dict:
    """What a judge-side reference returns: the right value and the wrong ones students
    write, each with its hint (``Mistake``). Stored as plain data for the notebook."""
    return {"value": value, "mistakes": [{"value": m.value, "hint": m.hint} for m in mistakes]}


def expected_verdict(got, expected: dict, **kw) -> tuple:
    """``reference_verdict`` against an ``expectation`` (the verdict's ``inputs["expected"]``)."""
    mistakes = [Mistake(m["value"], m["hint"]) for m in expected.get("mistakes", [])]
    return reference_verdict(got, expected["value"], mistakes=mistakes, **kw)
