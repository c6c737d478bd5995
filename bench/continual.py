"""Continual-learning benchmark: ``make bench-continual`` (``python -m bench.continual``).

With the solution notebook's ``estimate_fisher``, ``ewc_penalty`` and ``mix_replay`` (read
from the master notebook with the grader's reader), on permuted MNIST (3 tasks), the MLP:

1. each seed's task-1 model (shared by its methods);
2. the lambda sweep on seed 0 (the notebook's), chosen on the validation splits; naive and
   rehearsal (1000 per task, 128 replayed per batch) on every seed; naive fine-tuning of the
   course's CNN at this lr and at the course's 0.01, and of the MLP at 0.01, seed 0 (the
   notebook's 5(a)ii comparison);
3. EWC at the chosen lambda on the other seeds; the final average test accuracy after 3
   tasks, mean and standard error over the seeds (seed 0's EWC run is the sweep's);
4. with ``--notebook``: the whole solution notebook executed (nbclient), its wall clock.

``--jobs N`` runs N of the runs side by side in spawned processes with one CPU thread each
(on a busy shared machine that takes a larger share of it; accuracy does not change).

Every timing is printed with the load average beside it (the machine is shared). Writes
``bench/continual.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hw10kit import continual_training as ct
from hw10kit.notebook import load_definitions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "source" / "hw10" / "hw10_continual.ipynb"
OUT = ROOT / "bench" / "continual.json"
LAMBDAS = (1, 10, 100, 1000, 10000)
COURSE = {"naive": (43.3, 40.8), "EWC (course's Fisher, lambda = 0.4)": (58.6, 57.4),
          "rehearsal of the entire earlier training sets": (91.8, 87.6)}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def summary(run: ct.Run) -> dict:
    return {"method": run.method.name, "R": np.round(run.R, 4).tolist(), "V": np.round(run.V, 4).tolist(),
            "diverged": run.diverged,
            "average": np.round(run.average, 4).tolist(), "final": round(run.final, 4),
            "final_val": round(run.final_val, 4), "seconds": round(run.seconds, 1)}


def execute_notebook() -> dict:
    """Run the solution notebook top to bottom (training cells included), as ``make solutions``
    does, and time it."""
    import nbformat
    from nbclient import NotebookClient

    from pipeline.execute import kernel_environment
    from pipeline.layout import Layout

    layout = Layout.at(ROOT)
    kernel_environment(layout)
    path = layout.solutions / NOTEBOOK.name
    nb = nbformat.read(path, as_version=4)
    before = load()
    started = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(layout.solutions)}}).execute()
    seconds = time.perf_counter() - started
    layout.executed.mkdir(parents=True, exist_ok=True)
    from pipeline.release import write_notebook

    write_notebook(nb, layout.executed / path.name)
    return {"seconds": round(seconds, 1), "load_before": before, "load_after": load()}


def _setup():
    ns = load_definitions(str(NOTEBOOK))
    fns = ct.Functions(ns["estimate_fisher"], ns["ewc_penalty"], ns["mix_replay"])
    device = ct.training.pick_device()
    return fns, device, ct.make_tasks(device)


def _first(seed, tasks, device, folder: Path):
    """The seed's task-1 model: trained once, kept in ``folder`` for the other jobs."""
    path = folder / f"first-{seed}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    first = ct.train_first_task("mlp", tasks, seed=seed, device=device, progress=False, threads=THREADS)
    torch.save(first, path)
    print(f"seed {seed}: task 1 {first.R0[0] * 100:.1f}% in {first.seconds:.0f} s (load {load()})", flush=True)
    return first


THREADS = None  # "auto"; 1 per job when jobs run side by side


def job(kind: str, seed: int, lams, folder: str) -> list:
    """One job: ("sweep", seed, lambdas), ("naive" | "rehearsal", seed, None) or ("EWC", seed, [lam])."""
    global THREADS
    if os.environ.get("HW10_BENCH_THREADS"):
        THREADS = int(os.environ["HW10_BENCH_THREADS"])
    fns, device, tasks = _setup()
    first = _first(seed, tasks, device, Path(folder))
    methods = {"naive": [ct.NAIVE], "rehearsal": [ct.rehearsal(1000, 128)]}.get(kind) or [ct.ewc(l) for l in lams]
    out = []
    for method in methods:
        cpu = time.process_time()
        run = ct.continue_training(first, tasks, method, fns, device=device, progress=False, threads=THREADS,
                                   record_divergence=kind == "sweep")
        out.append(summary(run) | {"seed": seed, "lambda": method.ewc_lambda, "load_after": load(),
                                   "diverged": run.diverged, "cpu_seconds": round(time.process_time() - cpu, 1)})
        print(f"seed {seed} {method.name}: val {run.final_val * 100:.2f}% test {run.final * 100:.2f}% "
              f"{(run.R * 100).round(1).tolist()} ({run.seconds:.0f} s, load {load()})", flush=True)
    return out


def first_job(seed: int, folder: str) -> None:
    global THREADS
    if os.environ.get("HW10_BENCH_THREADS"):
        THREADS = int(os.environ["HW10_BENCH_THREADS"])
    _, device, tasks = _setup()
    _first(seed, tasks, device, Path(folder))


