"""Hidden checks for Problem 2 (VAE). Judge side only: reference values and
thresholds never enter the process that runs student code.

Stochastic checks state their false-failure bound (``false_failure``); each relies
only on the distribution of the student's output, never on which random calls made it.
"""
from __future__ import annotations

import numpy as np
from hw10kit.checks import stats, vae_probes
from hw10kit.checks.core import Check, Mistake, expectation, softplus
from hw10kit.checks.vae import (Q2A, Q2B, noise_of, kl_verdict, rec_verdict, scalar_of, gaussian_inputs,
                                linear_vae_inputs)

DELTA = stats.DELTA


# ---------------------------------------------------------------- references (judge side only)
def encode(inputs, x):
    """The probe's linear encoder: (m, v) = (x A + a, softplus(x B + b) + 1e-8)."""
    x = np.asarray(x, np.float64)
    m = x @ inputs["A"].astype(np.float64) + inputs["a"]
    v = softplus(x @ inputs["B"].astype(np.float64) + inputs["b"]) + 1e-8
    return m, v


def kl_reference(inputs) -> float:
    m, v = encode(inputs, inputs["x"])
    return float(np.mean(0.5 * np.sum(-np.log(v) + v + m**2 - 1.0, axis=1)))


def rec_of_logits(x, logits):
    """-log Bern(x | sigmoid(logits)) summed over pixels, per example."""
    return np.sum(softplus(logits) - x * logits, axis=-1)


def kl_expected(inputs) -> dict:
    want, batch = kl_reference(inputs), inputs["x"].shape[0]
    return expectation(want, [Mistake(0.0, "the KL term is missing"),
                              Mistake(-want, "it has the wrong sign: KL(q || p) is non-negative"),
                              Mistake(want * batch, "it is summed over the batch: average it (.mean())")])


def rec_expected(inputs) -> dict:
    """rec for a decoder whose logits are the constant c (z is ignored)."""
    x, c = inputs["x"].astype(np.float64), inputs["c"].astype(np.float64)
    want = float(np.mean(rec_of_logits(x, c)))
    sig = 1.0 / (1.0 + np.exp(-c))
    return expectation(want, [
        Mistake(float(np.mean(rec_of_logits(x, sig))), "it matches sigmoid applied before a with-logits "
                "loss: pass the decoder's logits to log_bernoulli_with_logits directly"),
        Mistake(-want, "it has the wrong sign: rec = -log p(x|z) is non-negative"),
        Mistake(want * x.shape[0], "it is summed over the batch: average it (.mean())")])


#: Reference values by key (``Check.reference``): computed here, sent to no sandbox.
REFERENCES = {"kl": kl_expected, "rec": rec_expected}


# ---------------------------------------------------------------- sample_gaussian
def _normal_samples(inputs, out):
    """eps = (z - m) / sqrt(v) must be iid N(0, 1): its mean, sum of squares and
    empirical CDF are each tested at level DELTA / 3 (union bound: DELTA)."""
    if out["shape"] != list(inputs["m"].shape):
        return False, "z must have the shape of m first"
    eps = noise_of(inputs, out["zs"][0]).ravel()
    if not np.all(np.isfinite(eps)):
        return False, "z contains NaN or inf"
    n, d = eps.size, DELTA / 3
    mean, sumsq, ks = float(eps.mean()), float(np.sum(eps**2)), stats.ks_distance_to_normal(eps)
    lo, hi = stats.chi2_bounds(n, d)
    mean_ok, var_ok, shape_ok = abs(mean) <= stats.mean_bound(n, d), lo <= sumsq <= hi, ks <= stats.dkw_bound(n, d)
    if mean_ok and var_ok and shape_ok:
        return True, f"samples follow N(m, v) ({n} draws)"
    problems = []
    v = inputs["v"].astype(np.float64).ravel()
    dev2 = (np.asarray(out["zs"][0], np.float64).ravel() - inputs["m"].ravel()) ** 2
    slope = np.polyfit(np.log(v), np.log(dev2 + 1e-300), 1)[0] if np.all(dev2 > 0) else 0.0
    if slope > 1.5:  # the likeliest cause first
        problems.append("the spread of z - m grows like v, not sqrt(v): v is the variance, "
                        "so z = m + sqrt(v) * eps")
    if not mean_ok:
        problems.append(f"(z - m)/sqrt(v) has mean {mean:.4f}, expected 0")
    if not var_ok:
        problems.append(f"(z - m)/sqrt(v) has variance {sumsq / n:.4f}, expected 1")
    if not shape_ok:
        hint = "; use torch.randn, not torch.rand" if mean_ok and var_ok else ""
        problems.append(f"(z - m)/sqrt(v) is not normally distributed (Kolmogorov-Smirnov distance "
                        f"{ks:.4f}){hint}")
    return False, "; ".join(problems)


def _fresh_noise(inputs, out):
    if out["shape"] != list(inputs["m"].shape):
        return False, "z must have the shape of m first"
    eps = noise_of(inputs, out["zs"][0])
    if np.unique(eps.round(6), axis=0).shape[0] < eps.shape[0]:
        return False, ("some rows of the noise are identical: draw independent noise for every "
                       "element, with m's full shape (e.g. torch.randn_like(m))")
    if np.unique(eps.round(6).T, axis=0).shape[0] < eps.shape[1]:
        return False, ("some columns of the noise are identical: draw independent noise for every "
                       "element, with m's full shape (e.g. torch.randn_like(m))")
    if np.array_equal(out["zs"][0], out["zs"][1]):
        return False, ("two calls with the same m and v returned the same z: draw new noise on every "
                       "call (and don't reseed inside the function)")
    return True, "fresh noise for every element and every call"


