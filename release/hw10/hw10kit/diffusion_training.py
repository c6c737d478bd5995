"""A DDPM on MNIST, trained and sampled with the student's own closed forms: shared by the
notebook (hw10_diffusion.ipynb, "Beyond the seed") and ``experiment.py --model diffusion``.

Conventions
-----------
* **Data range: [-1, 1].** MNIST's [0, 1] pixels are mapped to x0 = 2 p - 1, (B, 1, 28, 28),
  so that the data and the N(0, I) noise have comparable scales, as in Ho et al. (2020).
  Every image the kit hands back (samples, the forward and reverse chains) is mapped back
  to [0, 1] for grids and for the classifier metrics.
* **Time is 1-based**, as in the notebook: t in 1..T, ``betas[t-1]`` = beta_t, and the
  network is called as ``net(x_t, t)`` with the integer t.
* **The student's functions are arguments.** Training draws x_t with
  ``q_sample(x0, t, betas, noise)`` and the network learns to predict ``noise`` (the
  "eps" parameterisation, loss = mean squared error). The ancestral sampler recovers
  x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), clipped to [-1, 1], asks the
  student's ``q_posterior(x0_hat, x_t, t, betas)`` for (mean, var) of q(x_{t-1} | x_t, x0_hat)
  and steps x_{t-1} = mean + sqrt(var) z, with z = 0 at t = 1. The notebook passes its own
  functions; ``experiment.py`` reads them from the notebook (``Session.defined``).

The schedule: T = 100 steps of the cosine schedule (Nichol & Dhariwal, 2021)
---------------------------------------------------------------------------
The sampler takes one network evaluation per step, so T sets the sampling cost; 1000 steps
would make 200 samples cost about as much as the whole training run on a 2-core CPU. The
seed's linear schedule (beta from 1e-4 to 0.02) is tuned for T = 1000: cut to T = 200 it ends
at abar_T = 0.13, far from noise, so x_T ~ N(0, I) would not match what training saw. The
cosine schedule defines abar_t = f(t / T) / f(0) with f(u) = cos^2((u + s) / (1 + s) pi / 2)
(s = 0.008, each beta capped at 0.999), so *every* T spans the same noise levels, from
almost none (beta_1 = 6e-4 at T = 100) to pure noise (abar_T = 2e-7); it also spends fewer
steps than a linear schedule on nearly pure noise, which matters most for small images
like these. ``make_betas(T, "linear")`` gives the seed's linear schedule rescaled to T (beta
from 1e-4 * 1000 / T to 0.02 * 1000 / T, as Improved DDPM's code does), for comparison.

The network
-----------
A small U-Net (``UNet``): the 28 x 28 image is folded into 14 x 14 x 4 (``pixel_unshuffle``),
one residual block at 14 x 14 (``width`` channels), a strided convolution to 7 x 7 (2 x
``width``), three residual blocks there, nearest upsampling back to 14 x 14 with a skip
connection, and the result unfolded to 28 x 28 (``pixel_shuffle``). Residual blocks are
GroupNorm, SiLU, 3 x 3 convolution, plus the time embedding (sinusoidal features of t, then
an MLP), twice. Folding the image first halves the side of every feature map, so a full-
resolution level (the costliest on a CPU) is never computed: about 0.36 M parameters and
50 MFLOP per image at ``width`` = 32.

Speed habits (as the GAN's): MNIST preloaded on the training device as one tensor, fused
Adam, the loss read back every 50 steps, channels-last convolution weights, an exponential
moving average of the weights (the network handed back is the average), the CPU thread
count chosen for the load. Precision: ``"auto"`` is float32 for this model everywhere; bf16
autocast (``precision="bf16"``) was not measured for quality, because the machine this was
built on (AMD EPYC, AVX2) has no native bf16 and there bf16 autocast ran about 8x *slower*
than float32 (emulated). Sampling always runs in float32.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import training
from .training import LossError, average_decay, make_adam, weight_average
from .unfinished import Unfinished, guard

# --------------------------------------------------------------------- defaults

TIMESTEPS = 100          # T: diffusion steps, also the sampler's network evaluations per sample
SCHEDULE = "cosine"      # or "linear" (the seed's 1e-4..0.02, rescaled to T)
WIDTH = 32               # channels at 14 x 14 (twice that at 7 x 7)
BATCH_SIZE = 64
ITER_MAX = 3000          # the default run (docs/performance.md, "Diffusion training")
LR = 2e-3                # Adam's peak learning rate: warmed up over WARMUP steps, then cosine to 0
WARMUP = 100
EMA = 0.999              # the weight average's decay, capped for short runs (training.average_decay)
GRAD_CLIP = 1.0
LOSSES = {"loss": "noise prediction (mean squared error)"}
DIVERGED = ("Run the check cells of alpha_bar, q_xt_given_x0 and q_sample: training draws x_t with "
            "your q_sample.")
#: the default run's classifier Inception Score, mean of 3 seeds (bench/diffusion.json; short of the 8.2 target)
EXPECTED_IS, REAL_IS = 5.9, 9.64


# --------------------------------------------------------------------- schedules and data


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule (Nichol & Dhariwal, 2021): float64 (T,), betas[t-1] = beta_t with
    abar_t = f(t / T) / f(0), f(u) = cos^2((u + s) / (1 + s) * pi / 2), each beta capped at
    ``max_beta``. The same noise levels for every T."""
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def linear_betas(timesteps: int) -> torch.Tensor:
    """The seed's linear schedule, beta from 1e-4 to 0.02 at T = 1000, rescaled to T (both
    ends times 1000 / T) so that abar_T stays near 4e-5 for any T: float64 (T,)."""
    scale = 1000 / timesteps
    return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)


