"""GAN training shared by the notebook (hw10_gan.ipynb) and ``experiment.py --model gan``.

Conventions: images are float32 in [0, 1] everywhere (the data, the generator's sigmoid
output, what D sees, the sample grid), shaped (B, 1, 28, 28). ``g.dim_z`` is the latent size; ``g(z)``
maps (B, dim_z) to images; ``d(x)`` returns logits (B,), D = sigmoid(logits).

Step order: each iteration takes one discriminator step, then one generator step, each
on a graph built from the parameters as they are at that moment: the discriminator's
loss sees the generator's samples detached, and the generator's loss runs the updated
discriminator on fresh samples. Nothing is kept across steps (no ``retain_graph``).
During each step only the network being stepped has ``requires_grad`` set, so autograd
neither records the other network's forward nor computes its weight gradients, which
would be thrown away (the generator step still backpropagates through D to its input).

Precision: ``"auto"`` by default: bfloat16 on CPUs that compute it natively (AVX512-BF16
or AMX, like the course's build machine), float32 elsewhere. In bf16 the networks run under
``torch.autocast``, about 2x faster on the course's 2-core CPU, with their outputs cast back
to float32, so the losses, the optimizer state and the weights stay float32. Sample quality
matched float32's in the benchmark (README, "GAN training"). On a GPU "auto" keeps float32:
bf16 was neither timed nor checked for quality there (``precision="bf16"`` asks for it);
``precision="fp32"`` turns bf16 off everywhere.
"""
from __future__ import annotations

import time
import warnings

import torch
import torch.nn as nn

from .unfinished import guard
from .vae_training import make_adam, pick_device  # noqa: F401  (pick_device: one home for both)


class Generator(nn.Module):
    """The course's generator: z (B, dim_z) -> images (B, 1, 28, 28) in (0, 1).

    One change from the course: a sigmoid on the last convolution, so that the samples lie
    in the data's range. The course's unbounded output gave pixels below 0 and above 1 (up
    to 2.3 measured), which no real digit has. The sigmoid alone does not stop the mode
    collapse of the course's recipe; ``train_gan``'s optimizer settings do (README, "GAN
    training")."""

    def __init__(self, dim_z: int = 64):
        super().__init__()
        self.dim_z = dim_z
        self.fc = nn.Sequential(
            nn.Linear(dim_z, 512), nn.BatchNorm1d(512), nn.ReLU(),
            nn.Linear(512, 64 * 7 * 7), nn.BatchNorm1d(64 * 7 * 7), nn.ReLU())
        self.conv = nn.Sequential(
            nn.PixelShuffle(2), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.PixelShuffle(2), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, z):
        return torch.sigmoid(self.conv(self.fc(z).view(-1, 64, 7, 7)).float())


class Discriminator(nn.Module):
    """The course's discriminator: images (B, 1, 28, 28) -> logits (B,)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 1))

    def forward(self, x):
        return self.net(x).squeeze(1).float()


CPU_BF16_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # in torch.cpu


def fast_bf16(device) -> bool:
    """Whether ``device`` is a CPU that runs bfloat16 matmuls and convolutions natively,
    where bf16 autocast was measured to pay and to keep sample quality."""
    if torch.device(device).type != "cpu":
        return False
    return any(getattr(torch.cpu, name, lambda: False)() for name in CPU_BF16_PROBES)


def autocast_dtype(device, precision: str = "auto"):
    """The autocast dtype for ``precision`` ("auto", "bf16" or "fp32") on ``device``, or
    None for plain float32."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', not {precision!r}")
    if precision == "fp32":
        return None
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        if precision == "bf16":
            warnings.warn(f"bf16 autocast is not used on {kind}: training in float32")
        return None
    if precision == "bf16" or fast_bf16(device):
        return torch.bfloat16
    return None


def _batches(images, batch_size: int, generator: torch.Generator | None):
    """Endless batches: each epoch a fresh permutation of the preloaded images."""
    n = images.shape[0]
    while True:
        order = torch.randperm(n, device=images.device, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield images[order[start:start + batch_size]]


LR_D, LR_G = 2e-4, 1e-3  # Adam's learning rates; the course used 1e-3 for both
BETAS = (0.5, 0.999)  # Adam's (beta1, beta2) for both networks; the course used PyTorch's (0.9, 0.999)
EMA_DECAY = 0.9995  # the generator handed back averages its weights over about the last 1 / (1 - decay) steps


def _records_gradients(learner: nn.Module, frozen: nn.Module) -> None:
    frozen.requires_grad_(False)
    learner.requires_grad_(True)


def average_decay(ema: float, iter_max: int) -> float:
    """The decay the weight average uses in a run of ``iter_max`` steps: ``ema``, capped at
    1 - 5 / iter_max so that the first step's weights (the average starts from them, barely
    trained) keep at most e^-5 of the average, however short the run. 10 000 steps keep
    0.9995; 1000 steps use 0.995."""
    return max(0.0, min(ema, 1 - 5 / iter_max))


def weight_average(g, decay: float = EMA_DECAY):
    """An exponential moving average of ``g``'s weights (``torch.optim.swa_utils.AveragedModel``):
    call ``.update_parameters(g)`` after each step; the average is in ``.module``."""
    return torch.optim.swa_utils.AveragedModel(g, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay))


