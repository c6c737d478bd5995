"""Training and evaluation of the HW10 VAE, shared by the notebook and ``experiment.py``.

Conventions (the same as the notebook's):

* images are float32 tensors of shape (N, 784) with values in [0, 1]; they are
  binarized with ``torch.bernoulli`` before they reach the model, so the model only
  ever sees x in {0, 1};
* a model is the notebook's ``VAE``: ``model.loss(x)`` returns ``(nelbo, summaries)``
  and ``model.negative_elbo_bound(x)`` returns ``(nelbo, kl, rec)``, three scalar
  tensors averaged over the batch (nats per image), with nelbo = kl + rec;
* Gaussians are parameterized by mean and *variance* (not standard deviation).

Nothing here knows the student's code beyond those two methods and
``model.sample_x(n)`` / ``model.sample_sigmoid(n)`` for samples.
"""
from __future__ import annotations

import math

import torch

from .unfinished import guard

try:  # a notebook progress bar in Jupyter, a text one in a terminal
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is in the requirements
    tqdm = None

METRICS = ("nelbo", "kl", "rec")


def pick_device() -> torch.device:
    """The fastest available device: CUDA, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _loss(model, x):
    """The training loss (the batch-averaged negative ELBO) as a scalar tensor."""
    if hasattr(model, "loss"):
        return model.loss(x)[0]
    return model.negative_elbo_bound(x)[0]


def make_adam(params, lr: float, device, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam with its fused kernel (one kernel for all parameters) where this build of
    torch has one for ``device``, else the default (foreach) Adam. Same update rule."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def compiled_loss(model, enabled: bool = True):
    """``x -> loss`` for training, compiled with ``torch.compile`` when ``enabled``.
    Falls back to eager quietly where no compiler works (no C++ toolchain, Windows,
    code that does not trace); the first compile takes ~15 s on a CPU, cached after."""
    def eager(x):
        return _loss(model, x)

    if not enabled:
        return eager
    try:
        fast = torch.compile(eager, dynamic=False)
    except Exception:  # noqa: BLE001 - any failure means: stay eager
        return eager
    state = {"fn": fast}

    def call(x):
        if state["fn"] is fast:
            try:
                return fast(x)
            except Exception:  # noqa: BLE001
                state["fn"] = eager
        return state["fn"](x)

    return call


#: Learning-rate recipes. "course": constant 1e-3 (the course). "tuned" (opt-in): a
#: short linear warm-up to 2e-3, then cosine decay to 0 by the last iteration.
RECIPES = ("course", "tuned")


def lr_schedule(recipe: str, lr: float, iter_max: int):
    """A function iteration (1-based) -> learning rate, for ``recipe``."""
    if recipe == "course":
        return lambda it: lr
    if recipe == "tuned":
        peak, warm = 2 * lr, max(1, iter_max // 50)
        return lambda it: (peak * it / warm if it <= warm else
                           0.5 * peak * (1 + math.cos(math.pi * (it - warm) / max(1, iter_max - warm))))
    raise ValueError(f"recipe must be one of {RECIPES}, not {recipe!r}")


@guard("Training")
def train_vae(model, train_images, *, iter_max: int = 10000, batch_size: int = 100,
              lr: float = 1e-3, seed: int | None = 0, device=None, progress: bool = True,
              log_every: int = 50, save_every: int | None = None, save_fn=None,
              recipe: str = "course", compile: bool = False):
    """Train ``model`` with the course recipe and return its loss history.

    The fast path: the training set lives on ``device`` as one tensor, each batch is
    drawn there from a per-epoch permutation and binarized there, Adam uses its fused kernel, and the
    loss is read back to the host only every ``log_every`` steps. What is learned is the
    course's: Adam at ``lr``, batches of ``batch_size``, ``iter_max`` steps, the same
    networks.

    Args:
        model: the notebook's ``VAE`` (moved to ``device`` in place).
        train_images: float32 (N, 784) in [0, 1] (not binarized). Kept whole on the
            device; each epoch is a fresh random permutation (``torch.randperm``, as a
            shuffled DataLoader), batches are consecutive slices of it, and each batch is
            binarized afresh with ``torch.bernoulli`` ("dynamic binarization").
        iter_max: number of Adam steps (the course uses 10000).
        batch_size, lr: 100 and 1e-3 in the course.
        seed: seeds torch's global RNG before training (batches, binarization and the
            model's own sampling); None leaves the RNG alone. The model's weights are
            initialised when it is built: seed before building it for a fully
            reproducible run (``repeat_over_seeds`` does).
        device: where to train; default: the model's device.
        progress: show a tqdm bar (iterations per second and the running NELBO).
        log_every: refresh the bar's running NELBO every this many steps (reading the
            loss back waits for the device, so this is not done every step).
        save_every, save_fn: call ``save_fn(model, iteration)`` every ``save_every``
            iterations and after the last one (checkpoints).
        recipe: ``"course"`` (constant lr) or ``"tuned"`` (opt-in schedule, see RECIPES).
        compile: compile the loss with ``torch.compile`` (off by default: on a CPU it
            gains a few percent per step but its first compile costs ~15 s).

    Returns:
        list of ``(iteration, nelbo)`` for every iteration (1-based), nelbo a float.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    model.train()
    data = train_images.to(device=device, dtype=torch.float32)
    if data.dim() != 2:
        data = data.reshape(data.shape[0], -1)
    n = data.shape[0]
    if seed is not None:
        torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_adam(params, lr, device)
    schedule = lr_schedule(recipe, lr, iter_max)
    loss_fn = compiled_loss(model, compile)
    losses = torch.empty(iter_max, device=device)
    per_epoch = (n // batch_size) * batch_size  # whole batches per epoch (drops a remainder)
    order = None

    bar = tqdm(total=iter_max, disable=not progress or tqdm is None, desc="train",
               unit="it", dynamic_ncols=True, mininterval=0.5) if tqdm is not None else None
    try:
        for it in range(1, iter_max + 1):
            if recipe != "course":
                for group in optimizer.param_groups:
                    group["lr"] = schedule(it)
            start = ((it - 1) * batch_size) % per_epoch
            if start == 0:  # a new epoch: a fresh shuffle, as DataLoader(shuffle=True) does
                order = torch.randperm(n, device=device)
            x = torch.bernoulli(data[order[start:start + batch_size]])
            loss = loss_fn(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[it - 1] = loss.detach()
            if it % log_every == 0 or it == iter_max:
                recent = losses[max(0, it - log_every):it].mean().item()
                if not math.isfinite(recent):
                    raise FloatingPointError(
                        f"the NELBO became {recent} by iteration {it}. Check that "
                        "sample_gaussian uses sqrt(v) (v is a variance) and that the KL and "
                        "reconstruction terms are computed from the encoder's (m, v).")
                if bar is not None:
                    bar.set_postfix(nelbo=f"{recent:.2f}", refresh=False)
                    bar.update(it - bar.n)
            if save_fn is not None and save_every and (it % save_every == 0 or it == iter_max):
                save_fn(model, it)
    finally:
        if bar is not None:
            bar.close()
    return [(i + 1, v) for i, v in enumerate(losses.tolist())]


@torch.no_grad()
@guard("The IWAE bound")
def evaluate_iwae(model, x_subset, k: int = 100, passes: int = 10) -> float:
    """The negative importance-weighted bound (IWAE, Burda et al. 2016) with ``k``
    samples per image, averaged over the images and ``passes`` repetitions:

        -log p(x) <= -E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],  z_i ~ q(z | x).

    It equals the negative ELBO at k = 1 and tightens towards -log p(x) as k grows.
    Uses the model's encoder (mean, variance), decoder (logits) and prior; x_subset is
    float32 (n, 784) in {0, 1}. Returns nats per image.
    """
    import torch.nn.functional as F

    model.eval()
    x = x_subset.to(device=_model_device(model), dtype=torch.float32)
    total = 0.0
    for _ in range(passes):
        m, v = model.enc.encode(x)                                     # (n, z), v a variance
        z = m + v.sqrt() * torch.randn((k, *m.shape), device=m.device)  # (k, n, z)
        logits = model.dec.decode(z.reshape(-1, m.shape[-1])).reshape(k, *x.shape)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                       reduction="none").sum(-1)
        pm, pv = model.z_prior_m, model.z_prior_v
        log_pz = (-0.5 * (torch.log(2 * math.pi * pv) + (z - pm) ** 2 / pv)).sum(-1)
        log_qz = (-0.5 * (torch.log(2 * math.pi * v) + (z - m) ** 2 / v)).sum(-1)
        log_w = log_px_z + log_pz - log_qz                             # (k, n)
        total += -(torch.logsumexp(log_w, 0) - math.log(k)).mean().item()
    model.train()
    return total / passes


@torch.no_grad()
@guard("Evaluation")
def evaluate_subset(model, x_subset, passes: int = 100) -> dict:
    """NELBO, KL and Rec on a fixed, already binarized test subset.

    Args:
        x_subset: float32 (n, 784) in {0, 1}, e.g. from ``hw10kit.data.fixed_test_subset``
            (the course's 100 images, 10 per digit).
        passes: the bound uses one sample z ~ q(z|x) per call, so it is averaged over
            this many calls (100 in the course) for a low-variance estimate.

    Returns:
        ``{"nelbo": float, "kl": float, "rec": float}`` in nats per image.
    """
    model.eval()
    x = x_subset.to(device=_model_device(model), dtype=torch.float32)
    total = torch.zeros(3, device=x.device)
    for _ in range(passes):
        nelbo, kl, rec = model.negative_elbo_bound(x)
        total += torch.stack([nelbo.detach(), kl.detach(), rec.detach()]).reshape(3).float()
    model.train()
    return dict(zip(METRICS, (total / passes).tolist()))


@guard("Evaluation")
def evaluate_course(model, test_images, test_labels, passes: int = 100) -> dict:
    """The course's summary (NELBO, KL, Rec) on its 100-image test subset, drawn the way
    the course's ``evaluate_lower_bound`` draws it: ``torch.manual_seed(0)``, then
    ``torch.bernoulli`` of the float32 images, then ``passes`` calls of
    ``negative_elbo_bound`` that continue the same generator. On a CPU this reproduces
    the course's numbers draw for draw. One deliberate difference: the images are
    binarized on the CPU on every device (the course binarizes on the training device,
    so on a GPU its subset would differ); on a GPU the passes continue the GPU's
    generator, seeded by the same call, as in the course.

    Returns ``{"nelbo", "kl", "rec"}`` in nats per image. Reseeds torch's global RNG.
    """
    from . import data

    probs, _ = data.course_test_images(test_images, test_labels)
    torch.manual_seed(0)
    x = torch.bernoulli(probs)
    return evaluate_subset(model, x, passes=passes)


@torch.no_grad()
@guard("Evaluation")
def evaluate_full(model, test_images, seed: int = 0, batch_size: int = 1000) -> float:
    """The negative ELBO on the whole test set (nats per image; lower is better).

    Args:
        test_images: float32 (N, 784) in [0, 1] (10000 MNIST test images). They are
            binarized once, with a CPU generator seeded by ``seed``, so every model is
            scored on the same binary images. The course has no full-test-set bound;
            this one is the project's own addition.
        batch_size: images per forward pass (one sample z per image).

    Returns:
        the average negative ELBO over the N images, a float.
    """
    model.eval()
    device = _model_device(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x_all = torch.bernoulli(test_images.detach().cpu().float().reshape(test_images.shape[0], -1),
                            generator=gen)
    total = torch.zeros((), device=device)
    for start in range(0, x_all.shape[0], batch_size):
        xb = x_all[start:start + batch_size].to(device)
        nelbo = model.negative_elbo_bound(xb)[0]
        total += nelbo.detach().float() * xb.shape[0]
    model.train()
    return total.item() / x_all.shape[0]


@guard("Training over seeds")
def repeat_over_seeds(make_model, train_images, x_subset, seeds, *, passes: int = 100,
                      verbose: bool = True, trained: dict | None = None, **train_kwargs) -> dict:
    """Train a fresh model per seed (reusing the models in ``trained``) and summarise the
    test-subset metrics.

    Args:
        make_model: called with no arguments after ``torch.manual_seed(seed)``; returns
            a new model (e.g. ``lambda: VAE(z_dim=64)``).
        train_images, x_subset: as for ``train_vae`` and ``evaluate_subset``.
        seeds: e.g. ``[0, 1, 2]``.
        verbose: print each seed's summary line.
        trained: ``{seed: model}`` already trained with those settings (the notebook's
            seed-0 run, say): evaluated, not trained again.
        **train_kwargs: passed to ``train_vae`` (iter_max, device, progress, ...).

    Returns:
        ``{"nelbo": (mean, stderr), "kl": (...), "rec": (...)}`` where stderr is the
        standard error of the mean, std (ddof=1) / sqrt(len(seeds)); NaN for one seed.
    """
    runs = {m: [] for m in METRICS}
    for seed in seeds:
        if trained and seed in trained:
            model = trained[seed]
        else:
            torch.manual_seed(seed)
            model = make_model()
            train_vae(model, train_images, seed=seed, **train_kwargs)
        metrics = evaluate_subset(model, x_subset, passes=passes)
        if verbose:
            print(f"seed {seed}: {summary_line(metrics)}")
        for m in METRICS:
            runs[m].append(metrics[m])
    return {m: _mean_stderr(v) for m, v in runs.items()}


def _mean_stderr(values) -> tuple:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


@torch.no_grad()
@guard("The sample grid")
def sample_grid(model, rows: int = 10, cols: int = 20, kind: str = "sample"):
    """A (3, H, W) image tensor in [0, 1] tiling ``rows * cols`` generated digits.

    kind: ``"sample"`` draws x ~ p(x) (``model.sample_x``: z ~ p(z), then every pixel
    from its Bernoulli); ``"mean"`` shows the Bernoulli means sigmoid(f(z)) instead
    (``model.sample_sigmoid``).
    """
    from torchvision.utils import make_grid

    n = rows * cols
    model.eval()
    if kind == "sample":
        x = model.sample_x(n)
    elif kind == "mean":
        x = model.sample_sigmoid(n)
    else:
        raise ValueError(f"kind must be 'sample' or 'mean', not {kind!r}")
    model.train()
    images = x.detach().float().cpu().reshape(n, 1, 28, 28)
    return make_grid(images, nrow=cols, padding=2, pad_value=0.5)


def save_sample_grid(model, path, rows: int = 10, cols: int = 20, kind: str = "sample"):
    """Save a ``rows`` x ``cols`` grid of generated digits as a PNG at ``path`` and
    return it as an (H, W) numpy array in [0, 1] for ``plt.imshow(..., cmap="gray")``.
    See ``sample_grid`` for ``kind``."""
    from torchvision.utils import save_image

    grid = sample_grid(model, rows, cols, kind)
    save_image(grid, str(path))
    return grid[0].numpy()


def plot_loss_curve(history, path=None, smooth: int = 100, title: str = "VAE training"):
    """Plot the training NELBO per iteration (faint) with a moving average over
    ``smooth`` iterations; save it to ``path`` (PNG) when given. Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    its = np.array([h[0] for h in history], dtype=float)
    vals = np.array([h[1] for h in history], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(vals):
        ax.plot(its, vals, color="tab:blue", alpha=0.25, linewidth=0.8, label="batch NELBO")
        k = max(1, min(smooth, len(vals) // 5 or 1))
        if k > 1:
            avg = np.convolve(vals, np.ones(k) / k, mode="valid")
            ax.plot(its[k - 1:], avg, color="tab:blue", linewidth=2, label=f"mean of last {k}")
        # The first iterations start near 540 nats; zoom on the part that matters.
        top = np.quantile(vals, 0.98) if len(vals) >= 50 else vals.max()
        low = vals.min()
        ax.set_ylim(low - 0.05 * (top - low + 1), top + 0.05 * (top - low + 1))
        ax.legend(loc="upper right")
    ax.set_xlabel("iteration")
    ax.set_ylabel("negative ELBO (nats per image)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=120)
    return fig


def summary_line(metrics: dict) -> str:
    """The course's one-line summary: ``NELBO: <x>. KL: <y>. Rec: <z>``."""
    return "NELBO: {:.4f}. KL: {:.4f}. Rec: {:.4f}".format(
        float(metrics["nelbo"]), float(metrics["kl"]), float(metrics["rec"]))