def make_betas(timesteps: int = TIMESTEPS, schedule: str = SCHEDULE) -> torch.Tensor:
    """betas (T,) as float32 of ``schedule`` ("cosine" or "linear")."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be at least 1, not {timesteps}")
    makers = {"cosine": cosine_betas, "linear": linear_betas}
    if schedule not in makers:
        raise ValueError(f"schedule must be 'cosine' or 'linear', not {schedule!r}")
    return makers[schedule](timesteps).float()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """MNIST pixels in [0, 1], (N, 784) or (N, 1, 28, 28) -> x0 in [-1, 1], (N, 1, 28, 28)."""
    return images.reshape(-1, 1, 28, 28).float() * 2 - 1


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    """x in [-1, 1] -> images in [0, 1] (clamped), for grids and the classifier."""
    return ((x.float() + 1) / 2).clamp(0, 1)


# --------------------------------------------------------------------- the network


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the time steps t (B,) (Transformer positions, as in DDPM): (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3 x 3 convolution, + the time embedding's projection; again without
    it; plus the input (a 1 x 1 convolution when the channels change)."""

    def __init__(self, cin: int, cout: int, tdim: int, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tdim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """eps_hat = net(x_t, t): x_t (B, 1, 28, 28) in the data's scale, t (B,) integers in
    1..T. A two-level U-Net on the image folded to 14 x 14 x 4 (module docstring)."""

    def __init__(self, width: int = WIDTH, mid_blocks: int = 2):
        super().__init__()
        if width < 8 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8 (GroupNorm's 8 groups), not {width}")
        c1, c2, tdim = width, 2 * width, 4 * width
        self.width = width
        self.embed = nn.Sequential(nn.Linear(width, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inp = nn.Conv2d(4, c1, 3, padding=1)
        self.down_block = ResBlock(c1, c1, tdim)
        self.down = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid = nn.ModuleList([ResBlock(c2, c2, tdim) for _ in range(mid_blocks + 1)])
        self.up_block = ResBlock(c2 + c1, c1, tdim)
        self.out_norm = nn.GroupNorm(8, c1)
        self.out = nn.Conv2d(c1, 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts by predicting eps = 0
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t):
        emb = F.silu(self.embed(timestep_features(t, self.width)))
        h1 = self.down_block(self.inp(F.pixel_unshuffle(x, 2)), emb)  # (B, c1, 14, 14)
        h = self.down(h1)                                              # (B, c2, 7, 7)
        for block in self.mid:
            h = block(h, emb)
        h = F.interpolate(h, size=h1.shape[-2:], mode="nearest")
        h = self.up_block(torch.cat([h, h1], dim=1), emb)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), 2).float()


# --------------------------------------------------------------------- training


def _shaped_like(value, like: torch.Tensor, what: str, fix: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.shape != like.shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise LossError(f"{what} returned {got}, expected a tensor of shape {tuple(like.shape)}: {fix}")
    return value


def ddpm_step(net, q_sample, betas, opt, device, dtype, grad_clip: float | None = GRAD_CLIP):
    """The step function: t ~ U{1..T}, eps ~ N(0, I), x_t = q_sample(x0, t, betas, eps)
    (the student's), loss = mean (net(x_t, t) - eps)^2, one Adam step (gradient norm clipped
    to ``grad_clip``). Batches are x0 in [-1, 1]."""
    T = betas.shape[0]

    def step(x0):
        t = torch.randint(1, T + 1, (x0.shape[0],), device=device)
        noise = torch.randn_like(x0)
        with torch.no_grad():
            xt = _shaped_like(q_sample(x0, t, betas, noise), x0, "q_sample",
                              "run the check cell of q_sample")
        with training.autocast(device, dtype):
            eps_hat = net(xt.float().contiguous(memory_format=torch.channels_last), t)
        loss = F.mse_loss(eps_hat.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        opt.step()
        return {"loss": loss, "lr": opt.param_groups[0]["lr"]}
    return step


def _warmup_cosine(opt, warmup: int, iter_max: int, decay: bool):
    warmup = max(0, min(warmup, iter_max - 1))

    def factor(i):  # i = steps taken so far
        if i < warmup:
            return (i + 1) / (warmup + 1)
        if not decay:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, iter_max - warmup)))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _precision_dtype(device, precision: str):
    """autocast dtype: "auto" and "fp32" -> None (float32); "bf16" -> the harness's bf16."""
    if precision == "auto":
        return None  # unmeasured for this model: float32 (module docstring)
    return training.autocast_dtype(device, precision)


@guard("Training")
def train_ddpm(net, train_images, q_sample, betas=None, *, iter_max: int = ITER_MAX,
               batch_size: int = BATCH_SIZE, lr: float = LR, warmup: int = WARMUP, lr_decay: bool = True,
               ema: float | None = EMA, grad_clip: float | None = GRAD_CLIP, seed: int | None = 0,
               device=None, progress: bool = True, log_every: int = 50, save_every: int | None = None,
               save_fn=None, precision: str = "auto", channels_last: bool = True, threads=None) -> dict:
    """Train ``net`` (``UNet``) to predict the noise that the student's ``q_sample`` added.

    Args:
        net: eps_hat = net(x_t, t); moved to ``device``.
        train_images: MNIST pixels in [0, 1], (N, 784) or (N, 1, 28, 28), ideally already on
            ``device`` (``hw10kit.data.load(..., device=device)``); mapped to [-1, 1] once.
        q_sample: the student's ``q_sample(x0, t, betas, noise)``.
        betas: (T,) schedule; default ``make_betas()`` (cosine, T = 100). Moved to the device
            as float32.
        iter_max, batch_size: Adam steps and images per step.
        lr, warmup, lr_decay: Adam's peak rate, its linear warm-up, then a cosine decay to 0.
        ema: decay of the weight average handed back (``training.average_decay`` caps it for
            short runs); None hands back the last step's weights.
        grad_clip: the gradient norm is clipped to this (None: not clipped).
        seed: seeds torch's global RNG (batches, t, eps) before training.
        save_fn: ``save_fn(net, iteration)`` every ``save_every`` steps and at the end.
        precision: "auto" (float32 for this model), "fp32", or "bf16" (autocast).
        channels_last, threads: as ``gan_training.train_gan``.

    Returns:
        the history (``training.fit``'s format): ``{"iteration", "loss", "lr", "losses",
        "seconds", "precision", "threads", "ema", "timesteps"}``.

    Raises:
        Unfinished: the student's q_sample raises NotImplementedError.
        LossError: q_sample returned something not shaped like x0.
        FloatingPointError: the loss became NaN or infinite.
    """
    if iter_max < 1:
        raise ValueError(f"iter_max must be at least 1, not {iter_max}")
    device = training.training_device(device, net)
    if seed is not None:
        torch.manual_seed(seed)
    betas = (make_betas() if betas is None else betas).to(device=device, dtype=torch.float32)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net.to(device, memory_format=layout).train()
    dtype = _precision_dtype(device, precision)
    data = to_model_range(training.on_device(train_images, device, (-1, 1, 28, 28)))
    opt = make_adam(list(net.parameters()), lr, device)
    schedulers = [_warmup_cosine(opt, warmup, iter_max, lr_decay)]
    ema = None if ema is None else average_decay(ema, iter_max)
    save = None if save_fn is None else (lambda it: save_fn(net, it))
    history = training.fit(
        ddpm_step(net, q_sample, betas, opt, device, dtype, grad_clip), training.batches(data, batch_size),
        iter_max=iter_max, losses=LOSSES, device=device, hint=DIVERGED,
        precision="bf16" if dtype is not None else "fp32", log_every=log_every, progress=progress,
        desc="DDPM", schedulers=schedulers, average=None if ema is None else (net, weight_average(net, ema)),
        save_every=save_every, save=save, threads=threads)
    net.eval()
    history["ema"] = ema
    history["timesteps"] = int(betas.shape[0])
    return history


# --------------------------------------------------------------------- sampling


def _device_generator(device, seed):
    device = torch.device(device)
    kind = device.type if device.type in ("cpu", "cuda") else "cpu"
    gen = torch.Generator(device=kind)
    if seed is not None:
        gen.manual_seed(seed)
    return gen, kind


def _randn(shape, gen, kind, device):
    return torch.randn(shape, generator=gen, device=kind).to(device)


@torch.no_grad()
def reverse_chain(net, q_posterior, betas, n: int, *, seed: int | None = 0, device=None, record=(),
                  clip: bool = True, progress: bool = False, threads=None):
    """Ancestral sampling of ``n`` images: x_T ~ N(0, I), then for t = T..1: eps_hat =
    net(x_t, t), x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) (clipped to [-1, 1]
    when ``clip``), (mean, var) = q_posterior(x0_hat, x_t, t, betas) (the student's), and
    x_{t-1} = mean + sqrt(var) z (z = 0 at t = 1).

    Returns (x_0 in [-1, 1], {t: x_t on the CPU for every t in ``record``}); t = T is x_T
    itself, t = 0 the result. Float32 throughout, on ``device`` (default: the network's)."""
    device = torch.device(device) if device is not None else training.module_device(net)
    betas = betas.to(device=device, dtype=torch.float32)
    T = betas.shape[0]
    abar = torch.cumprod(1 - betas.double(), 0).float()
    gen, kind = _device_generator(device, seed)
    was_training = net.training
    net.eval()
    kept = {}
    bar = training.progress_bar(T, "sampling", progress)
    try:
        with training.using_threads(training.choose_threads(threads, device)):
            x = _randn((n, 1, 28, 28), gen, kind, device)
            for t in range(T, 0, -1):
                if t in record:
                    kept[t] = x.cpu()
                tt = torch.full((n,), t, dtype=torch.long, device=device)
                eps = net(x.contiguous(memory_format=torch.channels_last), tt).float()
                x0_hat = (x - (1 - abar[t - 1]).sqrt() * eps) / abar[t - 1].sqrt()
                if clip:
                    x0_hat = x0_hat.clamp(-1, 1)
                out = q_posterior(x0_hat, x, tt, betas)
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise LossError("q_posterior must return (mean, var): run its check cell")
                mean = _shaped_like(out[0], x, "q_posterior's mean", "run its check cell")
                var = _shaped_like(out[1], x, "q_posterior's variance", "run its check cell")
                x = mean.float()
                if t > 1:
                    x = x + var.float().clamp(min=0).sqrt() * _randn(x.shape, gen, kind, device)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        net.train(was_training)
    if 0 in record:
        kept[0] = x.cpu()
    return x, kept


@guard("Sampling")
def samples(net, q_posterior, betas=None, n: int = 200, *, seed: int | None = 0, device=None,
            batch_size: int = 500, progress: bool = False, threads=None) -> torch.Tensor:
    """``n`` unconditional samples, (n, 1, 28, 28) in [0, 1] on the CPU, drawn in batches of
    ``batch_size`` by ``reverse_chain`` with the student's ``q_posterior``."""
    betas = make_betas() if betas is None else betas
    out = []
    for k, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        x, _ = reverse_chain(net, q_posterior, betas, size, device=device, progress=progress, threads=threads,
                             seed=None if seed is None else seed * 100003 + k)
        out.append(to_image_range(x).cpu())
    return torch.cat(out)


@guard("The reverse process")
def reverse_process(net, q_posterior, betas=None, n: int = 8, steps=None, *, seed: int | None = 0,
                    device=None) -> tuple:
    """x_t along one reverse chain of ``n`` samples at the time steps ``steps`` (default:
    T, 3T/4, T/2, T/4, T/10, T/20 and 0), as images in [0, 1]: ``(steps, tensor (len(steps),
    n, 1, 28, 28))``. Pixels of x_t beyond [-1, 1] are clipped for display."""
    betas = make_betas() if betas is None else betas
    T = betas.shape[0]
    steps = sorted({T, *(int(round(T * f)) for f in (0.75, 0.5, 0.25, 0.1, 0.05)), 0}, reverse=True) \
        if steps is None else list(steps)
    _, kept = reverse_chain(net, q_posterior, betas, n, seed=seed, device=device, record=set(steps))
    return steps, torch.stack([to_image_range(kept[t]) for t in steps])


@guard("The forward process")
def forward_process(images, q_sample, betas=None, steps=None, *, seed: int | None = 0) -> tuple:
    """x_t = q_sample(x0, t, betas, eps) for a few digits ``images`` ([0, 1]) at the time
    steps ``steps`` (default: 0, T/20, T/10, T/4, T/2, 3T/4, T), with the same eps at every t:
    ``(steps, tensor (len(steps), n, 1, 28, 28))`` in [0, 1] (x_t clipped to [-1, 1] for
    display). t = 0 is x0 itself."""
    betas = make_betas() if betas is None else betas
    T = betas.shape[0]
    steps = sorted({0, *(int(round(T * f)) for f in (0.05, 0.1, 0.25, 0.5, 0.75)), T}) \
        if steps is None else list(steps)
    x0 = to_model_range(images.detach().float().cpu())
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    noise = torch.randn(x0.shape, generator=gen)
    rows = []
    for t in steps:
        if t == 0:
            rows.append(x0)
            continue
        tt = torch.full((x0.shape[0],), t, dtype=torch.long)
        rows.append(_shaped_like(q_sample(x0, tt, betas.float().cpu(), noise), x0, "q_sample",
                                 "run the check cell of q_sample").float())
    return steps, torch.stack([to_image_range(r) for r in rows])


def show_rows(rows: torch.Tensor, steps, title: str = "", path=None):
    """Plot ``rows`` (len(steps), n, 1, 28, 28) in [0, 1]: one column per time step, one row
    per sample. Returns the matplotlib figure (saved to ``path`` when given)."""
    import matplotlib.pyplot as plt

    k, n = rows.shape[0], rows.shape[1]
    grid = training.save_grid(rows.transpose(0, 1).reshape(-1, 1, 28, 28), None, cols=k, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(1.1 * k, 1.1 * n + 0.6))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([2 + 30 * i + 14 for i in range(k)], [f"t = {t}" for t in steps])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=120)
    return fig


