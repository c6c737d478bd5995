"""Command line: ``python -m pipeline {release,solutions} [--root DIR] [-v]``.

``--root`` (before or after the command) names the course root holding
``source/``, ``hw10kit/``, ``data/``, ``autograder/`` and ``nbgrader_config.py``;
it defaults to the repository this package lives in. The tests build into a
temporary copy this way.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                        help="course root (default: the repository holding this package)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show nbgrader's info log")
    parser = argparse.ArgumentParser(prog="python -m pipeline", parents=[common],
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", parents=[common],
                   help="build release/, solutions/ and autograder/autograder.zip")
    run = sub.add_parser("solutions", parents=[common],
                         help="execute solutions/hw10/*.ipynb into solutions/hw10/executed/")
    run.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    args = parser.parse_args(argv)
    root = getattr(args, "root", REPO_ROOT).resolve()
    verbose = getattr(args, "verbose", False)

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    if args.command == "release":
        from .files import BuildError
        from .release import build, format_summary
        try:
            summary = build(root)
        except BuildError as exc:
            print(f"pipeline release: {exc}", file=sys.stderr)
            return 1
        print(format_summary(summary))
        return 0

    from .execute import execute_solutions
    execute_solutions(root, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
