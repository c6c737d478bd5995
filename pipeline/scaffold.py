"""``python -m pipeline.scaffold``: the skeleton of a new problem, every file in place.

    python -m pipeline.scaffold --key toy --number 7 --title "A toy problem" --function double_it

writes, and refuses to overwrite:

* ``source/hw10/hw10_<key>.ipynb``: the master notebook (setup cell, one solution cell,
  one check cell with its hidden-tests block, one written answer), every cell with an id;
* ``hw10kit/checks/<key>_probes.py``: the probe that calls the graded function;
* ``hw10kit/checks/<key>.py``: its public checks (``PUBLIC``);
* ``autograder/hw10grader/hidden/<key>.py``: its hidden checks (``HIDDEN``);

and adds the problem's ``Problem(...)`` entry to ``hw10kit/manifest.py``. The graded
function of the skeleton doubles a tensor: replace it, its checks and the notebook's
text with the real problem, then ``make release`` (which validates everything) and
``make test``. docs/adding-a-problem.md walks through it.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from . import colab_setup

#: The last two cells of every notebook: save, then export (hw10kit/export.py).
SUBMIT_TEXT = (
    "## Before you submit\n\nSave this notebook first (Ctrl-S, or File > Save). The cell below then "
    "reads **the saved notebooks from disk**, as the autograder will: it says which graded functions "
    "on disk differ from the ones in this kernel (unsaved work), runs the public checks on the saved "
    "definitions, lists written answers still at *YOUR ANSWER HERE*, and writes `hw10_submission.zip` "
    "(upload it to the Gradescope autograder assignment) and `hw10_printout.html` (the printout for "
    "the written assignment). The same runs from a terminal in the homework folder: "
    "`python -m hw10kit.export`.")

REPO_ROOT = Path(__file__).resolve().parent.parent
MARK = "    # new problems go above this line"


def _cell(cell_id, kind, source, nbgrader=None, tags=None):
    meta = {}
    if nbgrader is not None:
        meta["nbgrader"] = {"schema_version": 3, "locked": not nbgrader.get("solution", False), **nbgrader}
    if tags:
        meta["tags"] = list(tags)
    cell = {"cell_type": kind, "id": cell_id, "metadata": meta, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook(key, number, title, function, points, written_points) -> dict:
    nb_name = f"hw10_{key}.ipynb"
    cells = [
        _cell("title", "markdown", f"# Problem {number}: {title}\n\nFill in the cells marked "
                                   "`# YOUR CODE HERE`, run the check cell after each."),
        _cell("setup-imports", "code", f"import torch\n\n{colab_setup.MARKER}\nfrom hw10kit.checks import check",
              {"grade": False, "grade_id": "setup", "solution": False}),
        _cell(f"q{number}a-heading", "markdown", f"## ({number}a) `{function}` ({points:g} points)"),
        _cell(f"q{number}a-solution", "code", textwrap.dedent(f"""\
            def {function}(x):
                \"\"\"Twice x: a tensor shaped like x.\"\"\"
                ### BEGIN SOLUTION
                # SOLUTION-SENTINEL-7f3a
                return 2 * x
                ### END SOLUTION"""),
              {"grade": False, "grade_id": function, "solution": True}),
        _cell(f"q{number}a-check", "code", textwrap.dedent(f"""\
            check("{function}")
            ### BEGIN HIDDEN TESTS
            # HIDDEN-TEST-SENTINEL-c41d: instructors only (nbgrader autograde); Gradescope runs these in its sandbox
            from hw10grader.local import run_hidden
            run_hidden("{function}")
            ### END HIDDEN TESTS"""),
              {"grade": True, "grade_id": f"{function}_check", "points": points, "solution": False}),
        _cell(f"q{number}b-heading", "markdown", f"## ({number}b) In your own words ({written_points:g} points)"),
        _cell(f"q{number}b-answer", "markdown", "### BEGIN SOLUTION\n<!-- # SOLUTION-SENTINEL-7f3a -->\n"
                                                "**Reference answer.** ...\n### END SOLUTION",
              {"grade": True, "grade_id": f"q{number}b_written", "points": written_points, "solution": True}),
        _cell("submit-heading", "markdown", SUBMIT_TEXT),
        _cell("submit-export", "code", "from hw10kit import export\nexport()", tags=("skip-grader", "export")),
    ]
    for cell in cells:  # nbformat stores sources as lists of lines
        cell["source"] = cell["source"].splitlines(keepends=True)
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                         "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def probes_module(key, function) -> str:
    return textwrap.dedent(f'''\
        """Probes for the {key} problem: they call the student's code and return plain data.
        They run beside the student's code and hold no reference values."""
        from __future__ import annotations

        from .core import lookup, tensor_out, to_numpy


        def {function}_call(ns: dict, inputs: dict) -> dict:
            """Call ``{function}(x)`` on ``inputs["x"]``; report the output's shape and value."""
            import torch

            out = tensor_out(lookup(ns, "{function}")(torch.tensor(inputs["x"])), "{function}'s return value")
            return {{"shape": list(out.shape), "value": to_numpy(out)}}
        ''')


