"""The kit's one training harness, shared by every model (``vae_training``, ``gan_training``)
and by ``experiment.py``.

A model supplies its networks and a *step function*, in the style of the PyTorch examples:
``step(batch) -> {"<name>": value}``, one optimisation step on one batch, returning its
scalar losses as tensors (kept on the device; read back every ``log_every`` steps only)
and, optionally, plain floats to record (a learning rate, say). ``fit`` does the rest:

* the device (``pick_device``: CUDA, then MPS, else the CPU) and the data preloaded on it
  as one tensor (``on_device``); endless batches sliced from a per-epoch permutation
  (``batches``), no DataLoader;
* the CPU thread count (``choose_threads``: ``threads="auto"``, the ``HW10_THREADS``
  variable, or a number), set for the run and restored after;
* fused Adam (``make_adam``) and the precision (``autocast_dtype``: bf16 autocast where the
  CPU computes it natively);
* a progress bar (``tqdm.auto``, optional), a NaN guard every ``log_every`` steps with the
  model's own hint, checkpoints every ``save_every`` steps and at the end, an exponential
  moving average of a network's weights (``weight_average``, ``torch.optim.swa_utils``);
* one history format, ``{"iteration": [1, ..., N], "<loss>": [N floats], ..., "losses":
  {"<loss>": "<label>"}, "seconds": s, "precision": "fp32" | "bf16", "threads": n}``, and
  one plot of it (``plot_history``); a sample grid drawn once, saved and returned
  (``save_grid``).

``Experiment`` and ``Option`` declare what ``experiment.py`` trains; ``Session`` does the
steps every experiment shares (notebook, device, data, seed, run folder, one-line errors,
loss plot, sample grid, checkpoints).
"""
from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

# --------------------------------------------------------------------- device and data


def pick_device() -> torch.device:
    """The fastest available device: CUDA, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def module_device(net) -> torch.device:
    """The device of ``net``'s first parameter (the CPU for a network without any)."""
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def training_device(device, *nets) -> torch.device:
    """Where to train: ``device`` when given; else the device the networks already live
    on, when that is not the CPU; else the fastest available (``pick_device``)."""
    if device is not None:
        return torch.device(device)
    for net in nets:
        here = module_device(net)
        if here.type != "cpu":
            return here
    return pick_device()


def on_device(images: torch.Tensor, device, shape: tuple) -> torch.Tensor:
    """``images`` as one float32 tensor on ``device``, reshaped to ``shape`` (e.g.
    ``(-1, 784)`` or ``(-1, 1, 28, 28)``); no copy when they are already there."""
    return images.to(device=device, dtype=torch.float32).reshape(shape)


