"""``python -m hw10grader --submission PATH --results PATH [--seed N] [--budget S]``."""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hw10grader", description=__doc__)
    parser.add_argument("--submission", required=True, help="zip file or folder")
    parser.add_argument("--results", required=True, help="where to write results.json")
    from .settings import value

    parser.add_argument("--seed", type=int, default=value("HW10_SEED"),
                        help="seed of the hidden inputs (default: random; recorded in results)")
    parser.add_argument("--budget", type=float, default=None, help="overall time budget, seconds")
    args = parser.parse_args(argv)
    import subprocess

    from .judge import DEFAULT_BUDGET_S, grade

    budget = args.budget or DEFAULT_BUDGET_S
    # The outside watchdog: a process of its own, so it fires even while this one holds the GIL.
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "hw10grader.watchdog", "--pid", str(os.getpid()),
         "--results", str(args.results), "--after", str(budget + 5)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        doc = grade(args.submission, args.results, seed=args.seed, budget_s=budget)
    finally:
        watchdog.kill()
    score = sum(t["score"] for t in doc["tests"])
    possible = sum(t["max_score"] for t in doc["tests"])
    print(f"{score:g} / {possible:g} -> {args.results}")
    for t in doc["tests"]:
        mark = "PASS" if t["status"] == "passed" else "FAIL"
        print(f"  {mark} {t['name']} ({t['score']:g}/{t['max_score']:g})")
    sys.stdout.flush()
    # results.json is written: leave now, without waiting for a grading thread that
    # may still be stuck on a process the sandbox could not stop.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
