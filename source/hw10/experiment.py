#!/usr/bin/env python
"""Train the HW10 models from a terminal, with the code in your notebook.

    python experiment.py --model vae [--num_latents 64] [--iter_max 10000]
                         [--iter_save 10000] [--runid 0] [--out_dir checkpoints]
                         [--recipe course|tuned] [--compile]
    python experiment.py --model gan [--num_latents 64] [--iter_max 10000] [--loss_g nonsaturating|minimax]
                         [--precision fp32|bf16|auto]

Reads the definitions (imports, functions, classes) from ``hw10_vae.ipynb`` next to
this file, so save the notebook first; training and plotting cells are not run. Trains
the notebook's ``VAE`` with the course recipe (Adam, lr 1e-3, batches of 100 binarized
afresh each time), then prints the bound on the full test set and, last, the course's
summary line for the fixed 100-image test subset:

    NELBO: <x>. KL: <y>. Rec: <z>

Checkpoints, a 10 x 20 grid of samples and the loss curve go to
``<out_dir>/model=vae_z=<num_latents>_run=<runid>/``.

``--model gan`` reads ``hw10_gan.ipynb`` the same way and trains the course's GAN networks with
the notebook's recipe (``hw10kit.gan_training.train_gan``: Adam with beta1 = 0.5, the
discriminator at 2e-4 and the generator at 1e-3, both decayed linearly to 0; the generator
kept is the moving average of its weights), the notebook's
``loss_nonsaturating_d`` and the generator loss chosen by ``--loss_g``, writes
checkpoints, ``samples.png`` and ``loss.png`` to ``<out_dir>/model=gan_z=<num_latents>_run=<runid>/``,
and ends with the classifier Inception Score and Fréchet distance of 10 000 samples.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the hw10kit/ package shipped beside this file

os.environ.setdefault("MPLBACKEND", "Agg")  # no display needed; set before any pyplot import

NOTEBOOKS = {"vae": "hw10_vae.ipynb", "gan": "hw10_gan.ipynb"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train an HW10 model with the code in your notebook.")
    parser.add_argument("--model", choices=sorted(NOTEBOOKS), required=True,
                        help="which model to train")
    parser.add_argument("--num_latents", type=int, default=64, help="latent dimension z_dim (default: %(default)s)")
    parser.add_argument("--iter_max", type=int, default=10000, help="training iterations (default: %(default)s)")
    parser.add_argument("--iter_save", type=int, default=10000,
                        help="save a checkpoint every this many iterations and at the end "
                             "(default: %(default)s)")
    parser.add_argument("--runid", type=int, default=0,
                        help="run ID, also the random seed; use several for replicates "
                             "(default: %(default)s)")
    parser.add_argument("--out_dir", default="checkpoints", help="where runs are written (default: %(default)s)")
    parser.add_argument("--notebook", default=None,
                        help="notebook to read the model from (default: the one beside this file)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the fastest)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--recipe", choices=("course", "tuned"), default="course",
                        help="course: Adam at a constant 1e-3 (default); tuned: warm-up to 2e-3, "
                             "then cosine decay to 0 (same iterations, better bound)")
    parser.add_argument("--loss_g", choices=("nonsaturating", "minimax"), default="nonsaturating",
                        help="GAN only: the generator's loss (default: %(default)s)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                        help="GAN only: bf16 runs the networks in bfloat16 autocast (about 2x on CPUs "
                             "with AVX512-BF16 or AMX, same sample quality), auto picks bf16 on such "
                             "CPUs and float32 elsewhere, fp32 turns it off (default: %(default)s)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the loss with torch.compile (falls back quietly)")
    args = parser.parse_args(argv)
    for name in ("num_latents", "iter_max", "iter_save"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    return args


def fail(message: str):
    """Print a one-line error for the student and exit with status 1."""
    print(f"experiment.py: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def load_notebook(notebook: Path) -> dict:
    """The definitions of ``notebook`` (only definitions are run)."""
    from hw10kit.notebook import NotebookError, load_definitions

    if not notebook.is_file():
        fail(f"{notebook} not found: keep experiment.py beside your notebook, or pass --notebook")
    try:
        return load_definitions(str(notebook))
    except (NotebookError, SyntaxError, RuntimeError) as exc:
        fail(f"could not read the definitions in {notebook.name}: {exc}")


def defined(ns: dict, notebook: Path, name: str):
    """``name`` from the notebook's definitions, or a clear error."""
    if ns.get(name) is None:
        fail(f"{notebook.name} defines no `{name}`: run and save the cell that defines it")
    return ns[name]


def train_or_fail(notebook: Path, run_dir: Path, train):
    """Run ``train()``; an unfinished notebook or a diverging loss ends the program with a
    one-line message (and no run folder). Returns what ``train`` returns."""
    from hw10kit.unfinished import Unfinished

    try:
        history = train()
    except Unfinished as exc:
        fail(f"`{exc.name}` in {notebook.name} is not implemented yet: fill it in, run its check "
             "cell, save the notebook, and run again")
    except FloatingPointError as exc:
        fail(str(exc))
    run_dir.mkdir(parents=True, exist_ok=True)
    return history