def batches(images: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
            ) -> Iterator[torch.Tensor]:
    """Endless batches of ``images`` (first dimension N), as a shuffled DataLoader with
    ``drop_last`` gives them: each epoch a fresh ``torch.randperm`` drawn on the images'
    device when the epoch starts, batches consecutive slices of it (a remainder is dropped)."""
    n = images.shape[0]
    if n < batch_size:
        raise ValueError(f"{n} images cannot fill one batch of {batch_size}")
    while True:
        order = torch.randperm(n, device=images.device, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield images[order[start:start + batch_size]]


# --------------------------------------------------------------------- threads

THREADS_ENV = "HW10_THREADS"  # "auto" (the default) or a number of CPU threads


def _procs_running() -> int | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _own_running() -> int:
    running = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    running += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:
                pass
    except OSError:
        return 1
    return max(1, running)


def busy_elsewhere(samples: int = 5, interval: float = 0.01) -> int | None:
    """How many threads of *other* processes are running or waiting for a CPU now: Linux's
    ``procs_running`` less this process's own running threads, the least of ``samples``
    readings (a short burst elsewhere does not count). None where /proc cannot tell."""
    seen = []
    for i in range(samples):
        total = _procs_running()
        if total is None:
            return None
        seen.append(max(0, total - _own_running()))
        if i + 1 < samples:
            time.sleep(interval)
    return min(seen)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_threads(value):
    """``"auto"`` or a positive int from ``value`` (a number or a string); ValueError else."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be 'auto' or a positive number, not {value!r}") from None
    if n < 1 or n != float(value):
        raise ValueError(f"threads must be 'auto' or a positive number, not {value!r}")
    return n


def choose_threads(threads=None, device=None) -> int:
    """The number of CPU threads to train with.

    ``threads``: a number, or ``"auto"``; ``None`` means ``$HW10_THREADS``, else ``"auto"``.
    ``"auto"`` takes the cores no other process is using right now (``busy_elsewhere``),
    at least 1 and at most torch's own default: on a 2-core machine, 2 threads when it is
    idle and 1 beside a busy core, where 2 threads wait on each other at every
    parallel step and ran 2 to 3 times slower than 1 (docs/performance.md, "Threads"; bench/threads.json).
    Off the CPU the count only matters for the host side, and torch's is kept.
    """
    if threads is None:
        try:
            threads = parse_threads(os.environ.get(THREADS_ENV, "").strip() or "auto")
        except ValueError as exc:
            raise ValueError(f"${THREADS_ENV}: {exc}") from None
    threads = parse_threads(threads)
    if threads != "auto":
        return threads
    ceiling = max(1, min(torch.get_num_threads(), _cores()))
    if device is not None and torch.device(device).type != "cpu":
        return ceiling
    busy = busy_elsewhere()
    if busy is None:
        return ceiling
    return max(1, min(ceiling, _cores() - busy))


@contextmanager
def using_threads(n: int):
    """torch's intra-op thread count set to ``n`` inside, restored after."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# --------------------------------------------------------------------- optimizer and precision


def make_adam(params, lr: float, device=None, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam with its fused kernel (one kernel for all parameters) where this build of
    torch has one, else the default (foreach) Adam. Same update rule."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


CPU_BF16_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # in torch.cpu
PRECISIONS = ("auto", "bf16", "fp32")


def fast_bf16(device) -> bool:
    """Whether ``device`` is a CPU that runs bfloat16 matmuls and convolutions natively
    (AMX or AVX512-BF16), where bf16 autocast was measured to pay."""
    if torch.device(device).type != "cpu":
        return False
    return any(getattr(torch.cpu, name, lambda: False)() for name in CPU_BF16_PROBES)


def autocast_dtype(device, precision: str = "auto"):
    """The autocast dtype for ``precision`` ("auto", "bf16" or "fp32") on ``device``, or
    None for plain float32. "auto" is bf16 only on a CPU with native bf16 (``fast_bf16``);
    on GPUs it was not measured and stays float32."""
    if precision not in PRECISIONS:
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


def autocast(device, dtype):
    """``torch.autocast`` to ``dtype`` on ``device``'s kind; a no-op for dtype None."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


# --------------------------------------------------------------------- weight average

EMA_DECAY = 0.9995


def average_decay(ema: float, iter_max: int) -> float:
    """The decay a weight average uses in a run of ``iter_max`` steps: ``ema``, capped at
    1 - 5 / iter_max so that the first step's weights (the average starts from them, barely
    trained) keep at most e^-5 of the average, however short the run. 10 000 steps keep
    0.9995; 1000 steps use 0.995."""
    return max(0.0, min(ema, 1 - 5 / iter_max))


def weight_average(net, decay: float = EMA_DECAY):
    """An exponential moving average of ``net``'s weights (``torch.optim.swa_utils.AveragedModel``):
    call ``.update_parameters(net)`` after each step; the average is in ``.module``."""
    swa = torch.optim.swa_utils
    return swa.AveragedModel(net, multi_avg_fn=swa.get_ema_multi_avg_fn(decay))


@torch.no_grad()
def load_average(net, average) -> None:
    """Copy the averaged weights of ``average`` (from ``weight_average``) into ``net``."""
    for mine, averaged in zip(net.parameters(), average.module.parameters()):
        mine.copy_(averaged)


# --------------------------------------------------------------------- the loop


class LossError(ValueError):
    """A student's loss cannot train its network (no gradient, not a scalar tensor)."""


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar (a notebook widget in Jupyter, text in a terminal), or None when
    ``enabled`` is false or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the requirements
        return None
    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, mininterval=0.5)


