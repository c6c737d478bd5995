"""Continual learning on permuted MNIST (Problem 5), shared by the notebook and the benchmark.

The course's setting, with its defects fixed:

* three tasks: MNIST as it is, then the same digits under two fixed pixel permutations
  (``numpy.random.RandomState(1)`` and ``RandomState(2)``, ``.permutation(784)``);
* SGD at lr 0.01 with momentum 0.9, batches of 256, 3 epochs per task; **a fresh optimizer
  for every task** (the course carried the momentum buffers over from one task to the next
  without saying so: its first steps on a new task kept moving along the old task's
  gradient);
* the metric: after each task, the mean test accuracy over the tasks seen so far, and the
  whole accuracy matrix ``R[i, j]``, the accuracy on task j after training task i;
* data stays on the training device as one tensor per split; batches are index slices of a
  per-epoch permutation drawn there (``training.batches``), the permutation is applied on
  the device (no DataLoader);
* 5 000 training images of every task are held out as its validation split, on which the
  lambda sweep chooses (the test sets are only reported).

The methods (``Method``): naive fine-tuning; EWC, one penalty per earlier task, each
``ewc_penalty(model, F_t, theta*_t, lam)`` with ``F_t = estimate_fisher(model, x, y)`` on
``fisher_samples`` training examples of task t at the end of task t; rehearsal with a
bounded memory: ``memory_per_task`` examples of every earlier task (class-balanced: the
same number of each digit, drawn at random within each digit; ``class_balanced``), and
``replay`` of them mixed into every batch by ``mix_replay``. The three graded functions are
the student's, passed in (``Functions``); nothing here holds their formulas.

Networks: ``CourseCNN``, the course's (the PyTorch MNIST example's: two convolutions and
two linear layers, with dropout), and ``MLP`` (two hidden layers of 400 ReLUs, dropout
0.2), the default: on permuted pixels a convolution's locality means nothing, and the MLP
trains 3 to 4 times faster here (docs/performance.md, "Continual learning").
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import training
from .unfinished import guard

PERMUTATION_SEEDS = (None, 1, 2)   # task 1 is MNIST as it is
VALIDATION = 5000                  # training images held out per task (the sweep chooses on them)
EPOCHS, BATCH_SIZE, LR, MOMENTUM = 3, 256, 0.05, 0.9  # lr: the course used 0.01 (docs/training.md)
DIVERGED = ("The loss became NaN or infinite: check ewc_penalty (it should be (lam / 2) * sum F * "
            "(theta - theta*)^2, small next to the loss at the start of a task) and estimate_fisher "
            "(a mean over samples, not a sum); a very large lambda makes SGD diverge.")


# --------------------------------------------------------------------- networks
class CourseCNN(nn.Module):
    """The course's network (the PyTorch MNIST example's): conv(1->10, 5x5), max-pool, ReLU,
    conv(10->20, 5x5), Dropout2d, max-pool, ReLU, linear 320->50, ReLU, dropout, linear
    50->10. Two convolutions and two linear layers (the course's text called it a 5-layer
    CNN with 3 convolutions). Takes (N, 784) or (N, 1, 28, 28); returns logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class MLP(nn.Module):
    """784 -> hidden -> hidden -> 10 with ReLUs and dropout ``p`` after each hidden layer;
    returns logits."""

    def __init__(self, hidden: int = 400, p: float = 0.2):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        x = self.drop(F.relu(self.fc1(x.reshape(x.shape[0], -1))))
        x = self.drop(F.relu(self.fc2(x)))
        return self.fc3(x)


NETWORKS = {"mlp": MLP, "cnn": CourseCNN}


def make_network(name: str, device=None) -> nn.Module:
    net = NETWORKS[name]()
    if name == "cnn":
        net = net.to(memory_format=torch.channels_last)  # 2x faster convolutions on a CPU here
    return net.to(device or "cpu")


# --------------------------------------------------------------------- tasks
@dataclass
class Task:
    """One task: a pixel permutation (None: the identity) of shared MNIST tensors."""
    name: str
    perm: torch.Tensor | None
    train: tuple   # (x (N, 784), y (N,)) of the unpermuted images, on the device
    val: tuple
    test: tuple

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 784) with this task's permutation applied."""
        return x if self.perm is None else x[:, self.perm]

    def split(self, which: str, idx=None) -> tuple:
        x, y = getattr(self, which)
        if idx is not None:
            x, y = x[idx], y[idx]
        return self.view(x), y