def run_vae(args) -> int:
    import torch

    from hw10kit import data as hw10data
    from hw10kit import vae_training as vt

    notebook = Path(args.notebook) if args.notebook else HERE / NOTEBOOKS["vae"]
    VAE = defined(load_notebook(notebook), notebook, "VAE")
    device = torch.device(args.device) if args.device else vt.pick_device()
    run_dir = Path(args.out_dir) / f"model=vae_z={args.num_latents}_run={args.runid:04d}"

    root = hw10data.find_root(HERE)  # $HW10_DATA, else data/ beside this file or above
    train_images, _ = hw10data.load("train", root=root, device=device)
    test_images, test_labels = hw10data.load("test", root=root, device=device)
    x_subset, _ = hw10data.fixed_test_subset(test_images, test_labels)

    torch.manual_seed(args.runid)
    model = VAE(z_dim=args.num_latents).to(device)
    print(f"Training VAE (z_dim={args.num_latents}) from {notebook.name} on {device} "
          f"for {args.iter_max} iterations; writing to {run_dir}", flush=True)

    def save(m, iteration):
        run_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to keep
        torch.save(m.state_dict(), run_dir / f"model-{iteration:05d}.pt")

    history = train_or_fail(notebook, run_dir, lambda: vt.train_vae(
        model, train_images, iter_max=args.iter_max, seed=args.runid, device=device,
        progress=not args.no_progress, save_every=args.iter_save, save_fn=save,
        recipe=args.recipe, compile=args.compile))

    import matplotlib.pyplot as plt

    fig = vt.plot_loss_curve(history, run_dir / "loss.png",
                             title=f"VAE training (z_dim={args.num_latents}, run {args.runid})")
    plt.close(fig)
    torch.manual_seed(args.runid)
    vt.save_sample_grid(model, run_dir / "samples.png", rows=10, cols=20)
    full = vt.evaluate_full(model, test_images, seed=0)
    metrics = vt.evaluate_course(model, test_images, test_labels, passes=100)
    niwae = vt.evaluate_iwae(model, x_subset, k=100)
    print(f"Wrote {run_dir}/: model-{args.iter_max:05d}.pt (and every --iter_save), loss.png, samples.png")
    print(f"Negative ELBO on the full test set (10000 images; not in the course code): {full:.4f}")
    print(f"Negative IWAE-100 bound on the test subset (tighter estimate of -log p(x); it uses your "
          f"encoder, decoder and prior, with its own sampling z = m + sqrt(v) * eps): {niwae:.4f}")
    print(expectation(metrics["nelbo"], args.num_latents, args.iter_max))
    print("Test subset (100 images, averaged over 100 passes):")
    print(vt.summary_line(metrics), flush=True)
    return 0


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


def run_gan(args) -> int:
    import torch

    from hw10kit import data as hw10data
    from hw10kit import gan_training as gt
    notebook = Path(args.notebook) if args.notebook else HERE / NOTEBOOKS["gan"]
    ns = load_notebook(notebook)
    loss_d = defined(ns, notebook, "loss_nonsaturating_d")
    loss_g = defined(ns, notebook, "loss_nonsaturating_g" if args.loss_g == "nonsaturating" else "loss_minimax_g")
    device = torch.device(args.device) if args.device else gt.pick_device()
    run_dir = Path(args.out_dir) / f"model=gan_z={args.num_latents}_run={args.runid:04d}"
    data_root = hw10data.find_root(HERE)
    train_images, _ = hw10data.load("train", root=data_root, device=device)

    torch.manual_seed(args.runid)
    g, d = gt.Generator(dim_z=args.num_latents), gt.Discriminator()
    print(f"Training a GAN (z_dim={args.num_latents}, {args.loss_g} generator loss) from {notebook.name} "
          f"on {device} for {args.iter_max} iterations; writing to {run_dir}", flush=True)

    def save(g_, d_, iteration):
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"g": g_.state_dict(), "d": d_.state_dict()}, run_dir / f"model-{iteration:05d}.pt")

    history = train_or_fail(notebook, run_dir, lambda: gt.train_gan(
        g, d, train_images, loss_d, loss_g, iter_max=args.iter_max, seed=args.runid,
        device=device, progress=not args.no_progress, save_every=args.iter_save, save_fn=save,
        precision=args.precision))
    import matplotlib.pyplot as plt

    plt.close(gt.plot_losses(history, run_dir / "loss.png",
                             title=f"GAN training (z_dim={args.num_latents}, run {args.runid})"))
    gt.save_sample_grid(g, run_dir / "samples.png", rows=10, cols=20, seed=args.runid)
    last = slice(-500, None)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"{args.iter_max} iterations in {history['seconds']:.0f} s "
          f"({args.iter_max / history['seconds']:.1f} it/s, {history['precision']})")
    print(f"Wrote {run_dir}/: model-{args.iter_max:05d}.pt (and every --iter_save), loss.png, samples.png")
    print(f"Mean losses over the last 500 iterations: discriminator {mean(history['loss_d'][last]):.4f}, "
          f"generator {mean(history['loss_g'][last]):.4f}", flush=True)
    print_sample_quality(g, data_root)
    return 0


def print_sample_quality(g, data_root) -> None:
    """The classifier Inception Score and Fréchet distance of 10 000 samples."""
    from hw10kit import classifier as clf
    from hw10kit import data as hw10data
    from hw10kit import gan_training as gt
    from hw10kit import sample_metrics as sm

    test_images, _ = hw10data.load("test", root=data_root)
    model = clf.load(data_root)
    quality = sm.report(gt.samples(g, 10000, seed=0), test_images, model)
    print(f"Classifier Inception Score of 10000 samples: {quality['is'][0]:.2f} "
          f"(real test digits: {quality['is_reference'][0]:.2f}; 10 is the most)")
    print(f"Frechet distance to the test digits (classifier features): {quality['fd']:.2f} (0 is identical)")


def main(argv=None) -> int:
    args = parse_args(argv)
    runners = {"vae": run_vae, "gan": run_gan}
    return runners[args.model](args)


if __name__ == "__main__":
    sys.exit(main())
