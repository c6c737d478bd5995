"""Probes for Problem 3 (GANs): they call the student's loss functions with a generator
and a discriminator that the check chose, and return plain data. They hold no reference
values: the verdicts in ``gan.py`` (public) and the grader's hidden checks judge them.

The networks are called ``Generator`` and ``Discriminator``, like the course's, and refuse
every input the course's networks refuse, with the same kind of error:

* ``g(z)`` takes z of shape (B, g.dim_z), float32, on the networks' device (anything else
  raises torch's RuntimeError, or ValueError for a 1-D z or a batch of one, as BatchNorm
  does in training), records what it received, and returns the check's i-th fake image as
  its i-th output, whatever z is;
* ``d(x)`` takes images of shape (B, 1, 28, 28), float32, on the same device, and is
  linear: ``d(x) = x.flatten(1) @ w + b``, shape (B,), so every logit is known to the judge.

Every check runs the same probe on the same kinds of inputs (public and hidden alike):
the loss is called ``CALLS`` times on the CPU with the same networks (the first call's
value and gradients are reported, every call's z), then once more with the networks and
``x_real`` on the ``meta`` device, which holds no data: that call shows whether z (and
whatever else the loss creates) is put on ``device``. A CPU-only grader cannot tell
"on the CPU" from "on ``device``" otherwise.

An exception raised by the student's code is reported as data (the student's traceback,
as ``core.call_probe`` would word it); ``NotImplementedError`` and ``ProbeError``
propagate, so that ``call_probe`` reports an unfinished function once. What else escapes
this module is an internal error, never the student's.
"""
from __future__ import annotations

import functools

import numpy as np

from .core import ProbeError, student_traceback
from .core import lookup as _lookup
from .core import tensor_out as _tensor_out
from .core import to_numpy as _np

CALLS = 3                 # loss calls per probe on the CPU (z of each is reported)
Z_VALUES_MAX = 200_000    # z values reported per call at most (z of a right-sized batch is 6 400)


# ------------------------------------------------------------------ the networks
@functools.lru_cache(maxsize=None)
def _classes():
    import torch
    import torch.nn as nn

    def same_device(t, p):
        if t.device != p.device:
            raise RuntimeError(f"Tensor on device {t.device} is not on the expected device {p.device}!")

    class Generator(nn.Module):
        """g(z): (B, dim_z) -> (B, 1, 28, 28)."""

        def __init__(self, images, dim_z):
            super().__init__()
            self.dim_z = dim_z
            self.images = nn.Parameter(images)
            self.received = []  # per call: {"shape", "dtype", "device", "z"}

        def forward(self, z):
            self.received.append(_describe(z))
            if not isinstance(z, torch.Tensor):
                raise TypeError(f"linear(): argument 'input' (position 1) must be Tensor, not {type(z).__name__}")
            same_device(z, self.images)
            if z.dim() >= 1 and z.shape[-1] != self.dim_z:
                rows = int(np.prod(z.shape[:-1])) if z.dim() > 1 else 1
                raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{z.shape[-1]} and "
                                   f"{self.dim_z}x512)")
            if z.dim() == 0:
                raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
            if z.dtype != torch.float32:
                raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {_dtype_word(z.dtype)} and Float")
            if z.dim() == 1 or z.dim() > 3:
                raise ValueError(f"expected 2D or 3D input (got {z.dim()}D input)")
            if z.dim() == 3:
                raise RuntimeError(f"running_mean should contain {z.shape[1]} elements not 512")
            if z.shape[0] == 1:
                raise ValueError("Expected more than 1 value per channel when training, got input size "
                                 "torch.Size([1, 512])")
            idx = torch.arange(z.shape[0], device=self.images.device) % self.images.shape[0]
            return self.images[idx]

    class Discriminator(nn.Module):
        """d(x): (B, 1, 28, 28) -> logits (B,)."""

        def __init__(self, w, b):
            super().__init__()
            self.w = nn.Parameter(w)
            self.b = nn.Parameter(b)

        def forward(self, x):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"conv2d() received an invalid combination of arguments - got "
                                f"({type(x).__name__}, Parameter, Parameter, tuple, tuple, tuple, int)")
            same_device(x, self.w)
            if x.dim() not in (3, 4):
                raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of "
                                   f"size: {list(x.shape)}")
            if x.dim() == 3 or x.shape[1] != 1:
                batched = list(x.shape) if x.dim() == 4 else [1, *x.shape]
                raise RuntimeError(f"Given groups=1, weight of size [32, 1, 4, 4], expected input{batched} "
                                   f"to have 1 channels, but got {batched[1]} channels instead")
            if x.dtype != torch.float32:
                raise RuntimeError(f"Input type ({_dtype_word(x.dtype).lower()}) and bias type (float) should "
                                   "be the same")
            if tuple(x.shape[2:]) != (28, 28):
                raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({x.shape[0]}x"
                                   f"{64 * ((x.shape[2] + 2) // 4) * ((x.shape[3] + 2) // 4)} and 3136x512)")
            return x.reshape(x.shape[0], -1) @ self.w + self.b

    for cls in (Generator, Discriminator):
        cls.__qualname__ = cls.__name__
    return Generator, Discriminator


