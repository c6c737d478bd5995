"""GAN training benchmark (``make bench-gan``): the fast path against a conventional
pipeline of the same networks, what each speed change buys, and sample quality.

    python -m bench.gan [--iters 10000] [--seeds 3] [--ablation-iters 300] [--ablation-repeats 3]
                        [--out bench/gan.json]
    python -m bench.gan --ablation-only   # rerun only the per-change table into --out
    python -m bench.gan --speed-only [--speed-pairs 2]   # more paired speed runs into --out

* conventional: torchvision's MNIST with ``ToTensor`` through a shuffled ``DataLoader``
  (batch 100), default Adam, both losses read back every step;
* fast: ``hw10kit.gan_training.train_gan`` with ``precision="auto"`` (data preloaded as
  one tensor, fused Adam, losses read back every 50 steps, channels-last weights, only the
  stepping network recording gradients, bf16 autocast where the CPU has native bf16: the
  default of the notebook and ``experiment.py``), which hands back the generator's weight average.

Both use the same networks, batch size, optimizer settings and the solution's losses,
and all walls include start-up (loading the data, building the networks). Speed is one
run of each (conventional, fast with ``precision="auto"``, the default, and fast in
float32) on all threads, one after the other; the other quality seeds then train side by
side, one thread each.
Quality: the classifier Inception Score of 10 000 samples per seed, and the Fréchet
distance of those samples to the 10 000 test digits (``hw10kit.sample_metrics``), for
each fast seed and for the conventional (float32) run, so that bf16's effect shows.
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
from hw10kit import training
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


def fast_run(iters: int, seed: int, loss_d, loss_g, precision: str = "auto"):
    started = time.perf_counter()
    train_images, _ = data.load("train", root=ROOT / "data")
    torch.manual_seed(seed)
    g, d = gt.Generator(64), gt.Discriminator()
    history = gt.train_gan(g, d, train_images, loss_d, loss_g, iter_max=iters, seed=seed, device="cpu",
                           progress=False, precision=precision)
    return time.perf_counter() - started, g, history


def variant_it_s(loss_d, loss_g, *, preload, fused, sync_every, threads=None, channels_last=False,
                 freeze=False, ema=False, bf16=False, compile=False, iters=300, warm=30):
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
        average = gt.weight_average(g) if ema else None
        gc, dc = g, d
        if compile:
            gc, dc = torch.compile(g), torch.compile(d)
            gc.dim_z = g.dim_z
        if preload:
            images = data.load("train", root=ROOT / "data")[0].reshape(-1, 1, 28, 28)
            batches = training.batches(images, 100)
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
            if freeze:
                gt._records_gradients(d, frozen=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                ld = loss_d(gc, dc, x, device="cpu")
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            if freeze:
                gt._records_gradients(g, frozen=d)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                lg = loss_g(gc, dc, x, device="cpu")
            opt_g.zero_grad(set_to_none=True)
            lg.backward()
            opt_g.step()
            if average is not None:
                average.update_parameters(g)
            if (i + 1) % sync_every == 0:
                ld.item(), lg.item()
        return iters / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


DEFAULT = dict(preload=True, fused=True, sync_every=50, channels_last=True, freeze=True, ema=True)
FAST = dict(DEFAULT, bf16=True)
ABLATION = [
    ("conventional: DataLoader + ToTensor, default Adam, losses read every step",
     dict(preload=False, fused=False, sync_every=1)),
    ("+ MNIST preloaded as one tensor", dict(preload=True, fused=False, sync_every=1)),
    ("+ fused Adam", dict(preload=True, fused=True, sync_every=1)),
    ("+ losses read every 50 steps", dict(preload=True, fused=True, sync_every=50)),
    ("+ channels-last weights", dict(preload=True, fused=True, sync_every=50, channels_last=True)),
    ("+ only the stepping network records gradients", dict(DEFAULT, ema=False)),
    ("+ generator weight average updated every step (precision=\"fp32\")", DEFAULT),
    ("+ bf16 autocast (precision=\"auto\", the default, on this CPU)", FAST),
    ("fast path with 1 thread instead of 2", dict(FAST, threads=1)),
    ("fast path + torch.compile'd networks", dict(FAST, compile=True)),
]


def _seed_worker(seed: int, iters: int, threads: int):
    torch.set_num_threads(threads)
    loss_d, loss_g = solution_losses()
    _, g, history = fast_run(iters, seed, loss_d, loss_g)
    return g.state_dict(), {k: history[k] for k in ("loss_d", "loss_g")}


def other_seeds(seeds, iters: int) -> list:
    """(generator, history) for each seed, trained in parallel processes sharing the cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    seeds = list(seeds)
    if not seeds:
        return []
    workers = min(len(seeds), os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_seed_worker, seeds, [iters] * len(seeds), [threads] * len(seeds)))
    out = []
    for state, history in done:
        g = gt.Generator(64)
        g.load_state_dict(state)
        out.append((g, history))
    return out


def last_losses(history, n=500) -> dict:
    """Mean losses over the last ``n`` iterations (what the notebook's 3(d) answer quotes)."""
    return {key + "_last500": round(statistics.fmean(history[key][-n:]), 3) for key in ("loss_d", "loss_g")}


def quality(g, classifier, test_images) -> dict:
    imgs = gt.samples(g, 10000, seed=0)
    return {"is": round(sm.inception_score(imgs, classifier)[0], 3),
            "fd": round(sm.frechet_distance(imgs, test_images, classifier), 3)}