@torch.no_grad()
def recalibrate_batchnorm(g, batches: int = 100, batch_size: int = 100, seed: int = 0) -> None:
    """Recompute ``g``'s BatchNorm running statistics for its current weights, from
    ``batches`` batches of fresh z (a generator of its own: torch's global RNG is untouched).
    Needed after averaging weights: the running statistics tracked during training belong
    to the raw weights, not to their average."""
    device = next(g.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    zs = [torch.randn(batch_size, g.dim_z, generator=gen).to(device) for _ in range(batches)]
    torch.optim.swa_utils.update_bn(zs, g)


def _needs_gradient(loss, whose: str, net: str) -> None:
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        raise ValueError(f"the {whose} loss has no gradient with respect to {net}'s parameters, so "
                         f"it cannot train {net}: run its check cell")


@guard("Training")
def train_gan(g, d, train_images, loss_d, loss_g, *, iter_max: int = 10000, batch_size: int = 100,
              lr_d: float = LR_D, lr_g: float = LR_G, betas=BETAS, lr_decay: bool = True,
              ema: float | None = EMA_DECAY, seed: int | None = 0,
              device=None, progress: bool = True,
              log_every: int = 50, save_every: int | None = None, save_fn=None,
              precision: str = "auto", channels_last: bool = True) -> dict:
    """Train ``g`` and ``d`` with the student's losses, batches of 100 by default.

    The default recipe is the course's (Adam at 1e-3 for both networks, beta1 = 0.9) with
    measured changes: beta1 = 0.5, the discriminator at 2e-4 while the generator keeps
    1e-3, and both rates decayed linearly to 0, so that D stays close to G instead of
    running ahead (its loss stays around 1.2; 2 log 2 = 1.39 at the optimum). With the
    course's settings D pulls ahead and the generator collapses onto a few digits (README,
    "GAN training"). At the end ``g`` holds the exponential moving average of its weights
    over the run (``ema``), with its BatchNorm statistics recomputed for those weights:
    the averaged generator draws cleaner digits than the last step's.

    Args:
        g, d: the networks (moved to ``device``).
        train_images: float32 (N, 784) or (N, 1, 28, 28) in [0, 1], ideally already on
            ``device`` (``hw10kit.data.load(..., device=device)``); no DataLoader is used.
        loss_d, loss_g: ``loss(g, d, x_real, device=device) -> scalar``, e.g. the
            notebook's ``loss_nonsaturating_d`` and ``loss_nonsaturating_g``.
        iter_max: iterations, each one discriminator step then one generator step.
        lr_d, lr_g: Adam's learning rates for the discriminator and the generator.
        betas: Adam's (beta1, beta2), the same for both networks.
        lr_decay: decay both learning rates linearly to 0 over ``iter_max``.
        ema: the decay of the generator's weight average, updated after every generator
            step (``torch.optim.swa_utils``), capped for short runs (``average_decay``);
            None hands back the last step's weights.
        seed: seeds torch's global RNG (batches and z) before training.
        log_every: the losses are read back to the host every this many steps only.
        save_fn: called as ``save_fn(g, d, iteration)`` every ``save_every`` iterations
            (with the raw weights) and at the end (with the generator handed back).
        precision: "auto" (the default: bf16 on a CPU that computes it natively, see
            ``fast_bf16``), "bf16" (autocast) or "fp32".
        channels_last: store convolution weights channels-last (faster on CPUs).

    Returns:
        ``{"iteration": [...], "loss_d": [...], "loss_g": [...], "lr_g": [...], "seconds": s,
        "precision": "fp32" or "bf16", "ema": the decay used}``, the losses and the generator's learning rate of
        every step.
    """
    if iter_max < 1:
        raise ValueError(f"iter_max must be at least 1, not {iter_max}")
    device = torch.device(device) if device is not None else pick_device()
    if seed is not None:
        torch.manual_seed(seed)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    g.to(device, memory_format=layout).train()
    d.to(device, memory_format=layout).train()
    dtype = autocast_dtype(device, precision)
    data = train_images.to(device=device, dtype=torch.float32).reshape(-1, 1, 28, 28)
    opt_d = make_adam(list(d.parameters()), lr_d, device, betas)
    opt_g = make_adam(list(g.parameters()), lr_g, device, betas)
    schedules = [torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, iter_max) for opt in (opt_d, opt_g)] \
        if lr_decay else []
    ema = None if ema is None else average_decay(ema, iter_max)
    average = None if ema is None else weight_average(g, ema)
    losses = torch.zeros(iter_max, 2, device=device)
    rates = []
    batches = _batches(data, batch_size, None)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=iter_max, desc="GAN", unit="it", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        for i in range(iter_max):
            x = next(batches)
            _records_gradients(d, frozen=g)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                ld = loss_d(g, d, x, device=device)
            _needs_gradient(ld, "discriminator's", "d")
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            _records_gradients(g, frozen=d)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                lg = loss_g(g, d, x, device=device)
            _needs_gradient(lg, "generator's", "g")
            opt_g.zero_grad(set_to_none=True)
            lg.backward()
            opt_g.step()
            if average is not None:
                average.update_parameters(g)
            rates.append(opt_g.param_groups[0]["lr"])
            for schedule in schedules:
                schedule.step()
            losses[i, 0], losses[i, 1] = ld.detach(), lg.detach()
            if bar is not None and ((i + 1) % log_every == 0 or i + 1 == iter_max):
                recent = losses[max(0, i + 1 - log_every):i + 1].mean(0).tolist()
                bar.update((i + 1) - bar.n)
                bar.set_postfix(loss_d=f"{recent[0]:.3f}", loss_g=f"{recent[1]:.3f}")
            if save_fn is not None and save_every and (i + 1) % save_every == 0 and i + 1 < iter_max:
                save_fn(g, d, i + 1)
    finally:
        g.requires_grad_(True)
        d.requires_grad_(True)
        if bar is not None:
            bar.close()
    if average is not None:
        with torch.no_grad():
            for mine, averaged in zip(g.parameters(), average.module.parameters()):
                mine.copy_(averaged)
        recalibrate_batchnorm(g)
    if save_fn is not None and save_every:
        save_fn(g, d, iter_max)
    seconds = time.perf_counter() - started
    values = losses.cpu()
    if not torch.isfinite(values).all():
        raise FloatingPointError("a GAN loss became NaN or infinite: run the check cells for the losses "
                                 "(are they computed from the logits with F.logsigmoid or F.softplus?)")
    return {"iteration": list(range(1, iter_max + 1)), "loss_d": values[:, 0].tolist(),
            "loss_g": values[:, 1].tolist(), "lr_g": rates, "seconds": seconds,
            "precision": "bf16" if dtype is not None else "fp32", "ema": ema}


