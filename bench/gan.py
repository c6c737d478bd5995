"""GAN training benchmark (``make bench-gan``): the fast path against a conventional
pipeline of the same networks, what each speed change buys, and sample quality.

    python -m bench.gan [--iters 10000] [--seeds 3] [--ablation-iters 300] [--out bench/gan.json]

* conventional: torchvision's MNIST with ``ToTensor`` through a shuffled ``DataLoader``
  (batch 100), default Adam, both losses read back every step;
* fast: ``hw10kit.gan_training.train_gan`` (data preloaded as one tensor, fused Adam,
  losses read back every 50 steps).

Both use the same networks, batch size, optimizer settings and the solution's losses.
Quality: the classifier Inception Score of 10 000 samples per seed, and the Fréchet
distance of those samples to the 10 000 test digits (``hw10kit.sample_metrics``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from hw10kit import classifier as clf
from hw10kit import data
from hw10kit import gan_training as gt
from hw10kit import sample_metrics as sm
from hw10kit.notebook import load_definitions

ROOT = Path(__file__).resolve().parents[1]


def solution_losses():
    ns = load_definitions(str(ROOT / "source" / "hw10" / "hw10_gan.ipynb"))
    return ns["loss_nonsaturating_d"], ns["loss_nonsaturating_g"]


def conventional_loader():
    from torchvision import datasets, transforms

    data.prepare(ROOT / "data")
    ds = datasets.MNIST(str(ROOT / "data"), train=True, download=False, transform=transforms.ToTensor())
    return torch.utils.data.DataLoader(ds, batch_size=100, shuffle=True, drop_last=True)


def conventional_run(iters: int, seed: int, loss_d, loss_g):
    """The course's kind of loop: DataLoader batches, default Adam, .item() every step."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    g, d = gt.Generator(64), gt.Discriminator()
    opt_g, opt_d = torch.optim.Adam(g.parameters(), lr=1e-3), torch.optim.Adam(d.parameters(), lr=1e-3)
    loader, i = conventional_loader(), 0
    while i < iters:
        for x, _ in loader:
            ld = loss_d(g, d, x, device="cpu")
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
            lg = loss_g(g, d, x, device="cpu")
            opt_g.zero_grad()
            lg.backward()
            opt_g.step()
            ld.item(), lg.item()
            i += 1
            if i == iters:
                break
    return time.perf_counter() - started, g


def fast_run(iters: int, seed: int, loss_d, loss_g):
    started = time.perf_counter()
    train_images, _ = data.load("train", root=ROOT / "data")
    torch.manual_seed(seed)
    g, d = gt.Generator(64), gt.Discriminator()
    gt.train_gan(g, d, train_images, loss_d, loss_g, iter_max=iters, seed=seed, device="cpu", progress=False)
    return time.perf_counter() - started, g


def variant_it_s(loss_d, loss_g, *, preload, fused, sync_every, threads=None, channels_last=False,
                 compile=False, iters=300, warm=30):
    """Steady-state it/s of one combination of the speed changes."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        g, d = gt.Generator(64), gt.Discriminator()
        if channels_last:
            g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
        make = (lambda m: gt.make_adam(list(m.parameters()), 1e-3, "cpu")) if fused else \
            (lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
        opt_g, opt_d = make(g), make(d)
        fd, fg = (torch.compile(loss_d), torch.compile(loss_g)) if compile else (loss_d, loss_g)
        if preload:
            images = data.load("train", root=ROOT / "data")[0].reshape(-1, 1, 28, 28)
            batches = gt._batches(images, 100, None)
        else:
            def loader_batches():
                while True:
                    for x, _ in conventional_loader():
                        yield x
            batches = loader_batches()
        for i in range(iters + warm):
            if i == warm:
                t0 = time.perf_counter()
            x = next(batches)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            ld = fd(g, d, x, device="cpu")
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            lg = fg(g, d, x, device="cpu")
            opt_g.zero_grad(set_to_none=True)
            lg.backward()
            opt_g.step()
            if (i + 1) % sync_every == 0:
                ld.item(), lg.item()
        return iters / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def quality(g, classifier, test_images) -> dict:
    imgs = gt.samples(g, 10000, seed=0)
    return {"is": round(sm.inception_score(imgs, classifier)[0], 3),
            "fd": round(sm.frechet_distance(imgs, test_images, classifier), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ablation-iters", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gan.json")
    args = parser.parse_args(argv)
    loss_d, loss_g = solution_losses()
    classifier = clf.load(ROOT / "data")
    train_images, _ = data.load("train", root=ROOT / "data")
    test_images, _ = data.load("test", root=ROOT / "data")
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"Python {platform.python_version()}",
              "iterations": args.iters,
              "floor": {"is_real_test": round(sm.inception_score(test_images, classifier)[0], 3),
                        "fd_real_train_vs_test": round(sm.frechet_distance(train_images[:10000], test_images,
                                                                           classifier), 3)}}
    conv_wall, _ = conventional_run(args.iters, 0, loss_d, loss_g)
    runs = [fast_run(args.iters, s, loss_d, loss_g) for s in range(args.seeds)]
    fast_wall = statistics.median(r[0] for r in runs)
    report["speed"] = {"conventional_wall_s": round(conv_wall, 1), "fast_wall_s": round(fast_wall, 1),
                       "ratio_wall": round(conv_wall / fast_wall, 2)}
    per_seed = [quality(g, classifier, test_images) for _, g in runs]
    report["quality"] = {"per_seed": per_seed,
                         "is_mean": round(statistics.fmean(q["is"] for q in per_seed), 3),
                         "fd_mean": round(statistics.fmean(q["fd"] for q in per_seed), 3)}
    report["quality"]["is_within_10pct_of_real"] = report["quality"]["is_mean"] >= 0.9 * report["floor"]["is_real_test"]
    print(json.dumps(report), flush=True)
    ablation = {}
    for name, kw in [("conventional: DataLoader + ToTensor, default Adam, losses read every step",
                      dict(preload=False, fused=False, sync_every=1)),
                     ("+ MNIST preloaded as one tensor", dict(preload=True, fused=False, sync_every=1)),
                     ("+ fused Adam", dict(preload=True, fused=True, sync_every=1)),
                     ("+ losses read every 50 steps (the default fast path)", dict(preload=True, fused=True, sync_every=50)),
                     ("fast path with 1 thread instead of 2", dict(preload=True, fused=True, sync_every=50, threads=1)),
                     ("fast path + channels-last", dict(preload=True, fused=True, sync_every=50, channels_last=True)),
                     ("fast path + torch.compile'd losses", dict(preload=True, fused=True, sync_every=50, compile=True))]:
        try:
            ablation[name] = round(variant_it_s(loss_d, loss_g, iters=args.ablation_iters, **kw), 2)
        except Exception as exc:  # noqa: BLE001 - a variant this torch build cannot run
            ablation[name] = f"failed: {type(exc).__name__}"
    report["ablation_it_s"] = ablation
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
