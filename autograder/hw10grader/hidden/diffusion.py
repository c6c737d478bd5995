"""Hidden checks and the references for Problem 4 (diffusion). Judge side only: the closed
forms below are what the problem asks students to derive, so they never enter the kit
(the notebook's public checks read the values the build stored) nor the sandbox.

Everything is computed in float64 with 1-based t: ``abar[t]`` is abar_t, ``abar[0] = 1``.
"""
from __future__ import annotations

import numpy as np
from hw10kit.checks import diffusion_probes as probes
from hw10kit.checks.core import Check, Mistake, close_rel, expectation
from hw10kit.checks.diffusion import (ALPHA_BAR, Q4A, Q4B, Q_POST, Q_SAMPLE, Q_XT, design, draws_nothing,
                                      value_of)

OFF_BY_ONE = ("off by one in t: t is 1-based, so abar_t is alpha_bar(betas)[t - 1] (and abar_{t-1} is "
              "alpha_bar(betas)[t - 2], with abar_0 = 1)")
ALPHA_NOT_BAR = ("alpha_t and abar_t are confused: q(x_t | x_0) uses abar_t = prod_{s<=t} alpha_s, the "
                 "cumulative product, not alpha_t = 1 - beta_t")
MIXED_T = ("every sample has its own t: index the schedule with the whole t tensor (not t[0]) and reshape "
           "to (B, 1, ..., 1) so that it broadcasts over x0")
WRAPS = ("wrong at t = 1 only: abar_0 = 1, but indexing alpha_bar(betas)[t - 2] at t = 1 wraps around to "
         "abar_T. Prepend a 1 (torch.cat([torch.ones(1), abar])) or use torch.where(t > 1, ...)")


def abar_full(betas) -> np.ndarray:
    """(T + 1,): abar_0 = 1, then abar_1 ... abar_T."""
    return np.concatenate([[1.0], np.cumprod(1.0 - np.asarray(betas, np.float64))])


def _col(values, x0):
    """Per-sample values (B,) shaped to broadcast over x0 (B, ...)."""
    return np.asarray(values, np.float64).reshape((-1,) + (1,) * (np.ndim(x0) - 1))


def _at(series, t, shift=0):
    """series[t + shift], t an array of 1-based steps (clipped: an off-by-one past T)."""
    return np.asarray(series)[np.clip(np.asarray(t) + shift, 0, len(series) - 1)]


# ------------------------------------------------------------------ closed forms
def q_xt(betas, t, x0, shift=0, alpha=False, first_t_only=False, wrap=False):
    """(mean, var) of q(x_t | x_0); the keyword arguments build the mistakes (``wrap``:
    abar_{t-1} read as alpha_bar(betas)[t - 2], which wraps to abar_T at t = 1)."""
    x0 = np.asarray(x0, np.float64)
    t = np.full_like(t, t[0]) if first_t_only else np.asarray(t)
    series = np.concatenate([[1.0], 1.0 - np.asarray(betas, np.float64)]) if alpha else abar_full(betas)
    if wrap:
        series = np.concatenate([[series[-1]], series[1:]])
    ab = _col(_at(series, t, shift), x0)
    return np.sqrt(ab) * x0, np.broadcast_to(1.0 - ab, x0.shape)


def posterior(betas, t, x0, xt, shift=0, wrap=False, x0_coef_abar_t=False, swap=False, xt_coef_abar=False):
    """(mean, var) of q(x_{t-1} | x_t, x_0); the keyword arguments build the mistakes."""
    x0, xt, t = np.asarray(x0, np.float64), np.asarray(xt, np.float64), np.asarray(t) + shift
    t = np.clip(t, 1, len(betas))
    ab = abar_full(betas)
    beta = _col(np.asarray(betas, np.float64)[t - 1], x0)
    abar_t, abar_prev = _col(ab[t], x0), _col(ab[t - 1], x0)
    if wrap:  # abar_{t-1} read as alpha_bar(betas)[t - 2], which wraps to abar_T at t = 1
        abar_prev = _col(np.where(t > 1, ab[t - 1], ab[-1]), x0)
    c0 = np.sqrt(abar_t if x0_coef_abar_t else abar_prev) * beta / (1 - abar_t)
    ct = np.sqrt(abar_t if xt_coef_abar else 1 - beta) * (1 - abar_prev) / (1 - abar_t)
    if swap:
        c0, ct = ct, c0
    return c0 * x0 + ct * xt, np.broadcast_to((1 - abar_prev) / (1 - abar_t) * beta, x0.shape)


