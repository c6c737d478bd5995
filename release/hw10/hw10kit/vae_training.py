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

from . import training
from .training import make_adam, module_device as _model_device, pick_device  # noqa: F401  (one home: training)
from .unfinished import guard

METRICS = ("nelbo", "kl", "rec")
LOSSES = {"nelbo": "negative ELBO (nats per image)"}  # what train_vae's history records and plots
DIVERGED = ("Check that sample_gaussian uses sqrt(v) (v is a variance) and that the KL and "
            "reconstruction terms are computed from the encoder's (m, v).")


def _loss(model, x):
    """The training loss (the batch-averaged negative ELBO) as a scalar tensor."""
    if hasattr(model, "loss"):
        return model.loss(x)[0]
    return model.negative_elbo_bound(x)[0]


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


def vae_step(model, optimizer, loss_fn):
    """The step function: binarize the batch afresh on its device (``torch.bernoulli``),
    one Adam step on the negative ELBO; returns ``{"nelbo": loss}``."""
    def step(batch):
        loss = loss_fn(torch.bernoulli(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"nelbo": loss}
    return step


@guard("Training")
def train_vae(model, train_images, *, iter_max: int = 10000, batch_size: int = 100,
              lr: float = 1e-3, seed: int | None = 0, device=None, progress: bool = True,
              log_every: int = 50, save_every: int | None = None, save_fn=None,
              recipe: str = "course", compile: bool = False, threads=None) -> dict:
    """Train ``model`` with the course recipe and return its loss history.

    The fast path (``hw10kit.training``): the training set lives on ``device`` as one
    tensor, each batch is drawn there from a per-epoch permutation and binarized there,
    Adam uses its fused kernel, and the loss is read back to the host only every
    ``log_every`` steps. What is learned is the course's: Adam at ``lr``, batches of
    ``batch_size``, ``iter_max`` steps, the same networks.

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
        device: where to train; default: the model's device when it is not the CPU, else
            the fastest available (``training.training_device``).
        progress: show a tqdm bar (iterations per second and the running NELBO).
        log_every: read the loss back every this many steps: the bar's running NELBO and
            the NaN guard (reading waits for the device, so this is not done every step).
        save_every, save_fn: call ``save_fn(model, iteration)`` every ``save_every``
            iterations and after the last one (checkpoints).
        recipe: ``"course"`` (constant lr) or ``"tuned"`` (opt-in schedule, see RECIPES).
        compile: compile the loss with ``torch.compile`` (off by default: on a CPU it
            gains a few percent per step but its first compile costs ~15 s).
        threads: CPU threads during training, a number or "auto" (``training.choose_threads``);
            None (the default): ``$HW10_THREADS``, else "auto".

    Returns:
        the history (``training.fit``'s format): ``{"iteration": [1, ..., iter_max],
        "nelbo": [the batch's NELBO at each step], "losses": LOSSES, "seconds": s,
        "precision": "fp32", "threads": n}``.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    schedule = lr_schedule(recipe, lr, iter_max)  # refuses an unknown recipe before any work
    device = training.training_device(device, model)
    model.to(device)
    model.train()
    data = training.on_device(train_images, device, (train_images.shape[0], -1))
    if seed is not None:
        torch.manual_seed(seed)
    optimizer = make_adam([p for p in model.parameters() if p.requires_grad], lr, device)
    schedulers = [] if recipe == "course" else [
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: schedule(done + 1) / lr)]
    save = None if save_fn is None else (lambda it: save_fn(model, it))
    return training.fit(vae_step(model, optimizer, compiled_loss(model, compile)),
                        training.batches(data, batch_size), iter_max=iter_max, losses=LOSSES,
                        device=device, hint=DIVERGED, log_every=log_every, progress=progress,
                        desc="train", schedulers=schedulers, save_every=save_every, save=save,
                        threads=threads)


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
def _generated(model, n: int, kind: str) -> torch.Tensor:
    """``n`` generated digits (n, 1, 28, 28) on the CPU; see ``sample_grid`` for ``kind``."""
    if kind not in ("sample", "mean"):
        raise ValueError(f"kind must be 'sample' or 'mean', not {kind!r}")
    model.eval()
    x = model.sample_x(n) if kind == "sample" else model.sample_sigmoid(n)
    model.train()
    return x.detach().float().cpu().reshape(n, 1, 28, 28)


def sample_grid(model, rows: int = 10, cols: int = 20, kind: str = "sample"):
    """A (3, H, W) image tensor in [0, 1] tiling ``rows * cols`` generated digits.

    kind: ``"sample"`` draws x ~ p(x) (``model.sample_x``: z ~ p(z), then every pixel
    from its Bernoulli); ``"mean"`` shows the Bernoulli means sigmoid(f(z)) instead
    (``model.sample_sigmoid``).
    """
    from torchvision.utils import make_grid

    return make_grid(_generated(model, rows * cols, kind), nrow=cols, padding=2, pad_value=0.5)


def save_sample_grid(model, path, rows: int = 10, cols: int = 20, kind: str = "sample"):
    """Save a ``rows`` x ``cols`` grid of generated digits as a PNG at ``path`` and
    return it as an (H, W) numpy array in [0, 1] for ``plt.imshow(..., cmap="gray")``
    (drawn once). See ``sample_grid`` for ``kind``."""
    return training.save_grid(_generated(model, rows * cols, kind), path, cols=cols)


def plot_loss_curve(history, path=None, smooth: int = 100, title: str = "VAE training"):
    """``training.plot_history`` for ``train_vae``'s history (also accepts the former
    list of ``(iteration, nelbo)`` pairs). Returns the figure."""
    if not isinstance(history, dict):
        pairs = list(history)
        history = {"iteration": [p[0] for p in pairs], "nelbo": [p[1] for p in pairs], "losses": LOSSES}
    return training.plot_history(history, path, smooth=smooth, title=title,
                                 ylabel="negative ELBO (nats per image)")


def summary_line(metrics: dict) -> str:
    """The course's one-line summary: ``NELBO: <x>. KL: <y>. Rec: <z>``."""
    return "NELBO: {:.4f}. KL: {:.4f}. Rec: {:.4f}".format(
        float(metrics["nelbo"]), float(metrics["kl"]), float(metrics["rec"]))


