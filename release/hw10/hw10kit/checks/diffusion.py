"""Public checks for Problem 4 (diffusion). The grader runs these and its hidden checks.

Notation (the notebook's): alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s, abar_0 = 1;
time steps are 1-based (x_1 ... x_T); ``betas[t-1] = beta_t``; ``t`` is a LongTensor (B,)
with values in 1..T; every mean and variance has the shape of ``x0``.

The expected values come from the judge (``hw10grader.hidden.diffusion.REFERENCES``); in a
notebook, from the values the build stored on these checks' fixed inputs. This module holds
the input designs and the comparisons only: the closed forms are what the problem asks for.
"""
from __future__ import annotations

import numpy as np

from . import diffusion_probes as probes
from .core import Check, expected_verdict

NOTEBOOK, KEYWORD = "hw10_diffusion.ipynb", "diffusion"
Q4A, Q4B = "Q4(a)", "Q4(b)"
ALPHA_BAR, Q_XT, Q_SAMPLE, Q_POST = "alpha_bar", "q_xt_given_x0", "q_sample", "q_posterior"


# ------------------------------------------------------------------ input designs
def schedule(kind: str, T: int, rng: np.random.Generator) -> np.ndarray:
    """betas (T,) float64: "linear" (1e-4 to 0.02, DDPM's), "cosine"
    (Nichol and Dhariwal's, betas clipped at 0.999) or "random" (uniform in [0.01, 0.3])."""
    if kind == "linear":
        return np.linspace(1e-4, 0.02, T)
    if kind == "cosine":
        s = 0.008
        f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
        return np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
    if kind == "random":
        return rng.uniform(0.01, 0.3, T)
    raise ValueError(kind)


def design(kind="random", T=12, shape=(8, 3), dtype="float32"):
    """A schedule and a batch whose t include 1, T and values in between, in mixed order."""
    def make(rng):
        batch = shape[0]
        t = np.concatenate([[1, T], rng.integers(1, T + 1, max(0, batch - 2))])[:batch]
        rng.shuffle(t)
        return {"betas": schedule(kind, T, rng), "t": t.astype(np.int64), "dtype": dtype,
                "x0": rng.normal(0, 1.5, shape).astype(np.float32) + 0.5,
                "xt": rng.normal(0, 1.0, shape).astype(np.float32),
                "noise": rng.normal(0, 1.0, shape).astype(np.float32)}
    return make


# ------------------------------------------------------------------ comparisons
def _shape_problem(report, want, what) -> str | None:
    if report["shape"] != list(want):
        return (f"{what} has shape {tuple(report['shape'])}, expected {tuple(want)}, the shape of x0: "
                "index the schedule with t, reshape to (B, 1, ..., 1) and broadcast over x0")
    return None


def _broadcast(report, want_shape):
    """The student's array broadcast to x0's shape, or None when it cannot be."""
    value = np.asarray(report["value"], np.float64)
    try:
        return np.broadcast_to(value, tuple(want_shape))
    except ValueError:
        return None


def value_of(key: str, what: str, formula: str):
    """A verdict comparing output ``key`` ("mean", "var", or None for the whole reply)
    with the judge's expected value, broadcasting it to x0's shape first."""
    def verdict(inputs, out):
        report = out if key is None else out[key]
        expected = inputs["expected"]
        got = _broadcast(report, np.shape(expected["value"]))
        if got is None:
            return False, (f"{what} has shape {tuple(report['shape'])}, which does not broadcast to "
                           f"{tuple(np.shape(expected['value']))}, the shape of x0")
        return expected_verdict(got, expected, what=what, formula=formula)
    return verdict


def shapes_verdict(inputs, out):
    want = inputs["x0"].shape
    problems = [p for p in (_shape_problem(out["mean"], want, "the mean"),
                            _shape_problem(out["var"], want, "the variance")) if p]
    if problems:
        return False, "; ".join(problems)
    return True, f"mean and variance have the shape of x0, {tuple(want)}"


def alpha_bar_shape(inputs, out):
    T = len(inputs["betas"])
    if out["shape"] != [T]:
        return False, f"alpha_bar(betas) has shape {tuple(out['shape'])}, expected ({T},): one entry per t"
    return True, f"alpha_bar(betas) has shape ({T},)"


def draws_nothing(inputs, out):
    if out["drew"] or not out["same_twice"]:
        return False, ("q_sample must build x_t from the noise it is given: it drew random numbers itself "
                       "(torch.randn...) or gave two different results for the same noise. Use the "
                       "`noise` argument: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) * noise")
    return True, "q_sample uses the given noise and draws nothing itself"


MEAN_XT, VAR_XT = "sqrt(abar_t) x0", "(1 - abar_t), broadcast to x0's shape"
MEAN_POST = "sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t"
VAR_POST = "beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t"

PUBLIC = [
    Check(Q4A, ALPHA_BAR, "returns one entry per t", 0.25, design(), probes.alpha_bar_call, alpha_bar_shape),
    Check(Q4A, ALPHA_BAR, "values on a random schedule", 0.75, design(), probes.alpha_bar_call,
          value_of(None, "alpha_bar(betas)", "abar_t = prod_{s<=t} (1 - beta_s) at entry t - 1"),
          reference="alpha_bar"),
    Check(Q4A, Q_XT, "mean and variance have the shape of x0", 0.25, design(), probes.q_xt_given_x0_call,
          shapes_verdict),
    Check(Q4A, Q_XT, "mean over a batch of mixed t", 0.5, design(), probes.q_xt_given_x0_call,
          value_of("mean", "the mean of q(x_t | x_0)", MEAN_XT), reference="q_xt_mean"),
    Check(Q4A, Q_XT, "variance over a batch of mixed t", 0.5, design(), probes.q_xt_given_x0_call,
          value_of("var", "the variance of q(x_t | x_0)", VAR_XT), reference="q_xt_var"),
    Check(Q4A, Q_SAMPLE, "uses the given noise and draws nothing", 0.5, design(), probes.q_sample_call,
          draws_nothing),
    Check(Q4A, Q_SAMPLE, "value over a batch of mixed t", 0.5, design(), probes.q_sample_call,
          value_of(None, "q_sample(x0, t, betas, noise)", "sqrt(abar_t) x0 + sqrt(1 - abar_t) noise"),
          reference="q_sample"),
    Check(Q4B, Q_POST, "mean and variance have the shape of x0", 0.25, design(), probes.q_posterior_call,
          shapes_verdict),
    Check(Q4B, Q_POST, "mean over a batch of mixed t, t = 1 included", 1.0, design(), probes.q_posterior_call,
          value_of("mean", "the mean of q(x_{t-1} | x_t, x_0)", MEAN_POST), reference="post_mean"),
    Check(Q4B, Q_POST, "variance over a batch of mixed t, t = 1 included", 0.75, design(),
          probes.q_posterior_call, value_of("var", "the variance of q(x_{t-1} | x_t, x_0)", VAR_POST),
          reference="post_var"),
]