# ------------------------------------------------------------------ references (Check.reference)
def _unique(want, mistakes):
    """The mistakes that differ from the right answer (a hint never fires on a right one)."""
    return [m for m in mistakes if not close_rel(m.value, want, rtol=1e-4)]


def alpha_bar_expected(inputs) -> dict:
    b = np.asarray(inputs["betas"], np.float64)
    want = abar_full(b)[1:]
    return expectation(want, _unique(want, [
        Mistake(abar_full(b)[:-1], "shifted by one: entry t - 1 is abar_t = prod_{s<=t} alpha_s, which "
                                   "includes alpha_t (abar_0 = 1 is not one of the T entries)"),
        Mistake(1.0 - b, "that is alpha_t = 1 - beta_t: abar_t is the cumulative product of the alphas "
                         "(torch.cumprod(1 - betas, 0))"),
        Mistake(np.cumprod(b), "that is the product of the betas: abar_t multiplies alpha_s = 1 - beta_s"),
    ]))


def _xt_mistakes(inputs, index, fix_std=None):
    args = (inputs["betas"], inputs["t"], inputs["x0"])
    pick = lambda pair: pair[index]  # noqa: E731
    mistakes = [Mistake(pick(q_xt(*args, shift=+1)), OFF_BY_ONE), Mistake(pick(q_xt(*args, shift=-1)), OFF_BY_ONE),
                Mistake(pick(q_xt(*args, shift=-1, wrap=True)), OFF_BY_ONE),
                Mistake(pick(q_xt(*args, alpha=True)), ALPHA_NOT_BAR),
                Mistake(pick(q_xt(*args, first_t_only=True)), MIXED_T)]
    return mistakes + ([fix_std] if fix_std else [])


def q_xt_mean_expected(inputs) -> dict:
    mean, var = q_xt(inputs["betas"], inputs["t"], inputs["x0"])
    ab = 1 - var
    return expectation(mean, _unique(mean, [
        *_xt_mistakes(inputs, 0),
        Mistake(ab * inputs["x0"], "the mean is sqrt(abar_t) x0, not abar_t x0")]))


def q_xt_var_expected(inputs) -> dict:
    _, var = q_xt(inputs["betas"], inputs["t"], inputs["x0"])
    return expectation(var, _unique(var, _xt_mistakes(inputs, 1, Mistake(
        np.sqrt(var), "that is the standard deviation sqrt(1 - abar_t): return the variance 1 - abar_t"))))


def q_sample_expected(inputs) -> dict:
    b, t, x0, noise = inputs["betas"], inputs["t"], inputs["x0"], np.asarray(inputs["noise"], np.float64)

    def sample(**kw):
        mean, var = q_xt(b, t, x0, **kw)
        return mean + np.sqrt(var) * noise

    want = sample()
    mean, var = q_xt(b, t, x0)
    return expectation(want, _unique(want, [
        Mistake(mean + var * noise, "the noise is scaled by the variance 1 - abar_t: scale it by the standard "
                                    "deviation sqrt(1 - abar_t)"),
        Mistake(sample(shift=+1), OFF_BY_ONE), Mistake(sample(shift=-1), OFF_BY_ONE),
        Mistake(sample(shift=-1, wrap=True), OFF_BY_ONE),
        Mistake(sample(alpha=True), ALPHA_NOT_BAR), Mistake(sample(first_t_only=True), MIXED_T)]))


def _post_mistakes(inputs, index):
    args = (inputs["betas"], inputs["t"], inputs["x0"], inputs["xt"])
    pick = lambda **kw: posterior(*args, **kw)[index]  # noqa: E731
    return [Mistake(pick(wrap=True), WRAPS), Mistake(pick(shift=+1), OFF_BY_ONE), Mistake(pick(shift=-1), OFF_BY_ONE)]


def post_mean_expected(inputs) -> dict:
    args = (inputs["betas"], inputs["t"], inputs["x0"], inputs["xt"])
    want = posterior(*args)[0]
    return expectation(want, _unique(want, [
        Mistake(posterior(*args, swap=True)[0], "the coefficients of x0 and x_t are swapped: x0's is "
                "sqrt(abar_{t-1}) beta_t / (1 - abar_t) and x_t's is sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)"),
        Mistake(posterior(*args, x0_coef_abar_t=True)[0], "x0's coefficient has sqrt(abar_t) where "
                "sqrt(abar_{t-1}) belongs: sqrt(abar_{t-1}) beta_t / (1 - abar_t)"),
        Mistake(posterior(*args, xt_coef_abar=True)[0], "x_t's coefficient has sqrt(abar_t) where sqrt(alpha_t) "
                "belongs: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)"),
        *_post_mistakes(inputs, 0)]))