def _dtype_word(dtype) -> str:
    """torch's word for a dtype in its error messages: Double, Half, BFloat16, Long..."""
    import torch

    words = {torch.float64: "Double", torch.float16: "Half", torch.bfloat16: "BFloat16",
             torch.int64: "Long", torch.int32: "Int", torch.bool: "Bool", torch.uint8: "Byte"}
    return words.get(dtype, str(dtype).replace("torch.", "").capitalize())


def _describe(z) -> dict:
    """What g received: shape, dtype, device, and (on the CPU) the values."""
    import torch

    if not isinstance(z, torch.Tensor):
        return {"shape": None, "dtype": type(z).__name__, "device": None, "z": None}
    values = None
    if z.device.type == "cpu" and z.numel() <= Z_VALUES_MAX and not z.is_complex():
        values = z.detach().float().numpy().copy()
    return {"shape": list(z.shape), "dtype": str(z.dtype).replace("torch.", ""), "device": str(z.device),
            "z": values}


def _tensor(a):
    """A float32 CPU tensor of its own (torch.from_numpy of a copy: faster than torch.tensor)."""
    import torch

    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def _networks(inputs: dict, device):
    import torch

    Generator, Discriminator = _classes()
    fake, w, b = _tensor(inputs["fake"]), _tensor(inputs["w"]), _tensor(inputs["b"])
    if device.type != "cpu":
        fake, w, b = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (fake, w, b))
    return Generator(fake, int(inputs["dim_z"])), Discriminator(w, b)


# ------------------------------------------------------------------ calling the student
# The student's loss is called from a frame of its own, compiled here with neutral names,
# so that the frame right above the student's code is not this module's (the frames above
# it still are: see docs/checks.md, "Q3 checks").
_SCOPE: dict = {"__name__": "__main__"}
exec(compile("def step(loss, g, d, x, device):\n    return loss(g, d, x, device=device)\n", "<step>", "exec"),
     _SCOPE)
_step = _SCOPE["step"]


