#!/usr/bin/env python
"""Train the HW10 models from a terminal, with the code in your notebook.

    python experiment.py --model vae [--num_latents 64] [--iter_max 10000]
                         [--iter_save 10000] [--runid 0] [--out_dir checkpoints]
                         [--recipe course|tuned] [--compile]
    python experiment.py --model gan [--loss_g nonsaturating|minimax] [--precision auto|bf16|fp32]
    python experiment.py --help                 every model's options
    python experiment.py --model gan --help     the options of one model

Reads the definitions (imports, functions, classes) from the model's notebook next to this
file (``hw10_vae.ipynb``, ``hw10_gan.ipynb``), so save the notebook first; training and
plotting cells are not run. Every model takes the common options (``--num_latents``,
``--iter_max``, ``--iter_save``, ``--runid``, ``--out_dir``, ``--notebook``, ``--device``,
``--threads``, ``--no_progress``) and its own; an option of another model is an error.
Checkpoints (``model-<iteration>.pt``), a 10 x 20 grid of samples (``samples.png``) and the
loss curves (``loss.png``) go to ``<out_dir>/model=<model>_z=<num_latents>_run=<runid>/``.

``--model vae`` ends with the course's summary line on its 100-image test subset,
``NELBO: <x>. KL: <y>. Rec: <z>``; ``--model gan`` with the classifier Inception Score and
Frechet distance of 10 000 samples. Both say what a correct run reaches.

The models come from ``hw10kit/manifest.py``; each one's options and steps are declared
beside its training code (``EXPERIMENT`` in ``hw10kit/<model>_training.py``), and only the
chosen model's code is imported.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the hw10kit/ package shipped beside this file

os.environ.setdefault("MPLBACKEND", "Agg")  # no display needed; set before any pyplot import

HELP = ("-h", "--help")


def fail(message: str):
    """Print a one-line error for the student and exit with status 1."""
    print(f"experiment.py: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def problems() -> dict:
    """``{key: Problem}`` of the manifest's problems that train (their ``experiment``)."""
    from hw10kit.manifest import PROBLEMS

    return {p.key: p for p in PROBLEMS if p.experiment}


def resolve(problem):
    """The problem's ``Experiment``, imported from its "module:attribute"."""
    module, _, attribute = problem.experiment.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _try_resolve(problem):
    try:
        return resolve(problem)
    except Exception as exc:  # noqa: BLE001 - a broken model costs only itself
        return exc


def build_parser(known: dict, shown: dict) -> argparse.ArgumentParser:
    """The parser: ``--model`` (one of ``known``), the common options, and one argument
    group per model in ``shown`` (``{key: Experiment or the exception importing it}``)."""
    from hw10kit import training

    parser = argparse.ArgumentParser(
        prog="experiment.py", description="Train an HW10 model with the code in your notebook.",
        epilog="An option of one model given with another is an error. "
               "`--model <model> --help` lists one model's options.")
    parser.add_argument("--model", choices=sorted(known), required=True, help="which model to train")
    common = parser.add_argument_group("options of every model")
    for option in training.COMMON_OPTIONS:
        option.add_to(common)
    added = {o.flag for o in training.COMMON_OPTIONS}
    for key, experiment in shown.items():
        if isinstance(experiment, Exception):
            parser.add_argument_group(f"--model {key}", f"unavailable: {known[key].experiment} could not be "
                                      f"imported ({type(experiment).__name__}: {experiment})")
            continue
        summary = experiment.summary
        if experiment.defaults:
            summary += " Its defaults: " + ", ".join(f"--{k} {v}" for k, v in experiment.defaults.items()) + "."
        shared = [o.flag for o in experiment.options if o.flag in added]
        if shared:  # declared by an earlier model too: listed there, once
            summary += f" It also takes {', '.join(shared)} (described above)."
        group = parser.add_argument_group(f"--model {key} ({known[key].notebook})", summary)
        for option in experiment.options:
            if option.flag not in added:
                option.add_to(group)
                added.add(option.flag)
        if len(shown) == 1:
            parser.set_defaults(**experiment.defaults)
    return parser


def owners(flag: str, known: dict, skip: str) -> list:
    """The models other than ``skip`` that declare the option ``flag``."""
    found = []
    for key, problem in known.items():
        experiment = _try_resolve(problem) if key != skip else None
        if experiment is not None and not isinstance(experiment, Exception) \
                and any(o.flag == flag for o in experiment.options):
            found.append(key)
    return found


def parse_args(argv=None):
    """``(args, problem, experiment)`` for the chosen model, every option filled in."""
    from hw10kit import training

    argv = list(sys.argv[1:] if argv is None else argv)
    known = problems()
    pre = argparse.ArgumentParser(prog="experiment.py", add_help=False)
    pre.add_argument("--model", choices=sorted(known))
    try:
        chosen = pre.parse_known_args(argv)[0].model
    except SystemExit:
        chosen = None  # an unknown model: the full parser says so below
    if any(a in HELP for a in argv):
        keys = [chosen] if chosen else sorted(known)
        build_parser(known, {k: _try_resolve(known[k]) for k in keys}).parse_args(argv)
    if chosen is None:
        build_parser(known, {}).parse_args(argv)  # exits: --model is missing or unknown
    experiment = _try_resolve(known[chosen])
    if isinstance(experiment, Exception):
        fail(f"--model {chosen} is unavailable: {known[chosen].experiment} could not be imported "
             f"({type(experiment).__name__}: {experiment})")
    parser = build_parser(known, {chosen: experiment})
    args, extra = parser.parse_known_args(argv)
    for token in extra:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            others = owners(flag, known, chosen)
            if others:
                parser.error(f"{flag} is an option of --model {' and --model '.join(others)}, "
                             f"not of --model {chosen}")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for option in (*training.COMMON_OPTIONS, *experiment.options):
        if option.positive and getattr(args, option.dest) < 1:
            parser.error(f"{option.flag} must be a positive integer")
    return args, known[chosen], experiment


def main(argv=None) -> int:
    from hw10kit import training

    args, problem, experiment = parse_args(argv)
    notebook = Path(args.notebook) if args.notebook else HERE / problem.notebook
    try:
        return experiment.run(training.Session(problem.key, args, notebook, HERE))
    except training.ExperimentFailed as exc:
        fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