# --------------------------------------------------------------------- experiment.py --model vae

#: The course recipe's NELBO on the test subset after 10 000 iterations (bench/vae.json).
EXPECTED_NELBO = {64: (97.5, 99.5), 10: (101.0, 103.5)}


def expectation(nelbo: float, z_dim: int, iter_max: int) -> str:
    """What a correct VAE reaches, and a pointer to the checks when the result is far off."""
    low, high = EXPECTED_NELBO.get(z_dim, (95.0, 106.0))
    said = (f"A correct VAE with z = {z_dim} reaches a NELBO of about {low:g} to {high:g} nats after "
            "10 000 iterations (higher after fewer).")
    if nelbo != nelbo or nelbo < 60 or (iter_max >= 10000 and nelbo > high + 15) or nelbo > 250:
        said += (f" Yours is {nelbo:.1f}, far from that: run the check cells for sample_gaussian and "
                 "negative_elbo_bound in the notebook (sign, sum vs mean, variance vs std).")
    return said


def run_experiment(session) -> int:
    """``experiment.py --model vae``: train the notebook's ``VAE``, write checkpoints, the
    loss curve and samples, print the full-test-set bound, IWAE-100, what a correct VAE
    reaches, and last the course's summary line on its 100-image subset."""
    from . import data as hw10data

    a = session.args
    VAE = session.defined("VAE")
    device = session.device
    train_images, _ = session.load("train")
    test_images, test_labels = session.load("test")
    x_subset, _ = hw10data.fixed_test_subset(test_images, test_labels)
    session.seed()
    model = VAE(z_dim=a.num_latents).to(device)
    print(f"Training VAE (z_dim={a.num_latents}) from {session.notebook.name} on {device} "
          f"for {a.iter_max} iterations; writing to {session.run_dir}", flush=True)
    history = session.train(lambda: train_vae(
        model, train_images, iter_max=a.iter_max, seed=a.runid, device=device,
        progress=not a.no_progress, save_every=a.iter_save,
        save_fn=lambda m, it: session.checkpoint(m.state_dict(), it),
        recipe=a.recipe, compile=a.compile, threads=session.threads))
    torch.manual_seed(a.runid)
    session.write_outputs(history, _generated(model, 200, "sample"), what="VAE",
                          ylabel="negative ELBO (nats per image)")
    full = evaluate_full(model, test_images, seed=0)
    metrics = evaluate_course(model, test_images, test_labels, passes=100)
    niwae = evaluate_iwae(model, x_subset, k=100)
    print(f"Negative ELBO on the full test set (10000 images; not in the course code): {full:.4f}")
    print(f"Negative IWAE-100 bound on the test subset (tighter estimate of -log p(x); it uses your "
          f"encoder, decoder and prior, with its own sampling z = m + sqrt(v) * eps): {niwae:.4f}")
    print(expectation(metrics["nelbo"], a.num_latents, a.iter_max))
    print("Test subset (100 images, averaged over 100 passes):")
    print(summary_line(metrics), flush=True)
    return 0


EXPERIMENT = training.Experiment(
    summary=("trains the notebook's VAE with the course recipe (Adam, lr 1e-3, batches of 100 "
             "binarized afresh), then prints the bound on the full test set, the IWAE-100 bound and, "
             "last, the course's line 'NELBO: <x>. KL: <y>. Rec: <z>' on its 100-image test subset"),
    run=run_experiment,
    options=(
        training.Option("--recipe", "course: Adam at a constant 1e-3; tuned: warm-up to 2e-3, then "
                        "cosine decay to 0 (same iterations, better bound)", "course", choices=RECIPES),
        training.Option("--compile", "compile the loss with torch.compile (falls back quietly)",
                        flag_only=True),
    ))