def fit(step: Callable[[torch.Tensor], dict], data: Iterator[torch.Tensor], *, iter_max: int,
        losses: dict, device, hint: str, precision: str = "fp32", log_every: int = 50,
        progress: bool = True, desc: str = "train", schedulers=(), average=None,
        finish: Callable[[], None] | None = None, save_every: int | None = None,
        save: Callable[[int], None] | None = None, threads=None) -> dict:
    """Run ``step(next(data))`` ``iter_max`` times and return the history.

    Args:
        step: one optimisation step on one batch; returns ``{name: value}`` with a scalar
            tensor for every name in ``losses`` and plain floats for anything else to record.
        data: endless batches (``batches``).
        losses: ``{name: label}`` of the losses ``step`` returns, in plot order.
        device: the training device; hint: what to check when a loss turns NaN or infinite
            (the NaN guard reads the last ``log_every`` steps' mean of every loss every
            ``log_every`` steps and at the end, and raises FloatingPointError).
        precision: what the step's autocast uses, "fp32" or "bf16" (recorded only).
        schedulers: stepped after every step (``torch.optim.lr_scheduler``).
        average: ``(net, weight_average(net))``: updated after every step, loaded into
            ``net`` at the end, before ``finish`` (BatchNorm statistics, say) and the last
            checkpoint.
        save_every, save: ``save(iteration)`` every ``save_every`` steps and once at the end.
        threads: CPU threads for the run (``choose_threads``), restored after.
    """
    if iter_max < 1:
        raise ValueError(f"iter_max must be at least 1, not {iter_max}")
    names = list(losses)
    record = {name: torch.zeros(iter_max, device=device) for name in names}
    extra: dict = {}
    n_threads = choose_threads(threads, device)
    bar = progress_bar(iter_max, desc, progress)
    started = time.perf_counter()
    try:
        with using_threads(n_threads):
            for i in range(iter_max):
                out = step(next(data))
                for name, value in out.items():
                    if name not in losses:
                        extra.setdefault(name, []).append(float(value))
                for name in names:
                    record[name][i] = out[name].detach()
                if average is not None:
                    average[1].update_parameters(average[0])
                for scheduler in schedulers:
                    scheduler.step()
                it = i + 1
                if it % log_every == 0 or it == iter_max:
                    recent = torch.stack([record[name][max(0, it - log_every):it].mean()
                                          for name in names]).tolist()
                    for name, value in zip(names, recent):
                        if not math.isfinite(value):
                            raise FloatingPointError(f"{name} became {value} by iteration {it}. {hint}")
                    if bar is not None:
                        bar.set_postfix({n: f"{v:.3f}" for n, v in zip(names, recent)}, refresh=False)
                        bar.update(it - bar.n)
                if save is not None and save_every and it % save_every == 0 and it < iter_max:
                    save(it)
            if average is not None:
                load_average(*average)
            if finish is not None:
                finish()
            if save is not None and save_every:
                save(iter_max)
    finally:
        if bar is not None:
            bar.close()
    history = {"iteration": list(range(1, iter_max + 1))}
    history.update({name: record[name].tolist() for name in names})
    history.update(extra)
    history.update({"losses": dict(losses), "seconds": time.perf_counter() - started,
                    "precision": precision, "threads": n_threads})
    return history


# --------------------------------------------------------------------- plots and grids


