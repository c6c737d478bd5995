"""Grade one submission here exactly as Gradescope would.

``python -m pipeline.grade_local --submission <zip or folder> --results <path>``
unpacks ``autograder/autograder.zip`` into a temporary Gradescope layout
(``<tmp>/autograder/{source,submission,results}``), puts the submission where
Gradescope puts it, runs the zip's own ``run_autograder`` with ``AUTOGRADER_ROOT``
pointing there, and copies ``results.json`` out. ``run_autograder`` runs in a session of
its own, so a wall-clock limit (``timeout_s``) or an interruption kills it with everything
it started there (the judge and its watchdog; the sandboxes run as pool users in sessions
of their own and are swept when their user is leased next).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    # What run_autograder hides from the pool users is hidden before anything is exposed:
    # a batch runs other students' code beside this layout while it is being built.
    for private in (root / "source" / "hw10grader", sub, root / "results"):
        private.chmod(0o700)
    # World-traversable, as on Gradescope, so the sandbox user can reach source/hw10kit.
    for folder in (base, root, root / "source"):
        folder.chmod(0o755)
    return root


class GradingTimeout(RuntimeError):
    """run_autograder outlived its wall-clock limit and was killed. ``partial``: the
    results the judge had checkpointed by then (also copied to the results path), or None."""

    def __init__(self, message: str, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial


_RUNNING: set = set()  # run_autograder processes alive now (kill_running() ends them)
_RUNNING_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group (its session: it leads both) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def kill_running() -> None:
    """Kill every run_autograder this process started that is still running (on Ctrl-C)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        _kill_group(proc)


def autograder_env(root: Path, python: str | None = None, seed: int | None = None,
                   env: dict | None = None) -> dict:
    """The environment run_autograder gets: this one, the layout's root and interpreter."""
    # HW10_LOCAL: a root run from a folder the sandbox users cannot reach may run
    # student code as root, and says so in the results (never on Gradescope).
    if python and os.sep in python:  # run_autograder runs in the layout: a relative path would not hold
        python = os.path.abspath(python)
    run_env = {**os.environ, "HW10_LOCAL": "1", **(env or {}), "AUTOGRADER_ROOT": str(root),
               "HW10_PYTHON": python or sys.executable}
    if seed is not None:
        run_env["HW10_SEED"] = str(seed)
    return run_env


def run_autograder(root: Path, env: dict, log: Path, timeout_s: float | None = None) -> int:
    """Run the layout's ``run_autograder`` with its output going to ``log``; returns its
    exit status. Past ``timeout_s`` seconds, or on any interruption, its session is
    killed (then ``subprocess.TimeoutExpired`` or the interruption propagates)."""
    # Output to a file, not a pipe: a process that outlives the judge while holding the
    # pipe open cannot keep us waiting. Private: the layout is world-traversable.
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        proc = subprocess.Popen([str(root / "run_autograder")], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        return proc.wait(timeout=timeout_s)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def _copy_results(root: Path, results: Path) -> dict | None:
    """Copy the layout's results.json to ``results``; its contents, or None if it has none."""
    written = root / "results" / "results.json"
    if not written.exists():
        return None
    results.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(written, results)
    return json.loads(results.read_text())


def run(zip_path: Path, submission: Path, results: Path, seed: int | None = None,
        python: str | None = None, env: dict | None = None, timeout_s: float | None = None,
        log: Path | None = None) -> dict:
    """Grade ``submission`` through the zip's run_autograder into ``results``; returns the
    results. ``log`` keeps run_autograder's output (default: discarded). Past
    ``timeout_s`` seconds it raises ``GradingTimeout``."""
    base = Path(tempfile.mkdtemp(prefix="hw10-gradescope-"))
    try:
        root = gradescope_layout(zip_path, submission, base)
        log = log or base / "run_autograder.log"
        try:
            status = run_autograder(root, autograder_env(root, python, seed, env), log, timeout_s)
        except subprocess.TimeoutExpired:
            try:
                partial = _copy_results(root, results)
            except (OSError, ValueError):
                partial = None
            raise GradingTimeout(f"run_autograder was still running after {timeout_s:g} s and was killed",
                                 partial) from None
        output = log.read_text(errors="replace")
        # run_autograder's own stdout is what Gradescope keeps in results/stdout; here
        # main() prints the results once, with the path they were copied to.
        if status != 0:
            raise subprocess.CalledProcessError(status, str(root / "run_autograder"), output)
        doc = _copy_results(root, results)
        if doc is None:
            raise RuntimeError(f"run_autograder wrote no results:\n{output}")
        return doc
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