def sample_grid(net, q_posterior, betas=None, path=None, rows: int = 10, cols: int = 20,
                seed: int | None = 0, device=None) -> tuple:
    """``rows * cols`` samples drawn once, tiled ``cols`` to a row (saved as a PNG at
    ``path`` when given): ``(grid as (H, W) numpy in [0, 1], the samples)``."""
    imgs = samples(net, q_posterior, betas, rows * cols, seed=seed, device=device)
    return training.save_grid(imgs, path, cols=cols, pad_value=1.0), imgs


def plot_loss(history: dict, path=None, smooth: int = 100, title: str = "DDPM training"):
    """``training.plot_history`` of ``train_ddpm``'s history (saved to ``path`` when given)."""
    return training.plot_history(history, path, smooth=smooth, title=title, ylabel="mean squared error")


# --------------------------------------------------------------------- experiment.py --model diffusion


def expectation(inception_score: float, iter_max: int, timesteps: int) -> str:
    """What a correct run reaches, and a pointer to the checks when the result is far off."""
    if EXPECTED_IS is None:
        said = f"The course staff publish a correct run's figures (real digits reach {REAL_IS:g})."
    else:
        said = (f"A correct run of the default ({ITER_MAX} iterations, T = {TIMESTEPS}) reaches a classifier "
                f"Inception Score of about {EXPECTED_IS:g} (real digits: {REAL_IS:g}); fewer iterations reach less.")
    if inception_score != inception_score or (iter_max >= ITER_MAX and timesteps >= TIMESTEPS
                                              and inception_score < 4):
        said += (f" Yours is {inception_score:.2f}, far from that: run the check cells of q_sample and "
                 "q_posterior (the variance, not the standard deviation; t is 1-based).")
    return said