def plot_history(history: dict, path=None, smooth: int = 100, title: str = "training",
                 ylabel: str = "loss"):
    """Every loss of ``history`` (``fit``'s format) per iteration, faint, with its running
    mean over ``smooth`` iterations; the y axis zooms on the part after the first steps.
    Saved to ``path`` (PNG) when given. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    its = np.asarray(history["iteration"], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    lows, tops = [], []
    for k, (name, label) in enumerate(history["losses"].items()):
        vals = np.asarray(history[name], dtype=float)
        if not len(vals):
            continue
        color = f"C{k}"
        n = max(1, min(smooth, len(vals) // 5 or 1))
        ax.plot(its, vals, color=color, alpha=0.25, linewidth=0.8,
                label=None if n > 1 else label)
        if n > 1:
            mean = np.convolve(vals, np.ones(n) / n, mode="valid")
            ax.plot(its[n - 1:], mean, color=color, linewidth=2, label=f"{label} (mean of {n})")
        tops.append(np.quantile(vals, 0.98) if len(vals) >= 50 else vals.max())
        lows.append(vals.min())
    if lows and all(map(math.isfinite, lows + tops)):
        low, top = min(lows), max(tops)
        pad = 0.05 * (top - low + 1e-3 * (abs(top) + 1))
        ax.set_ylim(low - pad, top + pad)
    if lows:
        ax.legend(loc="upper right")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=120)
    return fig


def save_grid(images: torch.Tensor, path=None, cols: int = 20, pad_value: float = 0.5):
    """Tile ``images`` (n, 1, 28, 28) in [0, 1] ``cols`` to a row with 2-pixel borders
    (``torchvision.utils.make_grid``), save it as a PNG at ``path`` when given, and return
    it as an (H, W) numpy array in [0, 1] for ``plt.imshow(..., cmap="gray")``."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(images.detach().float().cpu(), nrow=cols, padding=2, pad_value=pad_value)
    if path is not None:
        save_image(grid, str(path))
    return grid[0].numpy()


# --------------------------------------------------------------------- experiment.py


class ExperimentFailed(Exception):
    """Ends ``experiment.py`` with this one-line message (exit status 1)."""


@dataclass(frozen=True)
class Option:
    """One command-line option of one model's experiment (``argparse`` keywords)."""
    flag: str                       # "--loss_g"
    help: str
    default: object = None
    type: Callable | None = None
    choices: tuple | None = None
    flag_only: bool = False         # a switch (action="store_true")
    positive: bool = False          # must be at least 1

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, group) -> None:
        """Add this option to an ``argparse`` parser or argument group."""
        if self.flag_only:
            group.add_argument(self.flag, action="store_true", help=self.help)
            return
        help_ = self.help + (" (default: %(default)s)" if self.default is not None else "")
        kw = {"type": self.type, "choices": self.choices}
        group.add_argument(self.flag, default=self.default, help=help_,
                           **{k: v for k, v in kw.items() if v is not None})


@dataclass(frozen=True)
class Experiment:
    """What ``experiment.py --model <key>`` trains: the model's own options and
    ``run(session) -> exit status``; ``summary`` is its paragraph in ``--help``."""
    summary: str
    run: Callable
    options: tuple = ()
    #: This model's defaults for options every model takes, e.g. ``{"iter_max": 3000}``.
    defaults: dict = field(default_factory=dict)


def _argparse_threads(value):
    import argparse

    try:
        return parse_threads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The options every experiment takes (``experiment.py`` adds ``--model``).
COMMON_OPTIONS = (
    Option("--num_latents", "latent dimension z_dim", 64, int, positive=True),
    Option("--iter_max", "training iterations", 10000, int, positive=True),
    Option("--iter_save", "save a checkpoint every this many iterations and at the end", 10000, int,
           positive=True),
    Option("--runid", "run ID, also the random seed; use several for replicates", 0, int),
    Option("--out_dir", "where runs are written", "checkpoints"),
    Option("--notebook", "notebook to read the model from (default: the one beside experiment.py)"),
    Option("--device", "cuda, mps or cpu (default: the fastest available)"),
    Option("--threads", f"CPU threads: a number, or auto: the cores no other process is busy on "
           f"(default: ${THREADS_ENV}, else auto)", type=_argparse_threads),
    Option("--no_progress", "hide the progress bar", flag_only=True),
)


