"""Public checks for Problem 2 (VAE). The grader runs these and its hidden checks."""
from __future__ import annotations

import numpy as np

from . import stats, vae_probes
from .core import Check, close, close_rel, describe_mismatch, expected_verdict, shape_guard

DELTA = stats.DELTA

NOTEBOOK, KEYWORD = "hw10_vae.ipynb", "vae"
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
    if any(shape_guard(out[n + "_shape"]) for n in ("nelbo", "kl", "rec")):
        return False, "nelbo, kl and rec must be scalars first"
    if not close(out["nelbo"], out["kl"] + out["rec"], rtol=1e-5, atol=1e-4):
        return False, (f"nelbo = {float(out['nelbo']):.6g} but kl + rec = "
                       f"{float(out['kl'] + out['rec']):.6g}: the negative ELBO is kl + rec")
    return True, "nelbo = kl + rec"


def noise_of(inputs, z):
    return (np.asarray(z, np.float64) - inputs["m"].astype(np.float64)) / np.sqrt(inputs["v"].astype(np.float64))


def _grad_v_exact(inputs, out):
    """The exact d(sum(w*z))/dv for the noise the student drew. The noise is rebuilt
    from z, so it must first have unit variance (a degenerate z = m + 1e-5 * eps would
    otherwise make both sides tiny); the comparison is then relative."""
    if out["shape"] != list(inputs["m"].shape):
        return False, "z must have the shape of m first"
    if out["grad_v"] is None or not np.any(out["grad_v"] != 0):
        return False, f"no gradient reaches v: {REPARAM_HINT}"
    eps = noise_of(inputs, out["zs"][0])
    want = inputs["w"] * eps / (2.0 * np.sqrt(inputs["v"].astype(np.float64)))
    if close_rel(out["grad_v"], 2 * want, rtol=2e-3):
        return False, ("the gradient w.r.t. v matches z = m + v * eps: v is the variance, so "
                       "scale the noise by its standard deviation, z = m + sqrt(v) * eps")
    on_scale, mean_square = stats.unit_variance(eps, DELTA)
    if not on_scale:
        return False, (f"(z - m) / sqrt(v) should be standard normal noise, but its mean square is "
                       f"{mean_square:.4g}, not 1: z = m + sqrt(v) * eps with eps ~ N(0, I)")
    if close_rel(out["grad_v"], want, rtol=2e-3):
        return True, "gradient w.r.t. v is correct"
    return False, ("for z = m + sqrt(v) * eps, d(sum(w*z))/dv = w * eps / (2 sqrt(v)); "
                   + describe_mismatch(out["grad_v"], want, "the gradient") + ".")


def scalar_of(out, name):
    problem = shape_guard(out[name + "_shape"], (), name, "average it over the batch (.mean())")
    if problem:
        raise ValueError(problem)
    return float(out[name])


def kl_verdict(inputs, out):
    return expected_verdict(scalar_of(out, "kl"), inputs["expected"], what="kl",
                            formula="mean over the batch of KL(q(z|x) || N(0, I))")


def rec_verdict(inputs, out):
    ok, message = expected_verdict(scalar_of(out, "rec"), inputs["expected"],
                                   what="with a decoder whose logits ignore z, rec",
                                   formula="mean over the batch of -log p(x|z)")
    return ok, ("reconstruction term is correct" if ok else message)


def _grad_through_sample(inputs, out):
    z_dim = inputs["z_dim"]
    grad = out["rec_grad_enc"]
    own = (" (this check calls your own sample_gaussian here: make its checks pass first)"
           if out.get("own_sampler") else "")
    if grad is None or not np.any(grad[:z_dim] != 0):
        return False, ("no gradient reaches the encoder through rec: decode z = sample_gaussian(m, v), "
                       "and do not detach it (no .detach(), no torch.no_grad())" + own)
    if not np.any(grad[z_dim:] != 0):
        return False, ("no gradient reaches the encoder's variance v through rec: decode a sample "
                       f"z = sample_gaussian(m, v), not the mean m ({REPARAM_HINT})" + own)
    return True, "gradients reach the encoder's mean and variance through the sample"


PUBLIC = [
    Check(Q2A, "sample_gaussian", "output has the shape of m", 0.5,
          lambda rng: gaussian_inputs(rng, (5, 3)), vae_probes.sample_gaussian_call, _shape_verdict),
    Check(Q2A, "sample_gaussian", "gradient w.r.t. m", 0.5,
          lambda rng: gaussian_inputs(rng, (2, 3, 4)), vae_probes.sample_gaussian_call, _grad_m_verdict),
    Check(Q2A, "sample_gaussian", "gradient reaches v", 0.5,
          lambda rng: gaussian_inputs(rng, (4, 3)), vae_probes.sample_gaussian_call, _grad_v_reaches),
    Check(Q2A, "sample_gaussian", "gradient w.r.t. v", 1.0,
          lambda rng: gaussian_inputs(rng, (40, 50)), vae_probes.sample_gaussian_call, _grad_v_exact,
          false_failure=DELTA),
    Check(Q2B, "negative_elbo_bound", "returns three scalars", 0.5,
          lambda rng: linear_vae_inputs(rng), vae_probes.negative_elbo_call, _three_scalars),
    Check(Q2B, "negative_elbo_bound", "nelbo = kl + rec", 0.5,
          lambda rng: linear_vae_inputs(rng), vae_probes.negative_elbo_call, _sum_consistent),
    Check(Q2B, "negative_elbo_bound", "KL term", 1.0,
          lambda rng: linear_vae_inputs(rng, z_dim=4, batch=8), vae_probes.negative_elbo_call, kl_verdict,
          reference="kl"),
    Check(Q2B, "negative_elbo_bound", "reconstruction term", 1.0,
          lambda rng: linear_vae_inputs(rng, z_dim=4, batch=8, decoder="constant"),
          vae_probes.negative_elbo_call, rec_verdict, reference="rec"),
    Check(Q2B, "negative_elbo_bound", "gradient flows through the sample", 0.5,
          lambda rng: linear_vae_inputs(rng, z_dim=3, batch=5), vae_probes.negative_elbo_call,
          _grad_through_sample),
]
