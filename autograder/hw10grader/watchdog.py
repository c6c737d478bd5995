"""The judge's outside watchdog: a separate process, so no Python code in the judge,
however long it holds the GIL, can keep grading past its budget.

``python -m hw10grader.watchdog --pid P --results PATH --after S`` waits ``S`` seconds;
if the judge ``P`` is still running then, it kills it and marks the last results it
checkpointed as cut short. The judge checkpoints results.json after every question.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from . import results

CUT_SHORT = ("Grading ran out of its overall time budget and was stopped; checks that had not "
             "finished score 0.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has finished
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hw10grader.watchdog")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--after", type=float, required=True)
    args = parser.parse_args(argv)
    end = time.monotonic() + args.after
    while time.monotonic() < end:
        if not _alive(args.pid):
            return 0
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    if not _alive(args.pid):
        return 0
    try:
        os.kill(args.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    results.mark_cut_short(args.results, CUT_SHORT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
