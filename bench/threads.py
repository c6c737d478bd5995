"""Thread-count benchmark (``python -m bench.threads``): steady it/s of the VAE and the GAN
with 1 and 2 torch threads, on an idle machine and beside one busy core (``yes > /dev/null``).

    python -m bench.threads [--repeats 5] [--vae-iters 1000] [--gan-iters 300] [--out bench/threads.json]

Each round runs every (condition, model, threads) cell once, so that a change in the
machine's load hits every cell alike; the report keeps every rate and the median per cell.
The busy core is a ``yes`` process started by this script and stopped after its cells.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from hw10kit import data
from hw10kit import gan_training as gt
from hw10kit import training
from hw10kit import vae_training as vt
from hw10kit.notebook import load_definitions

ROOT = Path(__file__).resolve().parents[1]
WARM = {"vae": 100, "gan": 30}


def vae_rate(VAE, images, n_threads: int, iters: int) -> float:
    """Steady it/s of ``train_vae`` (z = 64) after WARM["vae"] iterations."""
    torch.manual_seed(0)
    marks = {}
    warm = WARM["vae"]
    vt.train_vae(VAE(64), images, iter_max=warm + iters, seed=0, device="cpu", progress=False,
                 save_every=warm, save_fn=lambda m, i: marks.__setitem__(i, time.perf_counter()),
                 threads=n_threads)
    return iters / (marks[warm + iters] - marks[warm])


def gan_rate(loss_d, loss_g, images, n_threads: int, iters: int) -> float:
    """Steady it/s of ``train_gan`` (default precision) between its WARM["gan"]-th iteration
    and WARM["gan"] + iters (one more iteration follows: the end adds the weight average's BN pass)."""
    torch.manual_seed(0)
    marks = {}
    warm = WARM["gan"]
    g, d = gt.Generator(64), gt.Discriminator()
    gt.train_gan(g, d, images, loss_d, loss_g, iter_max=warm + iters + 1, seed=0, device="cpu",
                 progress=False, save_every=1,
                 save_fn=lambda g_, d_, i: marks.__setitem__(i, time.perf_counter()),
                 threads=n_threads)
    return iters / (marks[warm + iters] - marks[warm])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vae-iters", type=int, default=1000)
    parser.add_argument("--gan-iters", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=["vae", "gan"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "threads.json")
    args = parser.parse_args(argv)
    VAE = load_definitions(str(ROOT / "source" / "hw10" / "hw10_vae.ipynb"))["VAE"]
    ns = load_definitions(str(ROOT / "source" / "hw10" / "hw10_gan.ipynb"))
    loss_d, loss_g = ns["loss_nonsaturating_d"], ns["loss_nonsaturating_g"]
    flat, _ = data.load("train", root=ROOT / "data")
    images = {"vae": flat, "gan": flat.reshape(-1, 1, 28, 28)}
    run = {"vae": lambda n: vae_rate(VAE, images["vae"], n, args.vae_iters),
           "gan": lambda n: gan_rate(loss_d, loss_g, images["gan"], n, args.gan_iters)}
    rates: dict = {}
    loads, others = [], {}
    for round_ in range(args.repeats):
        for condition in ("idle", "busy"):
            hog = None
            if condition == "busy":
                hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
                time.sleep(1.0)
            try:
                for model in args.models:
                    for n in (1, 2):
                        loads.append(os.getloadavg()[0])
                        busy = training.busy_elsewhere()
                        others.setdefault(f"{model}/{condition}/{n}", []).append(busy)
                        rate = run[model](n)
                        rates.setdefault(f"{model}/{condition}/{n}", []).append(round(rate, 2))
                        print(f"round {round_ + 1} {model} {condition} {n} thread(s): {rate:.1f} it/s "
                              f"(other runnable threads at start: {busy})", flush=True)
            finally:
                if hog is not None:
                    hog.terminate()
                    hog.wait()
    medians = {}
    for key, values in rates.items():
        model, condition, n = key.split("/")
        medians.setdefault(model, {}).setdefault(condition, {})[f"{n}_thread{'s' if n != '1' else ''}"] = \
            round(statistics.median(values), 1)
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, Python {platform.python_version()}",
        "method": (f"steady it/s after warm-up (VAE z=64 train_vae, {args.vae_iters} iterations after "
                   f"{WARM['vae']}; GAN train_gan, default precision, {args.gan_iters} iterations after "
                   f"{WARM['gan']}); busy = one `yes > /dev/null` beside the run; {args.repeats} interleaved "
                   "rounds, median"),
        "gan_precision": "bf16" if gt.autocast_dtype("cpu") is not None else "fp32",
        "median_it_s": medians, "rates_it_s": rates,
        "others_running_at_start": others,
        "auto_choice": {"idle": "2 threads when no other thread is runnable (2 cores)",
                        "busy": "1 thread beside one busy core"},
        "load_average_1min_seen": [round(min(loads), 2), round(max(loads), 2)],
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["median_it_s"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
