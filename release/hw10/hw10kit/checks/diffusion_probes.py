"""Probes for Problem 4 (diffusion): they call the student's closed forms on the check's
schedule and report plain data. They hold no reference values.

Inputs: ``betas`` (T,) float64 with ``betas[t-1] = beta_t``; ``t`` (B,) int64 in 1..T;
``x0``, ``xt``, ``noise`` shaped (B, ...); ``dtype`` "float32" or "float64", the dtype
the tensors are handed over in.
"""
from __future__ import annotations

from .core import ProbeError, lookup, student_traceback, tensor_out, to_numpy

INDEX_HINT = ("t is 1-based, with values in 1..T, so abar_t is alpha_bar(betas)[t - 1] (and abar_{t-1} "
              "is alpha_bar(betas)[t - 2] for t >= 2, with abar_0 = 1)")


def _call(ns: dict, target: str, *args):
    """The student's ``target(*args)``; an IndexError (t used as a 0-based index, so t = T
    falls off the end) is reported with what t means."""
    fn = lookup(ns, target)
    try:
        return fn(*args)
    except IndexError as exc:
        raise ProbeError(f"{target} raised an exception:\n{student_traceback(exc)}\n{INDEX_HINT}") from None


def _tensors(inputs: dict, *names):
    import torch

    dtype = getattr(torch, inputs.get("dtype", "float32"))
    return [torch.tensor(inputs[n], dtype=torch.long) if n == "t" else torch.tensor(inputs[n], dtype=dtype)
            for n in names]


def _report(value, what: str) -> dict:
    value = tensor_out(value, what)
    return {"shape": list(value.shape), "value": to_numpy(value), "dtype": str(value.dtype).replace("torch.", "")}


def _pair(result, target: str):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = type(result).__name__ + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise ProbeError(f"{target} should return a tuple (mean, var), but it returned {got}")
    return result


def alpha_bar_call(ns: dict, inputs: dict) -> dict:
    """``alpha_bar(betas)``."""
    (betas,) = _tensors(inputs, "betas")
    return _report(_call(ns, "alpha_bar", betas), "alpha_bar's return value")


def q_xt_given_x0_call(ns: dict, inputs: dict) -> dict:
    """``q_xt_given_x0(x0, t, betas)`` -> the mean's and the variance's reports."""
    x0, t, betas = _tensors(inputs, "x0", "t", "betas")
    mean, var = _pair(_call(ns, "q_xt_given_x0", x0, t, betas), "q_xt_given_x0")
    return {"mean": _report(mean, "the mean (item 0)"), "var": _report(var, "the variance (item 1)")}


def q_sample_call(ns: dict, inputs: dict) -> dict:
    """``q_sample(x0, t, betas, noise)`` twice with the same noise; whether a call moved
    torch's random generator (it should draw nothing itself)."""
    import torch

    x0, t, betas, noise = _tensors(inputs, "x0", "t", "betas", "noise")
    state = torch.random.get_rng_state()
    first = _report(_call(ns, "q_sample", x0, t, betas, noise), "q_sample's return value")
    drew = not torch.equal(state, torch.random.get_rng_state())
    second = _report(_call(ns, "q_sample", x0, t, betas, noise), "q_sample's return value")
    return {**first, "drew": drew, "same_twice": bool(first["shape"] == second["shape"]
                                                      and (first["value"] == second["value"]).all())}


def q_posterior_call(ns: dict, inputs: dict) -> dict:
    """``q_posterior(x0, xt, t, betas)`` -> the mean's and the variance's reports."""
    x0, xt, t, betas = _tensors(inputs, "x0", "xt", "t", "betas")
    mean, var = _pair(_call(ns, "q_posterior", x0, xt, t, betas), "q_posterior")
    return {"mean": _report(mean, "the mean (item 0)"), "var": _report(var, "the variance (item 1)")}