def _call(fn, target, g, d, x, device):
    """(loss, None), or (None, message) when the student's code raised."""
    try:
        return _step(fn, g, d, x, device), None
    except (NotImplementedError, ProbeError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the student's code raised
        return None, f"{target} raised an exception:\n{student_traceback(exc)}"


def _gradients(loss, g, d) -> dict:
    """Gradients of the loss w.r.t. g's images and d's weights, None where none flows;
    only tensors that still require grad are differentiated (a loss may freeze a network)."""
    import torch

    out = {"grad_images": None, "grad_w": None, "grad_b": None, "grad_error": None}
    live = [(key, p) for key, p in (("grad_images", g.images), ("grad_w", d.w), ("grad_b", d.b))
            if p.requires_grad]
    if not (loss.requires_grad and loss.numel() == 1 and live):
        return out
    try:
        grads = torch.autograd.grad(loss.sum(), [p for _, p in live], allow_unused=True)
    except RuntimeError as exc:  # e.g. the loss's graph was already freed by a .backward() inside
        out["grad_error"] = f"{type(exc).__name__}: {exc}"
        return out
    for (key, _), grad in zip(live, grads):
        out[key] = None if grad is None else _np(grad)
    return out


def _cpu_call(fn, target, inputs, cpu, report_gradients: bool) -> dict:
    import torch

    g, d = _networks(inputs, cpu)
    x_real = _tensor(inputs["real"])
    loss, error = _call(fn, target, g, d, x_real, cpu)
    out = {"error": error, "g_calls": g.received, "frozen_g": not g.images.requires_grad,
           "frozen_d": not d.w.requires_grad}
    if error is not None:
        return out
    loss = _tensor_out(loss, f"{target}'s return value")
    out.update(shape=list(loss.shape), requires_grad=bool(loss.requires_grad), numel=int(loss.numel()),
               value=_np(loss) if loss.device.type == "cpu" and loss.numel() <= 10_000 else None)
    if report_gradients:
        out.update(_gradients(loss, g, d))
    return out


def _meta_call(fn, target, inputs) -> dict:
    """The loss on the ``meta`` device: what g received there, and the error, if any."""
    import torch

    meta = torch.device("meta")
    g, d = _networks(inputs, meta)
    x_real = torch.empty(tuple(np.shape(inputs["real"])), dtype=torch.float32, device=meta)
    loss, error = _call(fn, target, g, d, x_real, meta)
    device = str(loss.device) if isinstance(loss, torch.Tensor) else None
    return {"error": error, "g_calls": [{k: v for k, v in r.items() if k != "z"} for r in g.received],
            "loss_device": device}


def gan_loss_call(ns: dict, inputs: dict) -> dict:
    """Call ``inputs["target"](g, d, x_real, device=...)`` ``CALLS`` times on the CPU with
    the same networks, then once on the meta device. Reports, per CPU call, the error (if
    any), the loss's shape and value, what g received (shape, dtype, device, values) and
    whether the loss froze a network; for the first call also the loss's gradients w.r.t.
    g's images and d's weights (None where none flows); and for the meta call what g
    received and the error."""
    import torch

    fn = _lookup(ns, inputs["target"])
    cpu = torch.device("cpu")
    calls = []
    for k in range(CALLS):
        calls.append(_cpu_call(fn, inputs["target"], inputs, cpu, report_gradients=k == 0))
        if calls[-1]["error"] is not None:
            break
    meta = _meta_call(fn, inputs["target"], inputs) if calls[0]["error"] is None else None
    return {"calls": calls, "meta": meta}


# ------------------------------------------------------------------ designs (judge side)
def logits_design(rng: np.random.Generator, real_logits, fake_logits, dim_z: int = 64) -> dict:
    """Images in [0, 1] and a linear discriminator whose logits are the given values: every
    pixel is noise in [0, 1] except pixel 0, a dial whose weight spans the logits' range
    (the bias centres it). The reference uses the logits as the float32 discriminator
    computes them from the float32 images (``real_logits``, ``fake_logits``)."""
    real_logits = np.asarray(real_logits, np.float64)
    fake_logits = np.asarray(fake_logits, np.float64)
    dial = 2.0 * (float(np.max(np.abs(np.concatenate([real_logits, fake_logits])))) + 4.0)
    w = rng.normal(0, 0.05, 784)
    w[1:] -= w[1:].mean()  # the noise pixels add about 0 on average
    w[0] = dial
    b = -dial / 2 + float(rng.normal(0, 0.5))
    w32, b32 = w.astype(np.float32), np.float32(b)

    def images(logits):
        x = rng.uniform(0, 1, (len(logits), 784))
        x[:, 0] = 0.0
        x[:, 0] = (logits - (x @ w + b)) / dial
        return np.clip(x, 0.0, 1.0).reshape(len(logits), 1, 28, 28).astype(np.float32)

    def logits_of(x):
        return x.reshape(len(x), -1).astype(np.float64) @ w32.astype(np.float64) + float(b32)

    real, fake = images(real_logits), images(fake_logits)
    return {"real": real, "fake": fake, "w": w32, "b": b32, "dim_z": int(dim_z),
            "real_logits": logits_of(real), "fake_logits": logits_of(fake)}
