"""Probes for Problem 2 (VAE): they call the student's code and return plain data.

They run beside the student's code (the notebook kernel, or the grader's sandbox)
and hold no reference values: the verdicts that judge their outputs do.
"""
from __future__ import annotations

import numpy as np

from .core import ProbeError, lookup as _lookup, to_numpy as _np, tensor_out as _tensor_out

try:  # the grader's copy of the kit only: the student release leaves it out (it answers Q2(a))
    from .stand_ins import sample_gaussian as STAND_IN_SAMPLER
except ImportError:  # a student's kit: negative_elbo_bound is probed with their own sampler
    STAND_IN_SAMPLER = None


def sample_gaussian_call(ns: dict, inputs: dict) -> dict:
    """Call ``sample_gaussian(m, v)`` ``calls`` times (default 1) with m, v requiring
    grad, back-propagate ``sum(w * z)`` of the first call, and report z of each call,
    the gradients (None when absent) and whether z depends on m and v in the graph."""
    import torch

    fn = _lookup(ns, "sample_gaussian")
    m = torch.tensor(inputs["m"], requires_grad=True)
    v = torch.tensor(inputs["v"], requires_grad=True)
    zs = []
    for _ in range(int(inputs.get("calls", 1))):
        z = _tensor_out(fn(m, v), "sample_gaussian's return value")
        zs.append(z)
    z = zs[0]
    out = {"shape": list(z.shape), "zs": [_np(t) for t in zs], "requires_grad": bool(z.requires_grad),
           "grad_m": None, "grad_v": None}
    if z.requires_grad and tuple(z.shape) == tuple(m.shape):
        w = torch.tensor(inputs["w"], dtype=z.dtype)
        gm, gv = torch.autograd.grad((z * w).sum(), [m, v], allow_unused=True)
        out["grad_m"] = None if gm is None else _np(gm)
        out["grad_v"] = None if gv is None else _np(gv)
    return out


def _linear_vae(ns: dict, inputs: dict):
    """The student's VAE with its encoder and decoder swapped for linear maps whose
    weights the check chose (the student's networks are not graded):
    encode(x) = (x A + a, softplus(x B + b) + 1e-8), decode(z) = z C + c (logits)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    z_dim = int(inputs["z_dim"])
    VAE = _lookup(ns, "VAE")
    model = VAE(z_dim)

    class LinearEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.z_dim = z_dim
            self.net = nn.Linear(784, 2 * z_dim)
            with torch.no_grad():
                self.net.weight.copy_(torch.tensor(np.concatenate([inputs["A"], inputs["B"]], 1).T))
                self.net.bias.copy_(torch.tensor(np.concatenate([inputs["a"], inputs["b"]])))

        def encode(self, x):
            h = self.net(x)
            return h[..., :z_dim], F.softplus(h[..., z_dim:]) + 1e-8

        forward = encode

    class LinearDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.z_dim = z_dim
            self.net = nn.Linear(z_dim, 784)
            with torch.no_grad():
                self.net.weight.copy_(torch.tensor(inputs["C"].T))
                self.net.bias.copy_(torch.tensor(inputs["c"]))

        def decode(self, z):
            return self.net(z)

        forward = decode

    model.enc, model.dec = LinearEncoder(), LinearDecoder()
    return model


def negative_elbo_call(ns: dict, inputs: dict) -> dict:
    """Build the VAE with linear networks and (in the grader) a stand-in ``sample_gaussian``
    in the namespace, call ``negative_elbo_bound(x)`` where x is
    ``inputs["x"]`` (batch, 784), or one row repeated ``inputs["repeat"]`` times, and
    report the three returned values, their shapes, and the gradients of rec and kl
    with respect to the encoder's weights."""
    import torch

    model = _linear_vae(ns, inputs)
    x = torch.tensor(inputs["x"])
    if inputs.get("repeat"):
        x = x.reshape(1, -1).repeat(int(inputs["repeat"]), 1)
    missing = object()
    saved = ns.get("sample_gaussian", missing)
    if STAND_IN_SAMPLER is not None:  # so that a broken Q2(a) costs only Q2(a)'s points
        ns["sample_gaussian"] = STAND_IN_SAMPLER
    try:
        result = model.negative_elbo_bound(x)
    finally:  # the notebook's own namespace must come back as it was
        if saved is missing:
            ns.pop("sample_gaussian", None)
        else:
            ns["sample_gaussian"] = saved
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise ProbeError("negative_elbo_bound should return a tuple (nelbo, kl, rec), but it returned "
                         f"{type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    names = ("nelbo", "kl", "rec")
    tensors = [_tensor_out(t, f"{n} (item {i} of the returned tuple)") for i, (n, t) in enumerate(zip(names, result))]
    out = {f"{n}_shape": list(t.shape) for n, t in zip(names, tensors)}
    out["own_sampler"] = STAND_IN_SAMPLER is None
    out.update({n: _np(t) for n, t in zip(names, tensors)})
    weight = model.enc.net.weight
    for n, t in zip(("kl", "rec"), tensors[1:]):
        grad = None
        if t.requires_grad:
            (grad,) = torch.autograd.grad(t.sum(), [weight], allow_unused=True, retain_graph=True)
        out[f"{n}_grad_enc"] = None if grad is None else _np(grad)
    return out
