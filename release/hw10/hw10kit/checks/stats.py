"""Rigorous tail bounds for stochastic checks.

Each helper returns a threshold that a correct implementation exceeds with
probability at most ``delta`` (default ``DELTA = 1e-9``), whatever random calls the
implementation made: the bounds rely only on the distribution of its output.
"""
from __future__ import annotations

import math

import numpy as np

DELTA = 1e-9


def normal_cdf(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def mean_bound(n: int, delta: float = DELTA) -> float:
    """|mean of n iid N(0,1)| exceeds this with probability delta (exact Gaussian tail,
    via the Chernoff bound 2 exp(-n t^2 / 2))."""
    return math.sqrt(2.0 * math.log(2.0 / delta) / n)


def chi2_bounds(n: int, delta: float = DELTA) -> tuple[float, float]:
    """(low, high) for the sum of n squared iid N(0,1), each side failing with
    probability at most delta/2 (Laurent & Massart 2000, Lemma 1)."""
    x = math.log(2.0 / delta)
    return n - 2.0 * math.sqrt(n * x), n + 2.0 * math.sqrt(n * x) + 2.0 * x


def dkw_bound(n: int, delta: float = DELTA) -> float:
    """sup |empirical CDF - true CDF| over n iid draws exceeds this with probability at
    most delta (Dvoretzky-Kiefer-Wolfowitz, Massart's constant)."""
    return math.sqrt(math.log(2.0 / delta) / (2.0 * n))


def ks_distance_to_normal(samples) -> float:
    """Kolmogorov-Smirnov distance between the samples' empirical CDF and N(0, 1)."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = x.size
    cdf = normal_cdf(x)
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


def lipschitz_mean_bound(lipschitz: float, n: int, delta: float = DELTA) -> float:
    """For f L-Lipschitz in a standard normal vector, the mean of n iid f(xi) deviates
    from E f by more than this with probability at most delta (Gaussian concentration:
    P(|mean - E f| >= t) <= 2 exp(-n t^2 / (2 L^2)))."""
    return lipschitz * math.sqrt(2.0 * math.log(2.0 / delta) / n)


def unit_variance(samples, delta: float = DELTA) -> tuple:
    """(ok, mean square) for samples that should be iid N(0, 1): the mean square lies
    inside the Laurent-Massart bounds unless the samples are on the wrong scale. A check
    that rebuilds noise from a student's output calls this before comparing anything,
    so that a degenerate answer (noise scaled by 1e-6, or none) cannot pass by being
    small on both sides."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        return False, float("nan")
    lo, hi = chi2_bounds(x.size, delta)
    sumsq = float(np.sum(x**2))
    return lo <= sumsq <= hi, sumsq / x.size
