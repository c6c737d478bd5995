"""Probes for Problem 3 (GANs): they call the student's loss functions with a generator
and a discriminator that the check chose, and return plain data.

The generator ignores z: its i-th output is the i-th of the check's fake images (so how
the student draws z cannot change anything), and the discriminator is linear, so every
logit is known to the judge: ``d(x) = x.flatten(1) @ w + b``, shape (B,).
"""
from __future__ import annotations

import numpy as np

from .core import ProbeError
from .core import lookup as _lookup
from .core import tensor_out as _tensor_out
from .core import to_numpy as _np


def _networks(inputs: dict):
    import torch
    import torch.nn as nn

    class FixedGenerator(nn.Module):
        """g(z): (B, dim_z) -> (B, 1, 28, 28), the check's images whatever z is."""

        def __init__(self, images, dim_z):
            super().__init__()
            self.dim_z = dim_z
            self.images = nn.Parameter(torch.tensor(images))
            self.batches = []

        def forward(self, z):
            if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.dim_z:
                shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise ProbeError(f"g(z) needs z of shape (B, g.dim_z) = (B, {self.dim_z}), but got "
                                 f"{shape}: draw z = torch.randn(B, g.dim_z, device=device)")
            self.batches.append(int(z.shape[0]))
            idx = torch.arange(z.shape[0]) % self.images.shape[0]
            return self.images[idx]

    class LinearDiscriminator(nn.Module):
        """d(x): (B, 1, 28, 28) -> logits (B,)."""

        def __init__(self, w, b):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(w))
            self.b = nn.Parameter(torch.tensor(b))

        def forward(self, x):
            return x.reshape(x.shape[0], -1) @ self.w + self.b

    return (FixedGenerator(inputs["fake"], int(inputs["dim_z"])),
            LinearDiscriminator(inputs["w"], inputs["b"]))


def gan_loss_call(ns: dict, inputs: dict) -> dict:
    """Call ``inputs["target"](g, d, x_real, device=cpu)`` and report the loss, its
    shape, the batch sizes g was called with, and the loss's gradients with respect to
    the generator's images and the discriminator's weights (None where none flows)."""
    import torch

    fn = _lookup(ns, inputs["target"])
    g, d = _networks(inputs)
    x_real = torch.tensor(inputs["real"])
    loss = _tensor_out(fn(g, d, x_real, device=torch.device("cpu")), f"{inputs['target']}'s return value")
    out = {"shape": list(loss.shape), "value": _np(loss), "requires_grad": bool(loss.requires_grad),
           "g_batches": g.batches, "grad_images": None, "grad_w": None, "grad_b": None}
    if loss.requires_grad and loss.numel() == 1:
        grads = torch.autograd.grad(loss.sum(), [g.images, d.w, d.b], allow_unused=True)
        for key, grad in zip(("grad_images", "grad_w", "grad_b"), grads):
            out[key] = None if grad is None else _np(grad)
    return out


def logits_design(rng: np.random.Generator, real_logits, fake_logits, dim_z: int = 5) -> dict:
    """Images and a linear discriminator whose logits are exactly the given values:
    every image is noise in [0, 1] except pixel 0, a dial that sets its logit (w[0] = 1)."""
    real_logits = np.asarray(real_logits, np.float64)
    fake_logits = np.asarray(fake_logits, np.float64)
    w = rng.normal(0, 0.05, 784)
    w[0] = 1.0
    b = float(rng.normal(0, 0.5))

    def images(logits):
        x = rng.uniform(0, 1, (len(logits), 784))
        x[:, 0] = 0.0
        x[:, 0] = logits - (x @ w + b)
        return x.reshape(len(logits), 1, 28, 28).astype(np.float32)

    real, fake = images(real_logits), images(fake_logits)
    w32 = w.astype(np.float32)
    return {"real": real, "fake": fake, "w": w32, "b": np.float32(b), "dim_z": dim_z,
            # the logits as the float32 discriminator computes them (the reference uses these)
            "real_logits": real.reshape(len(real), -1).astype(np.float64) @ w32 + np.float32(b),
            "fake_logits": fake.reshape(len(fake), -1).astype(np.float64) @ w32 + np.float32(b)}
