"""The build's check of the manifest against the course: every problem's checks load and
agree with their declaration (``hw10kit.manifest.load``), and every master and release
notebook agrees with it (points, headings, check cells, graded functions). It also stores
what the notebook's public checks compare with: fixed inputs and the judge's expected
values (``hw10kit/checks/expected/<key>.json``), so that the kit ships no reference formula.

It runs in a child process whose path is the course root being built (``python -m
pipeline.validate --root <root>``), so that it checks that root's own manifest, kit and
hidden checks, not whatever this interpreter imported first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .files import BuildError


def write_expected(root: Path, loaded) -> Path | None:
    """``hw10kit/checks/expected/<key>.json`` for one loaded problem (None: nothing to store)."""
    from hw10kit.checks import wire
    from hw10kit.checks.core import References, stored_cases

    path = root / "hw10kit" / "checks" / "expected" / f"{loaded.problem.key}.json"
    cases = stored_cases(loaded.public, References(loaded.references))
    if not cases:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wire.dumps(cases))
    path.chmod(0o644)
    return path


def problems_in(root: Path, store: bool = False) -> list[str]:
    """Every disagreement between the manifest and the course at ``root`` (empty: none);
    with ``store``, the public checks' expected values are written too."""
    from hw10kit import manifest

    found = []
    source, release = root / "source" / "hw10", root / "release" / "hw10"
    expected = root / "hw10kit" / "checks" / "expected"
    for stale in sorted(expected.glob("*.json")) if store else []:
        if stale.stem not in manifest.BY_KEY:
            stale.unlink()
    for problem in manifest.PROBLEMS:
        try:
            loaded = manifest.load(problem)
            if store:
                write_expected(root, loaded)
        except Exception as exc:  # noqa: BLE001 - report every problem's fault, not the first
            found.append(f"problem {problem.key!r}: {type(exc).__name__}: {exc}")
        for folder, is_release in ((source, False), (release, True)):
            path = folder / problem.notebook
            if not path.is_file():
                if folder == source or release.is_dir():
                    found.append(f"{path.relative_to(root)}: missing (hw10kit/manifest.py declares it "
                                 f"for problem {problem.key!r})")
                continue
            nb = json.loads(path.read_text(encoding="utf-8"))
            found += [f"{'release' if is_release else 'source'}/hw10/{m}"
                      for m in manifest.notebook_problems(problem, nb, release=is_release)]
    return found


def check_course(root: Path) -> str:
    """Run ``problems_in`` for ``root`` in a child process, storing the public checks'
    expected values; BuildError listing every disagreement. Returns the manifest's summary
    (problems, questions, points, checks)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "autograder")]),
           "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "pipeline.validate", "--root", str(root), "--store"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        detail = proc.stdout.strip() or proc.stderr.strip()[-3000:]
        raise BuildError("the manifest (hw10kit/manifest.py) and the course disagree:\n" + detail)
    return proc.stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.validate")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--store", action="store_true",
                        help="also write hw10kit/checks/expected/<key>.json (the build does)")
    args = parser.parse_args(argv)
    try:
        found = problems_in(args.root.resolve(), store=args.store)
    except Exception as exc:  # noqa: BLE001 - the manifest itself failed to load
        print(f"{type(exc).__name__}: {exc}")
        return 1
    for line in found:
        print(f"- {line}")
    if not found:
        from hw10kit.manifest import summary

        print(summary())
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