@torch.no_grad()
def samples(g, n: int = 200, seed: int | None = 0, device=None):
    """``n`` images x = g(z), z ~ N(0, I), clamped to [0, 1], on the CPU: (n, 1, 28, 28)."""
    device = next(g.parameters()).device if device is None else device
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    was_training = g.training
    g.eval()
    z = torch.randn(n, g.dim_z, generator=gen).to(device)
    out = g(z).clamp(0, 1).cpu()
    g.train(was_training)
    return out


def sample_grid(g, rows: int = 10, cols: int = 20, seed: int | None = 0):
    """A (rows * 30, cols * 30) grey image of rows x cols samples, values in [0, 1]."""
    from torchvision.utils import make_grid

    grid = make_grid(samples(g, rows * cols, seed), nrow=cols, padding=2, pad_value=1.0)
    return grid[0].numpy()


def save_sample_grid(g, path, rows: int = 10, cols: int = 20, seed: int | None = 0):
    """Save the grid of ``sample_grid`` as a PNG; returns the grid."""
    from torchvision.utils import save_image

    imgs = samples(g, rows * cols, seed)
    save_image(imgs, str(path), nrow=cols, padding=2, pad_value=1.0)
    return sample_grid(g, rows, cols, seed)


def plot_losses(history: dict, path=None, smooth: int = 100, title: str = "GAN training"):
    """Both losses against the iteration (a running mean over ``smooth`` steps); saved
    to ``path`` when given. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, label in (("loss_d", "discriminator"), ("loss_g", "generator")):
        values = np.asarray(history[key], dtype=np.float64)
        k = max(1, min(smooth, len(values)))
        smoothed = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(values) + 1), smoothed, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"loss (running mean of {smooth})")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
