"""DDPM training benchmark (``make bench-diffusion``): the default run's wall time (training
plus sampling 200 digits, start-up included), what each speed choice buys, and sample quality
over seeds.

    python -m bench.diffusion [--iters 3000] [--seeds 3] [--scored 1000] [--parallel] [--grids DIR]
                              [--ablation-iters 40] [--ablation-repeats 3] [--out bench/diffusion.json]
    python -m bench.diffusion --ablation-only     # rerun only the per-choice table into --out
    python -m bench.diffusion --quality-only      # only the seeds (no ablation)

The default run is ``hw10kit.diffusion_training``'s defaults with the solution's ``q_sample``
and ``q_posterior`` (cosine schedule, T = 100, U-Net width 32, batches of 64, 3000 Adam
steps, weight average), as the notebook and ``experiment.py --model diffusion`` run it.
Quality: the classifier Inception Score and Fréchet distance (``hw10kit.sample_metrics``)
of ``--scored`` unconditional samples per seed. Every wall figure is recorded with the
process's CPU seconds and the load average, because the build machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from hw10kit import classifier as clf
from hw10kit import data
from hw10kit import diffusion_training as dt
from hw10kit import sample_metrics as sm
from hw10kit import training
from hw10kit.notebook import load_definitions

ROOT = Path(__file__).resolve().parents[1]


def solution_functions():
    ns = load_definitions(str(ROOT / "source" / "hw10" / "hw10_diffusion.ipynb"))
    return ns["q_sample"], ns["q_posterior"]


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def default_run(seed: int, iters: int, scored: int, threads=None, grids: Path | None = None) -> dict:
    """Train, sample 200, score ``scored``; walls include start-up (data, network)."""
    q_sample, q_posterior = solution_functions()
    load_before = load_average()
    started, cpu0 = time.perf_counter(), time.process_time()
    train_images, _ = data.load("train", root=ROOT / "data")
    torch.manual_seed(seed)
    net = dt.UNet()
    history = dt.train_ddpm(net, train_images, q_sample, iter_max=iters, seed=seed, device="cpu",
                            progress=False, threads=threads)
    trained = time.perf_counter()
    grid = dt.samples(net, q_posterior, n=200, seed=seed, threads=threads)
    done, cpu1 = time.perf_counter(), time.process_time()
    out = {"seed": seed, "iterations": iters, "threads": history["threads"],
           "train_s": round(history["seconds"], 1), "train_it_s": round(iters / history["seconds"], 2),
           "sample_200_s": round(done - trained, 1), "wall_train_and_sample_200_s": round(done - started, 1),
           "cpu_s": round(cpu1 - cpu0, 1), "load_before": load_before, "load_after": load_average(),
           "loss_last500": round(statistics.fmean(history["loss"][-500:]), 4)}
    if scored:
        test_images, _ = data.load("test", root=ROOT / "data")
        imgs = dt.samples(net, q_posterior, n=scored, seed=10_000 + seed, threads=threads)
        classifier = clf.load(ROOT / "data")
        out.update({"scored": scored, "is": round(sm.inception_score(imgs, classifier)[0], 3),
                    "fd": round(sm.frechet_distance(imgs, test_images, classifier), 3)})
    if grids is not None:
        training.save_grid(grid, Path(grids) / f"diffusion_samples_seed{seed}.png", cols=20, pad_value=1.0)
    print(json.dumps(out), flush=True)
    return out


def _worker(seed, iters, scored, threads, grids):
    torch.set_num_threads(threads)
    return default_run(seed, iters, scored, threads=threads, grids=grids)


def variant_it_s(*, width=dt.WIDTH, batch_size=dt.BATCH_SIZE, channels_last=True, bf16=False, compile=False,
                 ema=True, iters=40, warm=5, threads=None) -> tuple:
    """Steady training (wall it/s, CPU it/s) of one combination of the speed choices. The
    CPU rate (steps per second of this process's CPU time) is what a one-thread run gets on
    an idle core, so it stays comparable on a loaded machine, where the wall rate does not."""
    q_sample, _ = solution_functions()
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = dt.UNet(width)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        net = net.to(memory_format=layout)
        run = torch.compile(net) if compile else net
        opt = dt.make_adam(list(net.parameters()), dt.LR, "cpu")
        average = dt.weight_average(net, 0.999) if ema else None
        betas = dt.make_betas()
        step = dt.ddpm_step(run, q_sample, betas, opt, "cpu", torch.bfloat16 if bf16 else None)
        images = dt.to_model_range(data.load("train", root=ROOT / "data")[0])
        batches = training.batches(images, batch_size)
        for i in range(iters + warm):
            if i == warm:
                t0, c0 = time.perf_counter(), time.process_time()
            out = step(next(batches))
            if average is not None:
                average.update_parameters(net)
            if (i + 1) % 50 == 0:
                out["loss"].item()
        return iters / (time.perf_counter() - t0), iters / (time.process_time() - c0)
    finally:
        torch.set_num_threads(old)


def sampler_step_ms(width=dt.WIDTH, n=200, steps=10) -> float:
    """CPU milliseconds of one sampler step for ``n`` images on one thread (a T-step sample
    costs T of these)."""
    _, q_posterior = solution_functions()
    net = dt.UNet(width).to(memory_format=torch.channels_last)
    betas = dt.make_betas(steps)
    dt.reverse_chain(net, q_posterior, betas, n, threads=1)  # warm
    c0 = time.process_time()
    dt.reverse_chain(net, q_posterior, betas, n, threads=1)
    return (time.process_time() - c0) / steps * 1000


DEFAULT = dict(width=dt.WIDTH, batch_size=dt.BATCH_SIZE, channels_last=True, bf16=False, ema=True, threads=1)
ABLATION = [
    ("default: width 32, batches of 64, channels-last, float32, weight average", DEFAULT),
    ("without the weight average", dict(DEFAULT, ema=False)),
    ("contiguous (not channels-last) weights", dict(DEFAULT, channels_last=False)),
    ("bf16 autocast (emulated on a CPU without native bf16)", dict(DEFAULT, bf16=True)),
    ("width 16", dict(DEFAULT, width=16)),
    ("width 48", dict(DEFAULT, width=48)),
    ("batches of 32", dict(DEFAULT, batch_size=32)),
    ("batches of 128", dict(DEFAULT, batch_size=128)),
    ("2 threads (wall rate only: CPU time counts both threads)", dict(DEFAULT, threads=2)),
    ("torch.compile'd network", dict(DEFAULT, compile=True)),
]


def ablation(iters: int, repeats: int) -> dict:
    """Steady it/s of each row (one thread unless the row says otherwise), median of
    ``repeats`` rounds, each round running every row once so that a change in load hits every
    row alike: the wall rate, the CPU-time rate (comparable under load) and images per CPU second."""
    rates = {name: [] for name, _ in ABLATION}
    failed = {}
    for round_ in range(repeats):
        for name, kw in ABLATION:
            if name in failed:
                continue
            try:
                rates[name].append(variant_it_s(iters=iters if not kw.get("bf16") else max(5, iters // 4), **kw))
            except Exception as exc:  # noqa: BLE001 - a variant this torch build cannot run
                failed[name] = f"failed: {type(exc).__name__}"
            print(f"round {round_ + 1}, {name}: {failed.get(name) or rates[name][-1]} (wall, CPU) it/s "
                  f"(load {load_average()})", flush=True)
    table = {}
    for name, kw in ABLATION:
        if name in failed:
            table[name] = failed[name]
            continue
        wall = statistics.median(r[0] for r in rates[name])
        cpu = statistics.median(r[1] for r in rates[name])
        table[name] = {"wall_it_s": round(wall, 2), "cpu_it_s": round(cpu, 2),
                       "images_per_cpu_s": round(cpu * kw.get("batch_size", dt.BATCH_SIZE), 1)}
    table["sampler step, 200 images, 1 thread (CPU ms; T steps per sample)"] = round(sampler_step_ms(), 1)
    return table


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    native = "native bf16" if training.fast_bf16("cpu") else "no native bf16"
    return (f"{cpu}, {os.cpu_count()} cores ({native}), torch {torch.__version__}, Python "
            f"{platform.python_version()}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=dt.ITER_MAX)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scored", type=int, default=1000, help="samples scored per seed")
    parser.add_argument("--parallel", action="store_true",
                        help="train every seed at once, one thread each (quality only: the walls are not speed figures)")
    parser.add_argument("--ablation-iters", type=int, default=40)
    parser.add_argument("--ablation-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "diffusion.json")
    parser.add_argument("--grids", type=Path, help="write each seed's 10 x 20 sample grid into this folder")
    parser.add_argument("--ablation-only", action="store_true")
    parser.add_argument("--quality-only", action="store_true")
    args = parser.parse_args(argv)
    if args.ablation_only:
        report = json.loads(args.out.read_text()) if args.out.exists() else {}
        report["ablation_it_s"] = ablation(args.ablation_iters, args.ablation_repeats)
        report["ablation_date"] = date.today().isoformat()
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    report = {"machine": machine(), "date": date.today().isoformat(), "load_at_start": load_average(),
              "recipe": {"schedule": dt.SCHEDULE, "timesteps": dt.TIMESTEPS, "width": dt.WIDTH,
                         "batch_size": dt.BATCH_SIZE, "iterations": args.iters, "lr": dt.LR, "warmup": dt.WARMUP,
                         "lr_decay": "cosine to 0", "ema": dt.EMA, "grad_clip": dt.GRAD_CLIP,
                         "data_range": "[-1, 1]", "sampler": "ancestral, T steps, x0_hat clipped to [-1, 1]"},
              "floor": {"is_real_test": 9.642, "fd_real_train_vs_test": 1.876}}
    seeds = list(range(args.seeds))
    if args.parallel:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(len(seeds), mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(_worker, seeds, [args.iters] * len(seeds), [args.scored] * len(seeds),
                                 [1] * len(seeds), [args.grids] * len(seeds)))
        report["note"] = "seeds trained side by side, one thread each: walls are not speed figures"
    else:
        runs = [default_run(seed, args.iters, args.scored, grids=args.grids) for seed in seeds]
    report["runs"] = runs
    scored = [r for r in runs if "is" in r]
    if scored:
        report["quality"] = {"scored_per_seed": args.scored,
                             "is_per_seed": [r["is"] for r in scored], "fd_per_seed": [r["fd"] for r in scored],
                             "is_mean": round(statistics.fmean(r["is"] for r in scored), 3),
                             "fd_mean": round(statistics.fmean(r["fd"] for r in scored), 3)}
        report["quality"]["is_at_least_85pct_of_real"] = report["quality"]["is_mean"] >= 0.85 * 9.642
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.quality_only:
        report["ablation_it_s"] = ablation(args.ablation_iters, args.ablation_repeats)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