@dataclass
class Session:
    """The steps every experiment shares. ``args`` holds every option (defaults filled
    in); ``notebook`` is the notebook to read; ``here`` the folder of experiment.py."""
    key: str
    args: object
    notebook: Path
    here: Path
    _ns: dict | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return torch.device(self.args.device) if self.args.device else pick_device()

    @property
    def run_dir(self) -> Path:
        a = self.args
        return Path(a.out_dir) / f"model={self.key}_z={a.num_latents}_run={a.runid:04d}"

    @property
    def threads(self):
        return self.args.threads

    def defined(self, name: str):
        """``name`` from the notebook's definitions (only definitions are run), or a
        one-line error."""
        if self._ns is None:
            from .notebook import NotebookError, load_definitions

            if not self.notebook.is_file():
                raise ExperimentFailed(f"{self.notebook} not found: keep experiment.py beside your "
                                       "notebook, or pass --notebook")
            try:
                self._ns = load_definitions(str(self.notebook))
            except (NotebookError, SyntaxError, RuntimeError) as exc:
                raise ExperimentFailed(f"could not read the definitions in {self.notebook.name}: {exc}")
        if self._ns.get(name) is None:
            raise ExperimentFailed(f"{self.notebook.name} defines no `{name}`: run and save the cell "
                                   "that defines it")
        return self._ns[name]

    def data_root(self) -> Path:
        from . import data

        return data.find_root(self.here)  # $HW10_DATA, else data/ beside experiment.py or above

    def load(self, split: str, device=None):
        """(images (N, 784) in [0, 1], labels) of MNIST's ``split``, on ``device``
        (default: the training device)."""
        from . import data

        return data.load(split, root=self.data_root(), device=device or self.device)

    def seed(self) -> None:
        """Seed torch's global RNG with the run ID (before building the networks)."""
        torch.manual_seed(self.args.runid)

    def checkpoint(self, state: dict, iteration: int) -> None:
        """Write ``state`` to ``<run_dir>/model-<iteration>.pt`` (the folder is made on the
        first checkpoint, so a run that fails early leaves none)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.run_dir / f"model-{iteration:05d}.pt")

    def train(self, train: Callable[[], dict]) -> dict:
        """Run ``train()``; an unfinished notebook, a loss that turns NaN or a loss that
        cannot train its network ends the program with one line (and no run folder)."""
        from .unfinished import Unfinished

        try:
            history = train()
        except Unfinished as exc:
            raise ExperimentFailed(f"`{exc.name}` in {self.notebook.name} is not implemented yet: fill "
                                   "it in, run its check cell, save the notebook, and run again") from None
        except (FloatingPointError, LossError) as exc:
            raise ExperimentFailed(str(exc)) from None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return history

    def write_outputs(self, history: dict, samples: torch.Tensor, *, what: str, ylabel: str = "loss",
                      pad_value: float = 0.5) -> None:
        """``loss.png`` (``plot_history``) and ``samples.png`` (a 10 x 20 grid of
        ``samples``) in the run folder, and the line saying what was written."""
        import matplotlib.pyplot as plt

        a = self.args
        plt.close(plot_history(history, self.run_dir / "loss.png", ylabel=ylabel,
                               title=f"{what} training (z_dim={a.num_latents}, run {a.runid})"))
        save_grid(samples, self.run_dir / "samples.png", cols=20, pad_value=pad_value)
        print(f"{a.iter_max} iterations in {history['seconds']:.0f} s ({a.iter_max / history['seconds']:.1f} "
              f"it/s, {history['precision']}, {history['threads']} CPU thread(s))")
        print(f"Wrote {self.run_dir}/: model-{a.iter_max:05d}.pt (and every --iter_save), loss.png, "
              "samples.png", flush=True)
