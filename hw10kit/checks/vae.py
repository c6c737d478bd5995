"""Public checks for Problem 2 (VAE). The grader runs these and its hidden checks."""
from __future__ import annotations

import numpy as np

from . import vae_probes
from .core import Check, close, describe_mismatch

Q2A, Q2B = "Q2(a)", "Q2(b)"
REPARAM_HINT = ("draw eps ~ N(0, I) (e.g. torch.randn_like(m)) and return m + sqrt(v) * eps, "
                "so that gradients flow back to m and v (the reparameterization trick)")


def gaussian_inputs(rng: np.random.Generator, shape=(4, 3), calls: int = 1) -> dict:
    """m ~ U(-2, 2); v (a variance) log-uniform in [0.1, 10]; w: weights for backward."""
    return {"m": rng.uniform(-2, 2, shape).astype(np.float32),
            "v": np.exp(rng.uniform(np.log(0.1), np.log(10.0), shape)).astype(np.float32),
            "w": rng.normal(size=shape).astype(np.float32), "calls": calls}


def linear_vae_inputs(rng: np.random.Generator, z_dim: int = 3, batch: int = 6,
                      decoder: str = "random") -> dict:
    """Weights for the linear encoder/decoder of ``vae_probes._linear_vae`` and a
    binary batch x (batch, 784). ``decoder="constant"`` makes the logits ignore z."""
    x = (rng.uniform(size=(batch, 784)) < 0.3).astype(np.float32)
    d = {"z_dim": z_dim, "x": x,
         "A": rng.normal(0, 0.05, (784, z_dim)).astype(np.float32),
         "a": rng.normal(0, 1.0, z_dim).astype(np.float32),
         "B": rng.normal(0, 0.05, (784, z_dim)).astype(np.float32),
         "b": rng.normal(0, 1.0, z_dim).astype(np.float32),
         "C": rng.normal(0, 0.5, (z_dim, 784)).astype(np.float32),
         "c": rng.normal(0, 1.0, 784).astype(np.float32)}
    if decoder == "constant":
        d["C"] = np.zeros_like(d["C"])
    return d


def _shape_verdict(inputs, out):
    want = list(inputs["m"].shape)
    if out["shape"] != want:
        return False, f"z has shape {tuple(out['shape'])}, expected {tuple(want)} (the shape of m)"
    return True, f"z has the shape of m, {tuple(want)}"


def _grad_m_verdict(inputs, out):
    if not out["requires_grad"] or out["grad_m"] is None or not np.any(out["grad_m"] != 0):
        return False, f"no gradient reaches m: {REPARAM_HINT}"
    if not close(out["grad_m"], inputs["w"], rtol=1e-4, atol=1e-5):
        return False, ("d(sum(w*z))/dm should equal w (z moves one-for-one with m); "
                       + describe_mismatch(out["grad_m"], inputs["w"], "the gradient"))
    return True, "gradient w.r.t. m is correct"


def _grad_v_reaches(inputs, out):
    g = out["grad_v"]
    if not out["requires_grad"] or g is None or not np.any(g != 0):
        return False, f"no gradient reaches v: {REPARAM_HINT}"
    if not np.all(np.isfinite(g)):
        return False, "the gradient w.r.t. v contains NaN or inf"
    return True, "gradients reach v"


def _three_scalars(inputs, out):
    bad = [f"{n} has shape {tuple(out[n + '_shape'])}" for n in ("nelbo", "kl", "rec") if out[n + "_shape"] != []]
    if bad:
        return False, ("; ".join(bad) + ": each should be a scalar averaged over the batch, "
                       "e.g. kl_per_example.mean()")
    return True, "nelbo, kl and rec are scalars"


def _sum_consistent(inputs, out):
    if any(out[n + "_shape"] != [] for n in ("nelbo", "kl", "rec")):
        return False, "nelbo, kl and rec must be scalars first"
    if not close(out["nelbo"], out["kl"] + out["rec"], rtol=1e-5, atol=1e-4):
        return False, (f"nelbo = {float(out['nelbo']):.6g} but kl + rec = "
                       f"{float(out['kl'] + out['rec']):.6g}: the negative ELBO is kl + rec")
    return True, "nelbo = kl + rec"


PUBLIC = [
    Check(Q2A, "sample_gaussian", "output has the shape of m", 0.5,
          lambda rng: gaussian_inputs(rng, (5, 3)), vae_probes.sample_gaussian_call, _shape_verdict),
    Check(Q2A, "sample_gaussian", "gradient w.r.t. m", 0.5,
          lambda rng: gaussian_inputs(rng, (2, 3, 4)), vae_probes.sample_gaussian_call, _grad_m_verdict),
    Check(Q2A, "sample_gaussian", "gradient reaches v", 0.5,
          lambda rng: gaussian_inputs(rng, (4, 3)), vae_probes.sample_gaussian_call, _grad_v_reaches),
    Check(Q2B, "negative_elbo_bound", "returns three scalars", 0.5,
          lambda rng: linear_vae_inputs(rng), vae_probes.negative_elbo_call, _three_scalars),
    Check(Q2B, "negative_elbo_bound", "nelbo = kl + rec", 0.5,
          lambda rng: linear_vae_inputs(rng), vae_probes.negative_elbo_call, _sum_consistent),
]
