"""VAE training benchmark: ``make bench-vae`` (``python -m bench.vae``).

Trains the solution notebook's VAE the course's way (Adam 1e-3, batch 100, 10000
iterations) along two pipelines in the same run:

* **conventional**: torchvision's MNIST dataset with ``ToTensor``, a shuffled
  ``DataLoader`` of batch 100, a Bernoulli draw per batch on the host, default Adam,
  the loss read back every step (the course code's progress bar does);
* **fast**: ``hw10kit.vae_training.train_vae`` (MNIST preloaded as one tensor, batches
  sliced from a per-epoch permutation and binarized on the device, fused Adam, the loss
  read every 50 steps).

It reports wall clock for the whole run (start-up included) and steady-state it/s, at
z = 64 and z = 10, the ratio of the two pipelines, test-subset NELBO/KL/Rec over seeds
(mean and standard error), the full-test-set bound, IWAE-100, an ablation (what each
speed change buys), and the opt-in "tuned" recipe. Writes ``bench/vae.json`` and prints
the README's tables.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from hw10kit import data, vae_training as vt
from hw10kit.notebook import load_definitions

ROOT = Path(__file__).resolve().parents[1]
STEADY_FROM = 2000  # iterations before steady state is measured


def solution_vae():
    return load_definitions(ROOT / "solutions" / "hw10" / "hw10_vae.ipynb")["VAE"]


def conventional_loader(batch_size=100):
    import torchvision
    from torchvision import transforms

    ds = torchvision.datasets.MNIST(str(data.prepare(ROOT / "data")), train=True, download=False,
                                    transform=transforms.ToTensor())
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)


def conventional_batches(loader):
    """Binarized batches (100, 784) from the DataLoader, epoch after epoch, forever."""
    while True:
        for xb, _ in loader:
            yield torch.bernoulli(xb.reshape(xb.size(0), -1))


def preloaded_batches(images, batch_size=100):
    """Binarized batches sliced from a per-epoch permutation, as train_vae draws them."""
    while True:
        order = torch.randperm(images.shape[0])
        for start in range(0, images.shape[0] - batch_size + 1, batch_size):
            yield torch.bernoulli(images[order[start:start + batch_size]])


def conventional_run(VAE, z_dim, iters, seed):
    """The conventional pipeline; returns (wall_s, steady_it_s, model)."""
    start = time.perf_counter()
    batches = conventional_batches(conventional_loader())
    torch.manual_seed(seed)
    model = VAE(z_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    it, t_steady = 0, None
    while it < iters:
        loss = model.loss(next(batches))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        "{:.2e}".format(loss.item())  # the course's per-step progress-bar postfix
        it += 1
        if it == STEADY_FROM:
            t_steady = time.perf_counter()
    end = time.perf_counter()
    return end - start, (iters - STEADY_FROM) / (end - t_steady), model


def fast_run(VAE, z_dim, iters, seed, **train_kwargs):
    """The fast pipeline (train_vae); returns (wall_s, steady_it_s, model)."""
    start = time.perf_counter()
    images, _ = data.load("train", root=ROOT / "data")
    torch.manual_seed(seed)
    model = VAE(z_dim)
    marks = {}
    vt.train_vae(model, images, iter_max=iters, seed=seed, progress=False, save_every=1000,
                 save_fn=lambda m, i: marks.__setitem__(i, time.perf_counter()), **train_kwargs)
    end = time.perf_counter()
    return end - start, (iters - STEADY_FROM) / (end - marks[STEADY_FROM]), model


def variant_it_s(VAE, *, preload, fused, sync_every, threads=None, compile=False, iters=1500, warm=200):
    """Steady-state it/s of one combination of the speed changes (z = 64)."""
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = VAE(64)
        params = list(model.parameters())
        opt = vt.make_adam(params, 1e-3, "cpu") if fused else torch.optim.Adam(params, lr=1e-3)
        loss_fn = vt.compiled_loss(model, compile)
        batches = (preloaded_batches(data.load("train", root=ROOT / "data")[0]) if preload
                   else conventional_batches(conventional_loader()))
        first = time.perf_counter()
        for i in range(iters + warm):
            if i == warm:
                t0 = time.perf_counter()
            loss = loss_fn(next(batches))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (i + 1) % sync_every == 0:
                loss.item()
        end = time.perf_counter()
        return iters / (end - t0), t0 - first
    finally:
        torch.set_num_threads(old_threads)


def quality(models, x_subset, test_images, test_labels):
    rows = [vt.evaluate_course(m, test_images, test_labels) for m in models]
    out = {k: _mean_se([r[k] for r in rows]) for k in vt.METRICS}
    out["full_test_nelbo"] = _mean_se([vt.evaluate_full(m, test_images) for m in models])
    out["iwae100"] = _mean_se([vt.evaluate_iwae(m, x_subset, k=100) for m in models])
    return out


def _mean_se(values):
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return [round(mean, 3), round(se, 3)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=3, help="training runs per configuration")
    parser.add_argument("--skip-tuned", action="store_true")
    parser.add_argument("--z-dims", type=int, nargs="+", default=[64, 10])
    parser.add_argument("--quality-only", action="store_true",
                        help="train only the fast path (for quality rows; no speed, no ablation)")
    parser.add_argument("--update", action="store_true",
                        help="merge the new rows into --out instead of replacing it")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "vae.json")
    args = parser.parse_args(argv)
    VAE = solution_vae()
    test_images, test_labels = data.load("test", root=ROOT / "data")
    x_subset, _ = data.fixed_test_subset(test_images, test_labels)
    seeds = list(range(args.seeds))
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"Python {platform.python_version()}",
              "iterations": args.iters, "seeds": seeds, "speed": {}, "quality": {},
              "evaluation": ("vt.evaluate_course: torch.manual_seed(0), torch.bernoulli of the course's 100 "
                             "float32 test images on the CPU, 100 passes continuing that generator")}

    for z_dim in args.z_dims:
        conv, fast = [], []
        if args.quality_only:
            fast = [fast_run(VAE, z_dim, args.iters, s) for s in seeds]
            report["quality"][f"fast_z{z_dim}"] = quality([r[2] for r in fast], x_subset, test_images, test_labels)
            print(json.dumps(report["quality"]), flush=True)
            continue
        for s in seeds:  # interleaved, so that load from elsewhere hits both alike
            conv.append(conventional_run(VAE, z_dim, args.iters, s))
            fast.append(fast_run(VAE, z_dim, args.iters, s))
        c_wall, c_its = statistics.median(r[0] for r in conv), statistics.median(r[1] for r in conv)
        f_wall, f_its = statistics.median(r[0] for r in fast), statistics.median(r[1] for r in fast)
        report["speed"][f"z{z_dim}"] = {
            "conventional": {"wall_s": round(c_wall, 1), "it_s": round(c_its, 1)},
            "fast": {"wall_s": round(f_wall, 1), "it_s": round(f_its, 1)},
            "ratio_wall": round(c_wall / f_wall, 2), "ratio_it_s": round(f_its / c_its, 2)}
        report["quality"][f"fast_z{z_dim}"] = quality([r[2] for r in fast], x_subset, test_images, test_labels)
        report["quality"][f"conventional_z{z_dim}"] = quality([r[2] for r in conv], x_subset, test_images, test_labels)
        if not args.skip_tuned:
            tuned = [fast_run(VAE, z_dim, args.iters, s, recipe="tuned") for s in seeds]
            report["quality"][f"tuned_z{z_dim}"] = quality([r[2] for r in tuned], x_subset, test_images, test_labels)
        print(json.dumps({k: v for k, v in report.items() if k in ("speed", "quality")}), flush=True)

    if args.update and args.out.exists():
        old = json.loads(args.out.read_text())
        for key in ("speed", "quality"):
            old.setdefault(key, {}).update(report[key])
        report = {**old, "speed": old["speed"], "quality": old["quality"]}
    if args.quality_only:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report, indent=1))
        return 0

    ablation = {}
    for name, kw in [("conventional: DataLoader + ToTensor, host Bernoulli, Adam, loss read every step",
                      dict(preload=False, fused=False, sync_every=1)),
                     ("+ MNIST preloaded as one tensor, batches by index", dict(preload=True, fused=False, sync_every=1)),
                     ("+ loss read every 50 steps", dict(preload=True, fused=False, sync_every=50)),
                     ("+ fused Adam (the default fast path)", dict(preload=True, fused=True, sync_every=50)),
                     ("fast path with 1 thread instead of 2", dict(preload=True, fused=True, sync_every=50, threads=1)),
                     ("fast path + torch.compile'd loss", dict(preload=True, fused=True, sync_every=50, compile=True))]:
        its, startup = variant_it_s(VAE, **kw)
        ablation[name] = {"it_s": round(its, 1), "first_200_iterations_s": round(startup, 1)}
    report["ablation_z64"] = ablation

    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