def ablation(loss_d, loss_g, iters: int, repeats: int = 3) -> dict:
    """Steady it/s of each row of ABLATION: the median of ``repeats`` rounds, each round
    running every row once, so that a change in the machine's load hits every row alike."""
    rates = {name: [] for name, _ in ABLATION}
    failed = {}
    for round_ in range(repeats):
        for name, kw in ABLATION:
            if name in failed:
                continue
            try:
                rates[name].append(variant_it_s(loss_d, loss_g, iters=iters, **kw))
            except Exception as exc:  # noqa: BLE001 - a variant this torch build cannot run
                failed[name] = f"failed: {type(exc).__name__}"
            print(f"round {round_ + 1}, {name}: {failed.get(name) or round(rates[name][-1], 2)} it/s", flush=True)
    return {name: failed.get(name) or round(statistics.median(rates[name]), 2) for name, _ in ABLATION}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ablation-iters", type=int, default=300)
    parser.add_argument("--ablation-repeats", type=int, default=3, help="rounds of the per-change table (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gan.json")
    parser.add_argument("--ablation-only", action="store_true",
                        help="rerun only the per-change it/s table, into the existing --out report")
    parser.add_argument("--speed-only", action="store_true",
                        help="add --speed-pairs paired conventional/fast runs to the existing --out report")
    parser.add_argument("--speed-pairs", type=int, default=2)
    args = parser.parse_args(argv)
    loss_d, loss_g = solution_losses()
    if args.speed_only:
        report = json.loads(args.out.read_text())
        speed = report["speed"]
        pairs = speed.setdefault("pairs", [[speed["conventional_wall_s"], speed["fast_wall_s"]]])
        for _ in range(args.speed_pairs):
            pairs.append([round(conventional_run(args.iters, 0, loss_d, loss_g)[0], 1),
                          round(fast_run(args.iters, 0, loss_d, loss_g)[0], 1)])
            print(f"conventional {pairs[-1][0]} s, fast {pairs[-1][1]} s", flush=True)
            speed["ratio_wall_per_pair"] = [round(c / f, 2) for c, f in pairs]
            speed["ratio_wall_median"] = statistics.median(speed["ratio_wall_per_pair"])
            args.out.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    if args.ablation_only:
        report = json.loads(args.out.read_text())
        report["ablation_it_s"] = ablation(loss_d, loss_g, args.ablation_iters, args.ablation_repeats)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    classifier = clf.load(ROOT / "data")
    train_images, _ = data.load("train", root=ROOT / "data")
    test_images, _ = data.load("test", root=ROOT / "data")
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"Python {platform.python_version()}",
              "iterations": args.iters,
              "fast_recipe": {"lr_d": gt.LR_D, "lr_g": gt.LR_G, "betas": list(gt.BETAS),
                              "lr_decay": "linear to 0", "generator_output": "sigmoid",
                              "generator_weight_average": f"exponential, decay {gt.EMA_DECAY}, "
                                                          "BatchNorm statistics recomputed"},
              "conventional_recipe": "the course's: Adam at 1e-3 for both, betas (0.9, 0.999), constant",
              "floor": {"is_real_test": round(sm.inception_score(test_images, classifier)[0], 3),
                        "fd_real_train_vs_test": round(sm.frechet_distance(train_images[:10000], test_images,
                                                                           classifier), 3)}}
    # Speed: one paired 10 000-iteration run of each, on all threads, one after the other.
    conv_wall, conv_g = conventional_run(args.iters, 0, loss_d, loss_g)
    print(f"conventional: {conv_wall:.1f} s", flush=True)
    fast_wall, fast_g, fast_history = fast_run(args.iters, 0, loss_d, loss_g)
    print(f"fast: {fast_wall:.1f} s", flush=True)
    fp32_wall, fp32_g, fp32_history = fast_run(args.iters, 0, loss_d, loss_g, precision="fp32")
    print(f"fast, float32: {fp32_wall:.1f} s", flush=True)
    report["speed"] = {"conventional_wall_s": round(conv_wall, 1), "fast_wall_s": round(fast_wall, 1),
                       "fast_precision": fast_history["precision"], "fast_threads": fast_history["threads"],
                       "ratio_wall": round(conv_wall / fast_wall, 2),
                       "fast_fp32_wall_s": round(fp32_wall, 1),
                       "ratio_wall_fp32": round(conv_wall / fp32_wall, 2)}
    # Quality: the other seeds train side by side, one thread each (their times are not speed figures).
    runs = [(fast_g, fast_history)] + other_seeds(range(1, args.seeds), args.iters)
    per_seed = [dict(quality(g, classifier, test_images), **last_losses(h)) for g, h in runs]
    report["quality"] = {"conventional_fp32_seed0": quality(conv_g, classifier, test_images),
                         "fast_fp32_seed0": dict(quality(fp32_g, classifier, test_images),
                                                 **last_losses(fp32_history)),
                         "per_seed": per_seed,
                         "is_mean": round(statistics.fmean(q["is"] for q in per_seed), 3),
                         "fd_mean": round(statistics.fmean(q["fd"] for q in per_seed), 3)}
    report["quality"]["is_within_10pct_of_real"] = report["quality"]["is_mean"] >= 0.9 * report["floor"]["is_real_test"]
    print(json.dumps(report), flush=True)
    report["ablation_it_s"] = ablation(loss_d, loss_g, args.ablation_iters, args.ablation_repeats)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