def public_module(key, number, function) -> str:
    return textwrap.dedent(f'''\
        """Public checks for the {key} problem. The grader runs these and its hidden checks."""
        from __future__ import annotations

        import numpy as np

        from . import {key}_probes
        from .core import Check, Mistake, reference_verdict, shape_guard

        Q = "Q{number}(a)"


        def inputs(rng, shape=(4, 3)):
            return {{"x": rng.normal(size=shape).astype(np.float32)}}


        def shape_verdict(inputs, out):
            problem = shape_guard(out["shape"], inputs["x"].shape, "the output", "return a tensor shaped like x")
            return (False, problem) if problem else (True, "the output has the shape of x")


        def value_verdict(inputs, out):
            x = inputs["x"].astype(np.float64)
            return reference_verdict(out["value"], 2 * x, what="{function}(x)", formula="2 x",
                                     mistakes=[Mistake(x, "it returns x unchanged: multiply by 2")])


        PUBLIC = [
            Check(Q, "{function}", "output has the shape of x", 1.0, inputs, {key}_probes.{function}_call,
                  shape_verdict),
            Check(Q, "{function}", "value", 1.0, inputs, {key}_probes.{function}_call, value_verdict),
        ]
        ''')


def hidden_module(key, number, function) -> str:
    return textwrap.dedent(f'''\
        """Hidden checks for the {key} problem (judge side only)."""
        from __future__ import annotations

        from hw10kit.checks import {key}_probes
        from hw10kit.checks.core import Check
        from hw10kit.checks.{key} import Q, inputs, value_verdict

        HIDDEN = [
            Check(Q, "{function}", "value on another shape", 1.0, lambda rng: inputs(rng, (2, 5, 7)),
                  {key}_probes.{function}_call, value_verdict),
        ]
        ''')


def manifest_entry(key, number, title, function, points, written_points) -> str:
    return textwrap.indent(textwrap.dedent(f'''\
        Problem(
            key="{key}", number={number}, title={title!r}, notebook="hw10_{key}.ipynb", keyword="{key}",
            questions=(Question("Q{number}(a)", "{function}", {points:g}),),
            written=(Written("Q{number}(b)", {written_points:g}),),
            public="hw10kit.checks.{key}", probes="hw10kit.checks.{key}_probes",
            hidden="hw10grader.hidden.{key}"),
        '''), "    ")


def scaffold(root: Path, key: str, number: int, title: str, function: str,
             points: float = 3, written_points: float = 2) -> list[Path]:
    """Write the skeleton of a problem under the course ``root``; returns the files written."""
    files = {
        root / "source" / "hw10" / f"hw10_{key}.ipynb":
            json.dumps(notebook(key, number, title, function, points, written_points), indent=1) + "\n",
        root / "hw10kit" / "checks" / f"{key}_probes.py": probes_module(key, function),
        root / "hw10kit" / "checks" / f"{key}.py": public_module(key, number, function),
        root / "autograder" / "hw10grader" / "hidden" / f"{key}.py": hidden_module(key, number, function),
    }
    manifest = root / "hw10kit" / "manifest.py"
    text = manifest.read_text(encoding="utf-8")
    if MARK not in text:
        raise SystemExit(f"{manifest}: the line {MARK.strip()!r} is missing; add the entry by hand")
    if f'key="{key}"' in text:
        raise SystemExit(f"{manifest} already declares a problem {key!r}")
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise SystemExit(f"refusing to overwrite {', '.join(existing)}")
    for path, content in files.items():
        path.write_text(content, encoding="utf-8")
    manifest.write_text(text.replace(MARK, manifest_entry(key, number, title, function, points,
                                                          written_points) + MARK), encoding="utf-8")
    return [*files, manifest]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.scaffold", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="course root (default: this repository)")
    parser.add_argument("--key", required=True, help="short name: module names and hw10_<key>.ipynb")
    parser.add_argument("--number", type=int, required=True, help="the problem's number in the homework")
    parser.add_argument("--title", required=True)
    parser.add_argument("--function", required=True, help="the first graded function's name")
    args = parser.parse_args(argv)
    if not args.key.isidentifier() or not args.function.isidentifier():
        parser.error("--key and --function must be Python identifiers")
    for path in scaffold(args.root.resolve(), args.key, args.number, args.title, args.function):
        print(f"wrote {path}")
    print("Next: replace the skeleton's function, checks and text; then make release && make test.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