def _cnn(folder: str) -> dict:
    """Naive fine-tuning of the course's CNN, seed 0: at this bundle's lr and at the course's
    0.01 (the notebook's 5(a)ii comparison, with the MLP at 0.01 too)."""
    global THREADS
    if os.environ.get("HW10_BENCH_THREADS"):
        THREADS = int(os.environ["HW10_BENCH_THREADS"])
    _, device, tasks = _setup()
    out = {}
    for name, lr in (("cnn", ct.LR), ("cnn", 0.01), ("mlp", 0.01)):
        cpu = time.process_time()
        first = ct.train_first_task(name, tasks, seed=0, lr=lr, device=device, progress=False, threads=THREADS)
        run = ct.continue_training(first, tasks, ct.NAIVE, lr=lr, device=device, progress=False, threads=THREADS)
        out[f"{name}_lr{lr:g}"] = summary(run) | {"load_after": load(), "cpu_seconds": round(time.process_time() - cpu, 1)}
        print(f"{name} naive, lr {lr:g}: final {run.final * 100:.2f}% {(run.R * 100).round(1).tolist()} "
              f"({run.seconds:.0f} s, load {load()})", flush=True)
    return out


def _run_all(jobs, workers: int):
    """Run ``jobs`` [(fn, args)], side by side in ``workers`` fresh processes (spawned, one
    CPU thread each) or one after the other; results in order."""
    if workers <= 1:
        return [fn(*a) for fn, a in jobs]
    import concurrent.futures as cf
    import multiprocessing as mp

    os.environ["HW10_BENCH_THREADS"] = "1"
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return [f.result() for f in [pool.submit(fn, *a) for fn, a in jobs]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (1 CPU thread each)")
    parser.add_argument("--notebook", action="store_true", help="also execute and time the solution notebook")
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN comparison")
    parser.add_argument("--folder", help="keep (and reuse) each seed's task-1 model here")
    args = parser.parse_args(argv)
    import tempfile

    out = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                       "cpus": os.cpu_count(), "device": str(ct.training.pick_device())},
           "date": time.strftime("%Y-%m-%d"), "course": COURSE, "jobs": args.jobs, "recipe": {
               "network": "mlp 784-400-400-10, dropout 0.2", "optimizer": f"SGD lr {ct.LR} momentum {ct.MOMENTUM}, "
               "fresh per task", "batch_size": ct.BATCH_SIZE, "epochs_per_task": ct.EPOCHS, "fisher_samples": 1000,
               "memory_per_task": 1000, "replay_per_batch": 128, "validation_per_task": ct.VALIDATION}}
    started = time.perf_counter()
    out["load_before"] = load()
    print(f"load {load()}", flush=True)
    sweep_seed, others = args.seeds[0], args.seeds[1:]
    with (tempfile.TemporaryDirectory() if not args.folder else contextlib.nullcontext(args.folder)) as folder:
        _run_all([(first_job, (s, folder)) for s in args.seeds], args.jobs)  # each seed's task 1, kept
        phase1 = [] if args.no_cnn else [(_cnn, (folder,))]          # the longest first
        phase1 += [(job, ("sweep", sweep_seed, [lam], folder)) for lam in LAMBDAS]
        phase1 += [(job, (kind, s, None, folder)) for s in args.seeds for kind in ("naive", "rehearsal")]
        results = _run_all(phase1, args.jobs)
        cnn = None if args.no_cnn else results.pop(0)
        sweep = [r for runs in results[:len(LAMBDAS)] for r in runs]
        others_runs = [r for runs in results[len(LAMBDAS):] for r in runs]
        chosen = max([r for r in sweep if not r["diverged"]], key=lambda r: r["final_val"])["lambda"]
        ewc = [r for runs in _run_all([(job, ("EWC", s, [chosen], folder)) for s in others], args.jobs) for r in runs]
    out["sweep"] = {"seed": sweep_seed, "chosen_lambda": chosen, "runs": sweep}
    by_kind = {"naive": [], "EWC": [r for r in sweep if r["lambda"] == chosen], "rehearsal": []}
    for r in others_runs:
        by_kind["rehearsal" if r["method"].startswith("rehearsal") else "naive"].append(r)
    by_kind["EWC"].extend(ewc)
    out["methods"] = {}
    for key, runs in by_kind.items():
        mean, se = ct.mean_stderr([r["final"] for r in runs])
        out["methods"][key] = {"final_mean": round(mean, 4), "final_stderr": round(se, 4), "runs": runs,
                               "task1_after_last_mean": round(float(np.mean([r["R"][-1][0] for r in runs])), 4)}
        print(f"{key:>10}: {mean * 100:.2f} ± {se * 100:.2f}% over seeds {[r['seed'] for r in runs]}", flush=True)
    if cnn is not None:
        out["naive_cnn_mlp"] = cnn
    out["training_seconds"] = round(time.perf_counter() - started, 1)
    out["load_after_training"] = load()
    if args.notebook:
        out["notebook"] = execute_notebook()
        print(f"solution notebook: {out['notebook']}", flush=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")
    m = out["methods"]
    ok = m["EWC"]["final_mean"] >= 0.90 and m["rehearsal"]["final_mean"] >= 0.93 and \
        m["naive"]["final_mean"] < m["EWC"]["final_mean"] < m["rehearsal"]["final_mean"]
    print("targets " + ("met" if ok else "NOT met") + ": EWC >= 90%, rehearsal >= 93%, naive < EWC < rehearsal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
