"""Grading and build figures for the README: ``python -m bench.grading``.

Times (median of ``--runs``): grading the full solution submission through the
Gradescope path (``pipeline.grade_local``, sandbox and all), the same judge with an
empty submission (start-up cost without student code) and ``python -m pipeline
release``; records the autograder zip's size. Writes ``bench/grading.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from pipeline import grade_local

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, runs):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    out = {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times]}
    if isinstance(result, dict) and "tests" in result:
        out["score"] = f"{sum(t['score'] for t in result['tests']):g} / {sum(t['max_score'] for t in result['tests']):g}"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    zip_path = ROOT / "autograder" / "autograder.zip"
    solutions = ROOT / "solutions" / "hw10"
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.zip"
        zipfile.ZipFile(empty, "w").close()
        out = Path(tmp) / "results.json"
        figures = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "grade_solution": timed(lambda: grade_local.run(zip_path, solutions, out), args.runs),
            "grade_empty_zip": timed(lambda: grade_local.run(zip_path, empty, out), args.runs),
            "make_release": timed(lambda: subprocess.run([sys.executable, "-m", "pipeline", "release"],
                                                         cwd=ROOT, check=True, capture_output=True), args.runs),
            "autograder_zip_bytes": zip_path.stat().st_size,
        }
    (ROOT / "bench" / "grading.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