def post_var_expected(inputs) -> dict:
    args = (inputs["betas"], inputs["t"], inputs["x0"], inputs["xt"])
    want = posterior(*args)[1]
    beta = np.broadcast_to(_col(np.asarray(inputs["betas"], np.float64)[np.asarray(inputs["t"]) - 1],
                                inputs["x0"]), want.shape)
    return expectation(want, _unique(want, [
        Mistake(np.sqrt(want), "that is the standard deviation: return the variance "
                               "beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t"),
        Mistake(beta, "that is beta_t (a variance DDPM may sample with): the posterior's is "
                      "beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t"),
        *_post_mistakes(inputs, 1)]))


REFERENCES = {"alpha_bar": alpha_bar_expected, "q_xt_mean": q_xt_mean_expected, "q_xt_var": q_xt_var_expected,
              "q_sample": q_sample_expected, "post_mean": post_mean_expected, "post_var": post_var_expected}


# ------------------------------------------------------------------ hidden checks
def long_schedule_alpha_bar(inputs, out):
    """T = 1000 in float64: abar_T is about 1e-125 here, so each entry is compared relative
    to itself (a float32 product underflows to 0)."""
    want = abar_full(inputs["betas"])[1:]
    got = np.asarray(out["value"], np.float64)
    if got.shape != want.shape:
        return False, f"alpha_bar(betas) has shape {got.shape}, expected {want.shape}"
    if np.all(np.isfinite(got)) and np.allclose(got, want, rtol=1e-6, atol=0):
        return True, "abar_t is right to the last of 1000 steps in float64"
    worst = int(np.argmax(np.abs(got - want) / want))
    hint = (": compute in the dtype of betas (float64 here): a float32 product underflows to 0"
            if got[worst] == 0 or out.get("dtype") != "float64" else "")
    return False, f"abar_{worst + 1} = {got[worst]:.4g}, expected {want[worst]:.4g}{hint}"


def both(mean_key, var_key):
    """Mean and variance together, on other shapes and dtypes."""
    mean_v = value_of("mean", "the mean", "")
    var_v = value_of("var", "the variance", "")
    refs = REFERENCES

    def verdict(inputs, out):
        for check, key in ((mean_v, mean_key), (var_v, var_key)):
            ok, message = check({**inputs, "expected": refs[key](inputs)}, out)
            if not ok:
                return ok, message
        return True, "mean and variance are correct"
    return verdict


def dtype_kept(verdict):
    def check(inputs, out):
        reports = [out[k] for k in ("mean", "var") if k in out] or [out]
        if any(r["dtype"] != inputs["dtype"] for r in reports):
            return False, (f"{inputs['dtype']} inputs gave {reports[0]['dtype']} outputs: compute in the "
                           "dtype of x0 and betas (no .float() or torch.tensor(..., dtype=torch.float32))")
        return verdict(inputs, out)
    return check


def sample_on_images(inputs, out):
    ok, message = draws_nothing(inputs, out)
    if not ok:
        return ok, message
    return value_of(None, "q_sample(x0, t, betas, noise)", "")({**inputs, "expected": q_sample_expected(inputs)}, out)


IMAGES = (5, 1, 28, 28)

HIDDEN = [
    Check(Q4A, ALPHA_BAR, "a long schedule (T = 1000) in float64", 0.5,
          design("random", 1000, (4, 3), "float64"), probes.alpha_bar_call, long_schedule_alpha_bar),
    Check(Q4A, Q_XT, "images, a cosine schedule with T = 1000, float64", 0.75,
          design("cosine", 1000, IMAGES, "float64"), probes.q_xt_given_x0_call,
          dtype_kept(both("q_xt_mean", "q_xt_var"))),
    Check(Q4A, Q_SAMPLE, "images, a linear schedule with T = 1000", 0.5,
          design("linear", 1000, IMAGES), probes.q_sample_call, sample_on_images),
    Check(Q4B, Q_POST, "images, a cosine schedule with T = 1000, float64", 0.5,
          design("cosine", 1000, IMAGES, "float64"), probes.q_posterior_call,
          dtype_kept(both("post_mean", "post_var"))),
    Check(Q4B, Q_POST, "vectors of another size, a linear schedule", 0.5,
          design("linear", 50, (9, 2, 5)), probes.q_posterior_call, both("post_mean", "post_var")),
]
