"""``make solutions``: run the solutions notebooks top to bottom and keep the outputs.

Input:  ``solutions/hw10/*.ipynb`` as written by ``make release`` (outputs cleared).
Output: ``solutions/hw10/executed/<same name>.ipynb`` with outputs.

The clean notebooks are *not* overwritten, so ``make release`` stays the only
writer of ``solutions/hw10/*.ipynb`` and a rebuild never shows a diff caused by
an earlier execution. The kernel is the ``python3`` kernel of the interpreter
running this module (the venv's), started with cwd ``solutions/hw10`` (so
``experiment.py`` and anything the notebook writes sit where they would in a
student's release folder), ``PYTHONPATH`` starting with the repository root (so
``import hw10kit`` works) and ``HW10_DATA`` pointing at the repository's
``data/``. This trains models: expect it to take a while, on a GPU if there is one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .layout import Layout
from .release import write_notebook  # canonical JSON

def kernel_environment(layout: Layout) -> None:
    """Set the variables the kernel inherits (this process is a one-shot CLI)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(layout.root)] + ([old] if old else []))
    os.environ["HW10_DATA"] = str(layout.data)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def execute_solutions(root: str | Path, timeout: int | None = 3600) -> list[Path]:
    layout = Layout.at(root)
    notebooks = sorted(layout.solutions.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks in {layout.solutions}; run `make release` first")
    kernel_environment(layout)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(layout.solutions)}},
        )
        out = layout.executed / path.name
        start = time.perf_counter()
        print(f"executing {path.relative_to(layout.root)} (cwd {layout.solutions}) ...", flush=True)
        try:
            client.execute()
        except CellExecutionError:
            write_notebook(nb, out)
            print(f"execution failed; partial outputs in {out.relative_to(layout.root)}", flush=True)
            raise
        write_notebook(nb, out)
        print(f"wrote {out.relative_to(layout.root)} in {time.perf_counter() - start:.0f} s", flush=True)
        written.append(out)
    return written
