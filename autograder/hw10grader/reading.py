"""Reading an untrusted notebook in a child process with a hard deadline.

The reader (``hw10kit.notebook``) runs IPython's input transforms and Python's parser on
the student's text; some inputs make those slow while they hold the GIL. Here they run in
a separate interpreter, limited in memory and killed at the deadline, so the judge's
own time budget cannot be held hostage. Nothing of the notebook is executed.
"""
from __future__ import annotations

import json
import subprocess
import sys

from hw10kit import notebook

from .sandbox import KIT_DIR

MEMORY_MB = 2048

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]) << 20,) * 2)
deadline = time.monotonic() + float(sys.argv[3])
sys.path.insert(0, sys.argv[1])
sys.setrecursionlimit(5000)
from hw10kit import notebook
try:
    answer = notebook.read_answer(notebook.load(sys.stdin.buffer.read()), deadline)
except notebook.NotebookError as exc:
    out = {"error": str(exc)}
else:
    out = {"chunks": [{"cell": c.cell, "source": c.source, "dropped": c.dropped,
                       "tentative": c.tentative, "label": c.label} for c in answer.chunks],
           "problems": answer.problems,
           "written": [[w.grade_id, w.heading, w.filled] for w in answer.written]}
sys.stdout.write(json.dumps(out))
"""


def read_answer(data: bytes, timeout_s: float) -> notebook.Answer:
    """``notebook.read_answer(notebook.load(data))``, computed in a child process that
    is killed after ``timeout_s``. Raises ``notebook.NotebookError`` for the student."""
    timeout_s = max(1.0, timeout_s)
    try:
        # the child stops reading (keeping what it read) a little before it is killed
        proc = subprocess.run([sys.executable, "-I", "-c", _CHILD, KIT_DIR, str(MEMORY_MB),
                               str(max(0.5, timeout_s - 1.5))],
                              input=data, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise notebook.NotebookError(f"it took longer than {timeout_s:.0f} s to read; look for very "
                                     "long lines or huge cells") from None
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise notebook.NotebookError("the reader failed on it (too large or too deeply nested?)") from None
    if "error" in out:
        raise notebook.NotebookError(str(out["error"]))
    chunks = [notebook.Chunk(int(c["cell"]), str(c["source"]), list(c["dropped"]),
                             [int(n) for n in c["tentative"]], str(c["label"])) for c in out["chunks"]]
    written = [notebook.WrittenAnswer(str(g), str(h), bool(f)) for g, h, f in out.get("written", [])]
    return notebook.Answer(chunks, [(int(n), str(m)) for n, m in out["problems"]], written)
