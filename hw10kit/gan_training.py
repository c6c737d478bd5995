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
matched float32's in the benchmark (docs/performance.md, "GAN training"). On a GPU "auto" keeps float32:
bf16 was neither timed nor checked for quality there (``precision="bf16"`` asks for it);
``precision="fp32"`` turns bf16 off everywhere.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import training
from .training import (CPU_BF16_PROBES, EMA_DECAY, LossError, autocast_dtype, average_decay,  # noqa: F401
                       fast_bf16, make_adam, pick_device, weight_average)  # one home: training
from .unfinished import guard


class Generator(nn.Module):
    """The course's generator: z (B, dim_z) -> images (B, 1, 28, 28) in (0, 1).

    One change from the course: a sigmoid on the last convolution, so that the samples lie
    in the data's range. The course's unbounded output gave pixels below 0 and above 1 (up
    to 2.3 measured), which no real digit has. The sigmoid alone does not stop the mode
    collapse of the course's recipe; ``train_gan``'s optimizer settings do (docs/training.md, "GAN
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


LR_D, LR_G = 2e-4, 1e-3  # Adam's learning rates; the course used 1e-3 for both
BETAS = (0.5, 0.999)  # Adam's (beta1, beta2) for both networks; the course used PyTorch's (0.9, 0.999)
LOSSES = {"loss_d": "discriminator", "loss_g": "generator"}  # what train_gan's history records and plots
DIVERGED = ("Run the check cells for the losses (are they computed from the logits with "
            "F.logsigmoid or F.softplus?).")


def _records_gradients(learner: nn.Module, frozen: nn.Module) -> None:
    frozen.requires_grad_(False)
    learner.requires_grad_(True)


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
        raise LossError(f"the {whose} loss has no gradient with respect to {net}'s parameters, so "
                         f"it cannot train {net}: run its check cell")


@guard("Training")
def train_gan(g, d, train_images, loss_d, loss_g, *, iter_max: int = 10000, batch_size: int = 100,
              lr_d: float = LR_D, lr_g: float = LR_G, betas=BETAS, lr_decay: bool = True,
              ema: float | None = EMA_DECAY, seed: int | None = 0,
              device=None, progress: bool = True,
              log_every: int = 50, save_every: int | None = None, save_fn=None,
              precision: str = "auto", channels_last: bool = True, threads=None) -> dict:
    """Train ``g`` and ``d`` with the student's losses, batches of 100 by default.

    The default recipe is the course's (Adam at 1e-3 for both networks, beta1 = 0.9) with
    measured changes: beta1 = 0.5, the discriminator at 2e-4 while the generator keeps
    1e-3, and both rates decayed linearly to 0, so that D stays close to G instead of
    running ahead (its loss stays around 1.2; 2 log 2 = 1.39 at the optimum). With the
    course's settings D pulls ahead and the generator collapses onto a few digits (docs/performance.md,
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
        log_every: the losses are read back to the host every this many steps only: the
            bar's running means and the NaN guard (a loss that turns NaN or infinite stops
            training within ``log_every`` steps with FloatingPointError).
        save_fn: called as ``save_fn(g, d, iteration)`` every ``save_every`` iterations
            (with the raw weights) and at the end (with the generator handed back).
        precision: "auto" (the default: bf16 on a CPU that computes it natively, see
            ``fast_bf16``), "bf16" (autocast) or "fp32".
        channels_last: store convolution weights channels-last (faster on CPUs).
        threads: CPU threads during training, a number or "auto" (``training.choose_threads``);
            None (the default): ``$HW10_THREADS``, else "auto".

    Returns:
        the history (``training.fit``'s format): ``{"iteration": [...], "loss_d": [...],
        "loss_g": [...], "lr_g": [...], "losses": LOSSES, "seconds": s, "precision": "fp32"
        or "bf16", "threads": n, "ema": the decay used}``, the losses and the generator's
        learning rate of every step.

    Raises:
        LossError (a ValueError): a loss has no gradient with respect to its network.
        FloatingPointError: a loss became NaN or infinite.
    """
    if iter_max < 1:
        raise ValueError(f"iter_max must be at least 1, not {iter_max}")
    device = training.training_device(device, g, d)
    if seed is not None:
        torch.manual_seed(seed)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    g.to(device, memory_format=layout).train()
    d.to(device, memory_format=layout).train()
    dtype = autocast_dtype(device, precision)
    data = training.on_device(train_images, device, (-1, 1, 28, 28))
    opt_d = make_adam(list(d.parameters()), lr_d, device, betas)
    opt_g = make_adam(list(g.parameters()), lr_g, device, betas)
    schedulers = [torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, iter_max) for opt in (opt_d, opt_g)] \
        if lr_decay else []
    ema = None if ema is None else average_decay(ema, iter_max)
    save = None if save_fn is None else (lambda it: save_fn(g, d, it))
    try:
        history = training.fit(
            gan_step(g, d, loss_d, loss_g, opt_d, opt_g, device, dtype), training.batches(data, batch_size),
            iter_max=iter_max, losses=LOSSES, device=device, hint=DIVERGED,
            precision="bf16" if dtype is not None else "fp32", log_every=log_every, progress=progress,
            desc="GAN", schedulers=schedulers, average=None if ema is None else (g, weight_average(g, ema)),
            finish=None if ema is None else (lambda: recalibrate_batchnorm(g)), save_every=save_every, save=save, threads=threads)
    finally:
        g.requires_grad_(True)
        d.requires_grad_(True)
    history["ema"] = ema
    return history


def gan_step(g, d, loss_d, loss_g, opt_d, opt_g, device, dtype):
    """The step function: one discriminator step, then one generator step through the
    updated discriminator, each recording gradients of its own network only, the losses
    under autocast to ``dtype`` (None: float32). Returns both losses and the generator's
    learning rate of the step."""
    def step(x):
        _records_gradients(d, frozen=g)
        with training.autocast(device, dtype):
            ld = loss_d(g, d, x, device=device)
        _needs_gradient(ld, "discriminator's", "d")
        opt_d.zero_grad(set_to_none=True)
        ld.backward()
        opt_d.step()
        _records_gradients(g, frozen=d)
        with training.autocast(device, dtype):
            lg = loss_g(g, d, x, device=device)
        _needs_gradient(lg, "generator's", "g")
        opt_g.zero_grad(set_to_none=True)
        lg.backward()
        opt_g.step()
        return {"loss_d": ld, "loss_g": lg, "lr_g": opt_g.param_groups[0]["lr"]}
    return step


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
    """A (rows * 30 + 2, cols * 30 + 2) grey image of rows x cols samples, values in [0, 1]."""
    return training.save_grid(samples(g, rows * cols, seed), None, cols=cols, pad_value=1.0)


def save_sample_grid(g, path, rows: int = 10, cols: int = 20, seed: int | None = 0):
    """Save the grid of ``sample_grid`` as a PNG (samples drawn once); returns the grid."""
    return training.save_grid(samples(g, rows * cols, seed), path, cols=cols, pad_value=1.0)


def plot_losses(history: dict, path=None, smooth: int = 100, title: str = "GAN training"):
    """``training.plot_history`` for ``train_gan``'s history: both losses per iteration
    with their running means over ``smooth`` steps; saved to ``path`` when given.
    Returns the matplotlib figure."""
    return training.plot_history(history, path, smooth=smooth, title=title, ylabel="loss")


# --------------------------------------------------------------------- experiment.py --model gan

#: What the bundle's recipe reaches after 10 000 iterations (bench/gan.json: seeds 0 to 2).
EXPECTED_IS, REAL_IS = 8.7, 9.64


def expectation(inception_score: float, iter_max: int) -> str:
    """What a correct GAN reaches, and a pointer to the checks when the result is far off."""
    said = (f"A correct GAN reaches a classifier Inception Score of about {EXPECTED_IS:g} (real digits: "
            f"{REAL_IS:g}) after 10 000 iterations (lower after fewer).")
    if inception_score != inception_score or (iter_max >= 10000 and inception_score < 6):
        said += (f" Yours is {inception_score:.2f}, far from that: run the check cells for the losses "
                 "(labels, signs, the detach in the discriminator's loss).")
    return said


def run_experiment(session) -> int:
    """``experiment.py --model gan``: train the course's networks with the notebook's
    losses, write checkpoints, the loss curves and samples, and print the classifier
    Inception Score and Frechet distance of 10 000 samples and what a correct GAN reaches."""
    from . import classifier as clf
    from . import sample_metrics as sm

    a = session.args
    loss_d = session.defined("loss_nonsaturating_d")
    loss_g = session.defined("loss_nonsaturating_g" if a.loss_g == "nonsaturating" else "loss_minimax_g")
    device = session.device
    train_images, _ = session.load("train")
    session.seed()
    g, d = Generator(dim_z=a.num_latents), Discriminator()
    print(f"Training a GAN (z_dim={a.num_latents}, {a.loss_g} generator loss) from {session.notebook.name} "
          f"on {device} for {a.iter_max} iterations; writing to {session.run_dir}", flush=True)
    history = session.train(lambda: train_gan(
        g, d, train_images, loss_d, loss_g, iter_max=a.iter_max, seed=a.runid, device=device,
        progress=not a.no_progress, save_every=a.iter_save,
        save_fn=lambda g_, d_, it: session.checkpoint({"g": g_.state_dict(), "d": d_.state_dict()}, it),
        precision=a.precision, threads=session.threads))
    session.write_outputs(history, samples(g, 200, seed=a.runid), what="GAN", pad_value=1.0)
    last = slice(-500, None)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"Mean losses over the last 500 iterations: discriminator {mean(history['loss_d'][last]):.4f}, "
          f"generator {mean(history['loss_g'][last]):.4f}", flush=True)
    test_images, _ = session.load("test", device="cpu")
    quality = sm.report(samples(g, 10000, seed=0), test_images, clf.load(session.data_root()))
    print(f"Classifier Inception Score of 10000 samples: {quality['is'][0]:.2f} "
          f"(real test digits: {quality['is_reference'][0]:.2f}; 10 is the most)")
    print(f"Frechet distance to the test digits (classifier features): {quality['fd']:.2f} (0 is identical)")
    print(expectation(quality["is"][0], a.iter_max), flush=True)
    return 0


EXPERIMENT = training.Experiment(
    summary=("trains the course's GAN networks with the notebook's loss_nonsaturating_d and the "
             "generator loss chosen by --loss_g (Adam with beta1 = 0.5, D at 2e-4 and G at 1e-3, both "
             "decayed linearly to 0; the generator kept is the moving average of its weights), then "
             "prints the classifier Inception Score and Frechet distance of 10 000 samples"),
    run=run_experiment,
    options=(
        training.Option("--loss_g", "the generator's loss", "nonsaturating",
                        choices=("nonsaturating", "minimax")),
        training.Option("--precision", "bf16 runs the networks in bfloat16 autocast (about 2x on CPUs "
                        "with AVX512-BF16 or AMX, same sample quality), auto picks bf16 on such CPUs and "
                        "float32 elsewhere, fp32 turns it off", "auto", choices=training.PRECISIONS),
    ))