def run_experiment(session) -> int:
    """``experiment.py --model diffusion``: train the U-Net with the notebook's q_sample,
    sample with its q_posterior, write checkpoints, the loss curve and 200 samples, and print
    the classifier Inception Score and Frechet distance of ``--num_scored`` samples."""
    from . import classifier as clf
    from . import sample_metrics as sm

    a = session.args
    q_sample, q_posterior = session.defined("q_sample"), session.defined("q_posterior")
    device = session.device
    train_images, _ = session.load("train")
    session.seed()
    betas = make_betas(a.timesteps, a.schedule)
    net = UNet(width=a.width)
    print(f"Training a DDPM (U-Net width {a.width}, T = {a.timesteps}, {a.schedule} schedule, batches of "
          f"{a.batch_size}) from {session.notebook.name} on {device} for {a.iter_max} iterations; writing to "
          f"{session.run_dir}", flush=True)
    config = {"width": a.width, "timesteps": a.timesteps, "schedule": a.schedule}
    history = session.train(lambda: train_ddpm(
        net, train_images, q_sample, betas, iter_max=a.iter_max, batch_size=a.batch_size, seed=a.runid,
        device=device, progress=not a.no_progress, save_every=a.iter_save,
        save_fn=lambda n_, it: session.checkpoint({"net": n_.state_dict(), "betas": betas, **config}, it),
        threads=session.threads))
    started = time.perf_counter()
    try:
        grid = samples(net, q_posterior, betas, 200, seed=a.runid, threads=session.threads)
    except Unfinished as exc:
        raise training.ExperimentFailed(f"`{exc.name}` in {session.notebook.name} is not implemented yet: fill "
                                        "it in, run its check cell, save the notebook, and run again") from None
    except LossError as exc:
        raise training.ExperimentFailed(str(exc)) from None
    sampled = time.perf_counter() - started
    session.write_outputs(history, grid, what="DDPM", ylabel="mean squared error", pad_value=1.0)
    print(f"200 samples ({a.timesteps} steps each) in {sampled:.0f} s", flush=True)
    if a.num_scored:
        test_images, _ = session.load("test", device="cpu")
        scored = samples(net, q_posterior, betas, a.num_scored, seed=10_000 + a.runid, threads=session.threads)
        quality = sm.report(scored, test_images, clf.load(session.data_root()))
        print(f"Classifier Inception Score of {a.num_scored} samples: {quality['is'][0]:.2f} "
              f"(real test digits: {quality['is_reference'][0]:.2f}; 10 is the most)")
        print(f"Frechet distance to the test digits (classifier features): {quality['fd']:.2f} (0 is identical)")
        print(expectation(quality["is"][0], a.iter_max, a.timesteps), flush=True)
    return 0


