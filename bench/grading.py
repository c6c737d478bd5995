"""Grading and build figures for the README: ``python -m bench.grading``.

Times, as the median of ``--runs`` rounds, grading the full solution submission (all five
notebooks) through the Gradescope path (``pipeline.grade_local``: the zip's
run_autograder, pool users, fork server), under conditions interleaved round by round so
that they share the machine's noise:

* ``default``: as ``make grade`` grades;
* ``no_forkserver``: the baseline, every worker started anew (``HW10_FORKSERVER=0``);
* ``beside_busy_core``: as ``default``, with one core kept busy by a spinning process;
* ``gradescope_defaults``: in a cgroup of 768 MB and half a CPU (v1 ``memory`` and ``cpu``
  controllers, as Gradescope's default container), ``HW10_PARALLEL=1``; root only.

Also the judge on an empty submission (start-up cost) and ``python -m pipeline release``;
records the zip's size, the date, the machine and its load. Writes ``bench/grading.json``.
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
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CGROUP_V1 = Path("/sys/fs/cgroup")
GRADESCOPE_MEMORY = 768 * 2**20
GRADESCOPE_CPU = (50_000, 100_000)  # quota, period (µs): half a CPU


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_cgroup(name: str) -> list[Path] | None:
    """A v1 memory + cpu cgroup with Gradescope's default limits, or None (not root, no v1)."""
    mem, cpu = CGROUP_V1 / "memory" / name, CGROUP_V1 / "cpu" / name
    if os.geteuid() != 0 or not (mem.parent / "cgroup.procs").exists() or not (cpu.parent / "cgroup.procs").exists():
        return None
    mem.mkdir(exist_ok=True)
    cpu.mkdir(exist_ok=True)
    (mem / "memory.limit_in_bytes").write_text(str(GRADESCOPE_MEMORY))
    (cpu / "cpu.cfs_period_us").write_text(str(GRADESCOPE_CPU[1]))
    (cpu / "cpu.cfs_quota_us").write_text(str(GRADESCOPE_CPU[0]))
    return [mem, cpu]


def remove_cgroup(groups) -> None:
    for group in groups or []:
        try:
            group.rmdir()
        except OSError:
            pass


def grade(submission: Path, out: Path, env: dict | None = None, cgroups=None) -> tuple[float, dict]:
    """Seconds to grade ``submission`` with ``python -m pipeline.grade_local``, and the results."""
    def enter():
        for group in cgroups or []:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.grade_local", "--submission", str(submission),
                    "--results", str(out)], cwd=ROOT, env={**os.environ, **(env or {})}, check=True,
                   capture_output=True, preexec_fn=enter if cgroups else None)
    return time.perf_counter() - start, json.loads(out.read_text())


def score(doc: dict) -> str:
    return f"{sum(t['score'] for t in doc['tests']):g} / {sum(t['max_score'] for t in doc['tests']):g}"


def summary(times: list[float], docs: list[dict]) -> dict:
    return {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times],
            "scores": sorted({score(d) for d in docs})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-gradescope", action="store_true", help="skip the 768 MB, half-CPU condition")
    args = parser.parse_args(argv)
    zip_path = ROOT / "autograder" / "autograder.zip"
    solutions = ROOT / "solutions" / "hw10"
    cgroups = None if args.no_gradescope else make_cgroup(f"hw10bench{os.getpid()}")
    conditions = {
        "default": {},
        "no_forkserver": {"env": {"HW10_FORKSERVER": "0"}},
        "beside_busy_core": {"busy": True},
    }
    if cgroups:
        conditions["gradescope_defaults"] = {"env": {"HW10_PARALLEL": "1"}, "cgroups": cgroups}
    times: dict = {k: [] for k in conditions}
    docs: dict = {k: [] for k in conditions}
    loads = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "results.json"
            for _ in range(args.runs):
                for name, cond in conditions.items():
                    loads.append(os.getloadavg()[0])
                    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if cond.get("busy") else None
                    try:
                        seconds, doc = grade(solutions, out, cond.get("env"), cond.get("cgroups"))
                    finally:
                        if spinner:
                            spinner.kill()
                            spinner.wait()
                    times[name].append(seconds)
                    docs[name].append(doc)
                    print(f"{name}: {seconds:.1f} s, {score(doc)}", file=sys.stderr, flush=True)
            empty = Path(tmp) / "empty.zip"
            zipfile.ZipFile(empty, "w").close()
            empty_times = [grade(empty, out)[0] for _ in range(args.runs)]
            release_times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "pipeline", "release"], cwd=ROOT, check=True, capture_output=True)
                release_times.append(time.perf_counter() - start)
    finally:
        remove_cgroup(cgroups)
    figures = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before_each_grading": {"median": round(statistics.median(loads), 2),
                                                          "max": round(max(loads), 2)}},
        "runs": args.runs,
        "grade_solution": {name: summary(times[name], docs[name]) for name in conditions},
        "gradescope_defaults": ({"memory_bytes": GRADESCOPE_MEMORY, "cpu_quota_us": GRADESCOPE_CPU[0],
                                 "cpu_period_us": GRADESCOPE_CPU[1], "HW10_PARALLEL": 1}
                                if cgroups else "not measured (needs root and cgroup v1)"),
        "grade_empty_zip": {"median_s": round(statistics.median(empty_times), 2),
                            "runs_s": [round(t, 2) for t in empty_times]},
        "make_release": {"median_s": round(statistics.median(release_times), 2),
                         "runs_s": [round(t, 2) for t in release_times]},
        "autograder_zip_bytes": zip_path.stat().st_size,
    }
    (ROOT / "bench" / "grading.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