def permutation(seed: int | None) -> np.ndarray:
    """The task's pixel permutation: ``numpy.random.RandomState(seed).permutation(784)``."""
    return np.arange(784) if seed is None else np.random.RandomState(seed).permutation(784)


def make_tasks(device=None, n_tasks: int = 3, root=None, validation: int = VALIDATION) -> list:
    """The permuted-MNIST tasks on ``device``: the training images (less the last
    ``validation``, held out), the validation and the test split, loaded once and shared;
    task t applies its permutation (seed ``PERMUTATION_SEEDS[t]``) on the fly."""
    from . import data

    device = torch.device(device) if device is not None else training.pick_device()
    x, y = data.load("train", root=root, device=device)
    xt, yt = data.load("test", root=root, device=device)
    n = x.shape[0] - validation
    train, val, test = (x[:n], y[:n]), (x[n:], y[n:]), (xt, yt)
    seeds = PERMUTATION_SEEDS[:n_tasks] if n_tasks <= 3 else (*PERMUTATION_SEEDS, *range(3, n_tasks))
    tasks = []
    for t, seed in enumerate(seeds):
        perm = None if seed is None else torch.as_tensor(permutation(seed), device=device)
        tasks.append(Task(f"task {t + 1}" + ("" if seed is None else f" (permutation {seed})"), perm,
                          train, val, test))
    return tasks


# --------------------------------------------------------------------- evaluation
@torch.no_grad()
def accuracy(model, task: Task, which: str = "test", batch: int = 5000) -> float:
    """Accuracy of ``model`` (in eval mode) on one split of ``task``."""
    was = model.training
    model.eval()
    x, y = getattr(task, which)
    right = 0
    for s in range(0, x.shape[0], batch):
        right += int((model(task.view(x[s:s + batch])).argmax(1) == y[s:s + batch]).sum())
    model.train(was)
    return right / x.shape[0]


def average_seen(R) -> np.ndarray:
    """The mean accuracy over the tasks seen after each task: row i of ``R`` averaged over
    its first i + 1 entries."""
    R = np.asarray(R, float)
    return np.array([R[i, :i + 1].mean() for i in range(R.shape[0])])


