"""Grade one submission here exactly as Gradescope would.

``python -m pipeline.grade_local --submission <zip or folder> --results <path>``
unpacks ``autograder/autograder.zip`` into a temporary Gradescope layout
(``<tmp>/autograder/{source,submission,results}``), puts the submission where
Gradescope puts it, runs the zip's own ``run_autograder`` with ``AUTOGRADER_ROOT``
pointing there, and copies ``results.json`` out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gradescope_layout(zip_path: Path, submission: Path, base: Path) -> Path:
    """Build ``base/autograder`` as Gradescope lays it out; returns that folder."""
    root = base / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    for name in ("run_autograder", "setup.sh"):
        (root / "source" / name).chmod(0o755)
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    sub = root / "submission"
    if submission.is_dir():
        shutil.copytree(submission, sub, symlinks=True)
    else:
        sub.mkdir(parents=True)
        shutil.copy(submission, sub / submission.name)
    (root / "results").mkdir()
    # World-traversable, as on Gradescope, so the sandbox user can reach source/hw10kit.
    for folder in (base, root, root / "source"):
        folder.chmod(0o755)
    return root


def run(zip_path: Path, submission: Path, results: Path, seed: int | None = None,
        python: str | None = None, env: dict | None = None) -> dict:
    base = Path(tempfile.mkdtemp(prefix="hw10-gradescope-"))
    try:
        root = gradescope_layout(zip_path, submission, base)
        # HW10_LOCAL: a root run from a folder the sandbox users cannot reach may run
        # student code as root, and says so in the results (never on Gradescope).
        run_env = {**os.environ, "HW10_LOCAL": "1", **(env or {}), "AUTOGRADER_ROOT": str(root),
                   "HW10_PYTHON": python or sys.executable}
        if seed is not None:
            run_env["HW10_SEED"] = str(seed)
        # run_autograder's own stdout is what Gradescope keeps in results/stdout; here
        # main() prints the results once, with the path they were copied to.
        proc = subprocess.run([str(root / "run_autograder")], cwd=root, env=run_env, check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not (root / "results" / "results.json").exists():
            raise RuntimeError(f"run_autograder wrote no results:\n{proc.stdout}")
        results.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "results" / "results.json", results)
        return json.loads(results.read_text())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", required=True, type=Path)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--zip", type=Path, default=ROOT / "autograder" / "autograder.zip")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--python", default=None,
                        help="the grader's interpreter (default: this one, the development .venv)")
    args = parser.parse_args(argv)
    if not args.submission.exists():
        parser.error(f"{args.submission} does not exist")
    python = args.python or sys.executable
    doc = run(args.zip, args.submission.resolve(), args.results.resolve(), args.seed, python=python)
    score = sum(t["score"] for t in doc["tests"])
    print(f"{score:g} / {sum(t['max_score'] for t in doc['tests']):g} in {doc.get('execution_time')} s "
          f"-> {args.results.resolve()}")
    for t in doc["tests"]:
        print(f"  {'PASS' if t['status'] == 'passed' else 'FAIL'}  {t['name']} "
              f"({t['score']:g}/{t['max_score']:g})")
    print("\n" + doc.get("output", ""))
    if args.python is None:
        print(f"\nGraded with {python}, the development environment, not the one setup.sh builds "
              "on Gradescope. For that one: make grader-env, then make grade ... "
              "GRADER_PYTHON=.grader-venv/bin/python")
    return 0


if __name__ == "__main__":
    sys.exit(main())