# ---------------------------------------------------------------- negative_elbo_bound
# Design for the sampling check: z_dim = 2, q(z|x) = N(mu, diag(var)) for every x,
# logits = C z + c with C non-zero on a few pixels only.
SAMPLE_ROWS = 16000
ACTIVE_PIXELS = 6


def sampled_rec_inputs(rng: np.random.Generator) -> dict:
    d = linear_vae_inputs(rng, z_dim=2, batch=1)
    d["A"][:] = 0
    d["B"][:] = 0
    d["a"] = rng.uniform(-1, 1, 2).astype(np.float32)
    var = np.array([rng.uniform(3, 5), rng.uniform(0.15, 0.3)])
    d["b"] = np.log(np.expm1(var)).astype(np.float32)  # softplus(b) = var
    d["C"] = np.zeros((2, 784), np.float32)
    pixels = rng.choice(784, ACTIVE_PIXELS, replace=False)
    d["C"][:, pixels] = (rng.choice([-1, 1], (2, ACTIVE_PIXELS)) * rng.uniform(1.5, 2.5, (2, ACTIVE_PIXELS)))
    # Centre the active logits near 0, where softplus bends most: the gap between a
    # sample and the mean (z = m) is then large against the tolerance.
    d["c"][pixels] = -(d["a"] @ d["C"][:, pixels]) + rng.normal(0, 0.2, ACTIVE_PIXELS)
    d["repeat"] = SAMPLE_ROWS
    return d


def expected_rec(inputs, var_scale=lambda v: v) -> float:
    """E over z ~ N(mu, diag(var)) of -log p(x|z), exactly (Gauss-Hermite per pixel)."""
    x = inputs["x"].astype(np.float64).ravel()
    mu, var = encode(inputs, inputs["x"][:1])
    mu, var = mu.ravel(), var_scale(var.ravel())
    C, c = inputs["C"].astype(np.float64), inputs["c"].astype(np.float64)
    loc, scale = mu @ C + c, np.sqrt((C**2).T @ var)
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()
    e_softplus = softplus(loc[:, None] + scale[:, None] * nodes[None, :]) @ weights
    return float(np.sum(e_softplus - x * loc))


def sampled_rec_tolerance(inputs) -> float:
    """rec is a mean of SAMPLE_ROWS iid f(xi), f Lipschitz in xi ~ N(0, I) with
    L <= ||C_S diag(sqrt(var))||_2 * sqrt(|S|) (sigmoid - x is in [-1, 1])."""
    _, var = encode(inputs, inputs["x"][:1])
    C = inputs["C"].astype(np.float64)
    active = np.any(C != 0, axis=0)
    lip = np.linalg.norm(np.sqrt(var.ravel())[:, None] * C[:, active], 2) * np.sqrt(active.sum())
    return stats.lipschitz_mean_bound(lip, SAMPLE_ROWS, DELTA)


def _sampled_rec_verdict(inputs, out):
    rec = scalar_of(out, "rec")
    want, tol = expected_rec(inputs), sampled_rec_tolerance(inputs)
    if abs(rec - want) <= tol:
        return True, "rec is computed from a sample z ~ q(z|x)"
    mu, _ = encode(inputs, inputs["x"][:1])
    at_mean = float(rec_of_logits(inputs["x"][0].astype(np.float64),
                                   mu.ravel() @ inputs["C"].astype(np.float64) + inputs["c"]))
    hint = ""
    if abs(rec - at_mean) <= 1e-3 * max(1.0, abs(at_mean)):
        hint = (" It equals rec at z = m, the mean of q(z|x): decode a sample "
                "z = sample_gaussian(m, v) instead.")
    elif abs(rec - expected_rec(inputs, lambda v: v**2)) <= tol:
        hint = " It matches noise scaled by v instead of sqrt(v): v is the variance."
    return False, (f"over {SAMPLE_ROWS} copies of one image, rec = {rec:.4f}, but a sample "
                   f"z ~ q(z|x) gives {want:.4f} +- {tol:.4f}.{hint}")


HIDDEN = [
    Check(Q2A, "sample_gaussian", "samples follow N(m, v) with v the variance", 1.0,
          lambda rng: gaussian_inputs(rng, (400, 500)), vae_probes.sample_gaussian_call,
          _normal_samples, false_failure=DELTA),
    Check(Q2A, "sample_gaussian", "fresh noise for every element and call", 0.5,
          lambda rng: gaussian_inputs(rng, (64, 32), calls=2), vae_probes.sample_gaussian_call,
          _fresh_noise, false_failure=1e-30),
    Check(Q2B, "negative_elbo_bound", "KL term on other shapes", 0.5,
          lambda rng: linear_vae_inputs(rng, z_dim=7, batch=3), vae_probes.negative_elbo_call, kl_verdict,
          reference="kl"),
    Check(Q2B, "negative_elbo_bound", "reconstruction term on other shapes", 0.5,
          lambda rng: linear_vae_inputs(rng, z_dim=2, batch=11, decoder="constant"),
          vae_probes.negative_elbo_call, rec_verdict, reference="rec"),
    Check(Q2B, "negative_elbo_bound", "rec uses one sample z ~ q(z|x)", 1.5,
          sampled_rec_inputs, vae_probes.negative_elbo_call, _sampled_rec_verdict, false_failure=DELTA),
]