EXPERIMENT = training.Experiment(
    summary=("trains a small U-Net DDPM (eps prediction) with the notebook's q_sample and samples it "
             "ancestrally with its q_posterior (cosine schedule, T = 100 by default; Adam 2e-3 with "
             "warm-up and cosine decay; the network kept is the moving average of its weights), then prints "
             "the classifier Inception Score and Frechet distance of --num_scored samples. --num_latents "
             "does not apply."),
    run=run_experiment,
    defaults={"iter_max": ITER_MAX, "iter_save": ITER_MAX},
    options=(
        training.Option("--timesteps", "T, the diffusion steps (also the sampler's steps)", TIMESTEPS, int,
                        positive=True),
        training.Option("--schedule", "the noise schedule: cosine, or the seed's linear one rescaled to T",
                        SCHEDULE, choices=("cosine", "linear")),
        training.Option("--width", "the U-Net's channels at 14 x 14 (twice that at 7 x 7)", WIDTH, int,
                        positive=True),
        training.Option("--batch_size", "images per training step", BATCH_SIZE, int, positive=True),
        training.Option("--num_scored", "samples scored by the classifier metrics (0: none)", 1000, int),
        # No --precision: this model trains in float32 (bf16 unmeasured, module docstring), and
        # experiment.py's --help cannot hold two models' options of one name (argparse conflict).
    ))