# --------------------------------------------------------------------- rehearsal memory
def class_balanced(task: Task, size: int, generator: torch.Generator) -> tuple:
    """The rehearsal memory of ``task``: ``size`` training examples, the same number of each
    digit (size // 10, the remainder to the lowest digits), drawn uniformly at random without
    replacement within each digit. Returns (x permuted, y) on the task's device."""
    x, y = task.train
    y_cpu = y.cpu()
    classes = torch.unique(y_cpu)
    per = [size // len(classes) + (k < size % len(classes)) for k in range(len(classes))]
    chosen = []
    for c, k in zip(classes.tolist(), per):
        where = (y_cpu == c).nonzero().flatten()
        chosen.append(where[torch.randperm(len(where), generator=generator)[:k]])
    idx = torch.cat(chosen).to(y.device)
    return task.split("train", idx)


# --------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    """What a run does from task 2 on. ``ewc_lambda`` > 0: EWC; ``memory_per_task`` > 0:
    rehearsal, ``replay`` memory examples mixed into every batch."""
    name: str
    ewc_lambda: float = 0.0
    fisher_samples: int = 1000
    memory_per_task: int = 0
    replay: int = 0

    @property
    def kind(self) -> str:
        return "ewc" if self.ewc_lambda > 0 else "rehearsal" if self.memory_per_task > 0 else "naive"


NAIVE = Method("naive")


def ewc(lam: float, fisher_samples: int = 1000) -> Method:
    return Method(f"EWC (lambda = {lam:g})", ewc_lambda=lam, fisher_samples=fisher_samples)


def rehearsal(memory_per_task: int = 1000, replay: int = 128) -> Method:
    return Method(f"rehearsal ({memory_per_task} per task)", memory_per_task=memory_per_task, replay=replay)


@dataclass
class Functions:
    """The student's graded functions (any may be None when the method does not use it)."""
    estimate_fisher: object = None
    ewc_penalty: object = None
    mix_replay: object = None


@dataclass
class Run:
    """One method's run: the accuracy matrices (test and validation), the model, the
    loss history of each task, wall-clock seconds."""
    method: Method
    R: np.ndarray
    V: np.ndarray
    model: nn.Module
    histories: list = field(default_factory=list)
    seconds: float = 0.0
    diverged: str = ""       # the NaN guard's message when the loss blew up (sweeps record it)

    @property
    def average(self) -> np.ndarray:
        return average_seen(self.R)

    @property
    def final(self) -> float:
        return float(self.average[-1])

    @property
    def final_val(self) -> float:
        return float("nan") if self.diverged else float(average_seen(self.V)[-1])


def _snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _task_seed(seed: int, t: int) -> int:
    return seed * 1000 + t


def _check_fisher(fisher, model):
    if not isinstance(fisher, dict):
        raise training.LossError(f"estimate_fisher returned a {type(fisher).__name__}, not a dict "
                                 "{parameter name: tensor}: run check(\"estimate_fisher\")")
    return {n: f.detach() for n, f in fisher.items()}


def _train_task(model, tasks, t, method, fns, state, *, seed, epochs, batch_size, lr, momentum,
                device, progress, threads, label):
    """Train task ``t`` (0-based) with ``method``; ``state`` holds the EWC anchors and the
    memory of the earlier tasks. Returns fit's history."""
    task = tasks[t]
    torch.manual_seed(_task_seed(seed, t))
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    x_all, y_all = task.train
    n = x_all.shape[0]
    anchors = state.get("anchors", [])
    memory = state.get("memory")
    lam = method.ewc_lambda

    def step(idx):
        x, y = task.view(x_all[idx]), y_all[idx]
        if method.memory_per_task > 0:
            mx, my = memory if memory is not None else (x[:0], y[:0])
            x, y = fns.mix_replay(x, y, mx, my, method.replay)
        ce = F.cross_entropy(model(x), y)
        loss = ce
        pen = torch.zeros((), device=ce.device)
        if lam > 0:
            for fisher, star in anchors:
                pen = pen + fns.ewc_penalty(model, fisher, star, lam)
            loss = ce + pen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "cross_entropy": ce.detach(), "penalty": pen.detach()}

    iters = epochs * (n // batch_size)
    losses = {"loss": "training loss", "cross_entropy": "cross-entropy", "penalty": "EWC penalty"}
    if lam <= 0:
        losses = {"loss": "training loss"}
    history = training.fit(step, training.batches(torch.arange(n, device=device), batch_size),
                           iter_max=iters, losses=losses, device=device, hint=DIVERGED,
                           progress=progress, desc=f"{label}task {t + 1}/{len(tasks)}, {epochs} epochs",
                           threads=threads)
    # what the next tasks need from this one
    gen = torch.Generator().manual_seed(_task_seed(seed, t))
    if lam > 0 and t + 1 < len(tasks):
        idx = torch.randperm(n, generator=gen)[:method.fisher_samples].to(device)
        xs, ys = task.split("train", idx)
        fisher = _check_fisher(fns.estimate_fisher(model, xs, ys), model)
        for p in model.parameters():
            p.grad = None
        model.train()
        state["anchors"] = [*anchors, (fisher, _snapshot(model))]
    if method.memory_per_task > 0 and t + 1 < len(tasks):
        mx, my = class_balanced(task, method.memory_per_task, gen)
        state["memory"] = (mx, my) if memory is None else (torch.cat([memory[0], mx]), torch.cat([memory[1], my]))
    return history


def _evaluate(model, tasks):
    return [accuracy(model, k, "test") for k in tasks], [accuracy(model, k, "val") for k in tasks]


@dataclass
class FirstTask:
    """The model after task 1, shared by every method (they differ from task 2 on)."""
    network: str
    seed: int
    model_state: dict
    R0: list
    V0: list
    history: dict
    seconds: float


@guard("Training the first task")
def train_first_task(network: str, tasks, *, seed: int = 0, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                     lr: float = LR, momentum: float = MOMENTUM, device=None, progress: bool = True,
                     threads=None) -> FirstTask:
    """Build ``network`` ("mlp" or "cnn") with ``torch.manual_seed(seed)`` and train it on
    task 1 (the same for every method: nothing to remember yet)."""
    device = training.training_device(device)
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = make_network(network, device)
    history = _train_task(model, tasks, 0, NAIVE, Functions(), {}, seed=seed, epochs=epochs,
                          batch_size=batch_size, lr=lr, momentum=momentum, device=device,
                          progress=progress, threads=threads, label=f"{network}: ")
    R0, V0 = _evaluate(model, tasks)
    return FirstTask(network, seed, {k: v.clone() for k, v in model.state_dict().items()}, R0, V0,
                     history, time.perf_counter() - started)


@guard("Continual training")
def continue_training(first: FirstTask, tasks, method: Method, fns: Functions | None = None, *,
                      epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, lr: float = LR,
                      momentum: float = MOMENTUM, device=None, progress: bool = True,
                      threads=None, record_divergence: bool = False) -> Run:
    """Tasks 2, 3, ... with ``method``, from the model ``first`` trained on task 1 (EWC
    estimates task 1's Fisher there; rehearsal draws task 1's memory there). Returns the Run
    (accuracy matrices include the row after task 1). A loss that turns NaN raises
    FloatingPointError, or with ``record_divergence`` ends the run with NaN rows and the
    message in ``Run.diverged`` (the sweep: SGD diverges once lr * lam * F exceeds 2 (1 + momentum))."""
    fns = fns or Functions()
    needed = {"ewc": ("estimate_fisher", "ewc_penalty"), "rehearsal": ("mix_replay",)}.get(method.kind, ())
    for name in needed:
        if getattr(fns, name) is None:
            raise ValueError(f"{method.name} needs {name}: pass Functions({name}=...)")
    device = training.training_device(device)
    started = time.perf_counter()
    model = make_network(first.network, device)
    model.load_state_dict(first.model_state)
    state: dict = {}
    label = f"{first.network} {method.name}: "
    # what task 1 leaves behind for this method (as _train_task does after later tasks)
    histories = [first.history]
    gen = torch.Generator().manual_seed(_task_seed(first.seed, 0))
    if method.kind == "ewc":
        x_all = tasks[0].train[0]
        idx = torch.randperm(x_all.shape[0], generator=gen)[:method.fisher_samples].to(device)
        xs, ys = tasks[0].split("train", idx)
        fisher = _check_fisher(fns.estimate_fisher(model, xs, ys), model)
        for p in model.parameters():
            p.grad = None
        state["anchors"] = [(fisher, _snapshot(model))]
    if method.kind == "rehearsal":
        state["memory"] = class_balanced(tasks[0], method.memory_per_task, gen)
    R, V = [list(first.R0)], [list(first.V0)]
    diverged = ""
    for t in range(1, len(tasks)):
        try:
            histories.append(_train_task(model, tasks, t, method, fns, state, seed=first.seed, epochs=epochs,
                                         batch_size=batch_size, lr=lr, momentum=momentum, device=device,
                                         progress=progress, threads=threads, label=label))
        except FloatingPointError as exc:
            if not record_divergence:
                raise
            diverged = str(exc)
        if diverged:   # the rows of the tasks not trained: NaN
            R.append([float("nan")] * len(tasks))
            V.append([float("nan")] * len(tasks))
            continue
        r, v = _evaluate(model, tasks)
        R.append(r)
        V.append(v)
    return Run(method, np.array(R), np.array(V), model, histories,
               first.seconds + time.perf_counter() - started, diverged)


@guard("The lambda sweep")
def sweep(first: FirstTask, tasks, lambdas, fns: Functions, *, fisher_samples: int = 1000,
          progress: bool = False, **kw) -> list:
    """EWC at each lambda from the same task-1 model; a bar over the lambdas."""
    runs = []
    bar = training.progress_bar(len(lambdas), "lambda sweep") if not progress else None
    for lam in lambdas:
        runs.append(continue_training(first, tasks, ewc(lam, fisher_samples), fns, progress=progress,
                                      record_divergence=True, **kw))
        if runs[-1].diverged:
            print(f"lambda = {lam:g}: diverged ({runs[-1].diverged.split('.')[0]})")
        if bar is not None:
            bar.set_postfix({"lambda": f"{lam:g}", "val": f"{runs[-1].final_val:.3f}"}, refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    return runs


def best(runs) -> Run:
    """The run with the best final average validation accuracy (the sweep's choice; runs that
    diverged are left out)."""
    return max([r for r in runs if not r.diverged], key=lambda r: r.final_val)


def mean_stderr(values) -> tuple:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def collect(results: dict, needs: dict) -> list:
    """The runs of ``results`` ({label: Run}) in the order of ``needs`` ({label: the graded
    function its cell needs}); a run that is missing (its cell stopped on an unfinished
    function) stops here with one line naming that function."""
    from .unfinished import Unfinished

    for label, function in needs.items():
        if results.get(label) is None:
            raise Unfinished(function, "This comparison")
    return [results[label] for label in needs]


# --------------------------------------------------------------------- plots
def plot_matrices(runs, path=None):
    """One heatmap per run: R[i, j], test accuracy on task j after training task i."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.8), squeeze=False)
    for ax, run in zip(axes[0], runs):
        R = np.asarray(run.R) * 100
        T = R.shape[0]
        ax.imshow(R, vmin=0, vmax=100, cmap="viridis")
        for i in range(T):
            for j in range(T):
                ax.text(j, i, f"{R[i, j]:.1f}", ha="center", va="center",
                        color="white" if R[i, j] < 60 else "black", fontsize=10)
        ax.set_xticks(range(T), [f"task {j + 1}" for j in range(T)])
        ax.set_yticks(range(T), [f"after {i + 1}" for i in range(T)])
        ax.set_xlabel("accuracy on")
        ax.set_title(f"{run.method.name}\nfinal average {run.final * 100:.1f}%", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=110)
    return fig


def plot_averages(runs, path=None, title="average test accuracy over the tasks seen"):
    """The average-accuracy curve of each run on one plot."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, run in enumerate(runs):
        avg = run.average * 100
        ax.plot(range(1, len(avg) + 1), avg, "o-", color=f"C{k}", label=f"{run.method.name}: {avg[-1]:.1f}%")
    ax.set_xticks(range(1, len(runs[0].average) + 1))
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=110)
    return fig


def plot_sweep(runs, path=None):
    """The lambda sweep: after the last task, the accuracy on task 1 (stability), on the last
    task (plasticity) and their average, validation split, against lambda (log scale); the
    chosen lambda marked."""
    import matplotlib.pyplot as plt

    diverged = [r.method.ewc_lambda for r in runs if r.diverged]
    runs = [r for r in runs if not r.diverged]
    lams = np.array([r.method.ewc_lambda for r in runs])
    first = np.array([r.V[-1][0] for r in runs]) * 100
    last = np.array([r.V[-1][-1] for r in runs]) * 100
    avg = np.array([r.final_val for r in runs]) * 100
    chosen = best(runs).method.ewc_lambda
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogx(lams, first, "o-", label="task 1 after the last task (stability)")
    ax.semilogx(lams, last, "s-", label="last task (plasticity)")
    ax.semilogx(lams, avg, "^-", color="k", label="average over tasks")
    ax.axvline(chosen, color="gray", ls="--", label=f"best average: lambda = {chosen:g}")
    for k, lam in enumerate(diverged):
        ax.axvline(lam, color="red", ls=":", label="SGD diverged" if k == 0 else None)
    ax.set_xlabel("lambda")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("EWC: stability against plasticity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=110)
    return fig


def table(runs) -> str:
    """Rows: method, accuracy on each task after the last, final average (test)."""
    T = len(runs[0].R)
    head = f"{'method':<32}" + "".join(f"{'task ' + str(j + 1):>9}" for j in range(T)) + f"{'average':>10}"
    lines = [head]
    for r in runs:
        lines.append(f"{r.method.name:<32}" + "".join(f"{100 * a:8.1f}%" for a in r.R[-1])
                     + f"{100 * r.final:9.1f}%")
    return "\n".join(lines)


__all__ = ["CourseCNN", "MLP", "Task", "make_tasks", "accuracy", "average_seen", "class_balanced", "Method",
           "NAIVE", "ewc", "rehearsal", "Functions", "Run", "FirstTask", "train_first_task",
           "continue_training", "sweep", "best", "mean_stderr", "collect", "plot_matrices", "plot_averages", "plot_sweep",
           "table", "replace"]
