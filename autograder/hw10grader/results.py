"""Gradescope's results.json: built in memory, validated, written once, atomically.

Spec: one entry per check (``name``, ``number``, ``score``, ``max_score``,
``status``, ``output``, ``visibility``); hidden checks are ``after_published`` unless the
build chose ``after_due_date`` or ``visible``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .settings import HIDDEN_VISIBILITIES, hidden_visibility  # noqa: F401 (hidden_visibility: used by the judge)

VISIBLE = "visible"
MAX_OUTPUT = 3000
NOT_RUN = "not run: grading did not reach this check"
#: Every visibility Gradescope accepts (the hidden checks use one chosen at build time).
GRADESCOPE_VISIBILITIES = ("hidden", *HIDDEN_VISIBILITIES)


@dataclass
class Entry:
    number: str
    name: str
    max_score: float
    visibility: str
    score: float = 0.0
    output: str = NOT_RUN
    status: str | None = None  # set for an entry worth no points (a report, not a score)

    def set(self, passed: bool, message: str):
        self.score = self.max_score if passed else 0.0
        self.output = message
        if not self.max_score:
            self.status = "passed" if passed else "failed"

    def to_json(self) -> dict:
        out = self.output if len(self.output) <= MAX_OUTPUT else self.output[:MAX_OUTPUT] + " ..."
        return {"number": self.number, "name": self.name, "score": round(float(self.score), 4),
                "max_score": float(self.max_score), "output": out, "output_format": "text",
                "status": self.status or ("passed" if self.score >= self.max_score else "failed"),
                "visibility": self.visibility}


def clean(value):
    """Every string made safe for UTF-8 JSON (a lone surrogate from a student's
    exception message becomes ``?``), recursively through lists and dicts."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def document(entries, output: str, execution_time: float, extra: dict) -> dict:
    doc = {"execution_time": round(float(execution_time), 2), "output": output,
           "output_format": "text", "test_output_format": "text", "visibility": "visible",
           "stdout_visibility": "hidden", "extra_data": extra,
           "tests": [e.to_json() for e in entries]}
    doc = clean(doc)
    validate(doc)
    return doc


def validate(doc: dict) -> None:
    """Raise ValueError unless ``doc`` follows the parts of the spec we use."""
    if not isinstance(doc.get("tests"), list) or not isinstance(doc.get("output", ""), str):
        raise ValueError("tests must be a list and output a string")
    for t in doc["tests"]:
        for key in ("score", "max_score"):
            if not isinstance(t.get(key), (int, float)) or not math.isfinite(t[key]):
                raise ValueError(f"test {t.get('name')!r}: {key} must be a finite number")
        if t.get("status") not in ("passed", "failed") or not isinstance(t.get("name"), str):
            raise ValueError("each test needs a name and a passed/failed status")
        if t.get("visibility") not in GRADESCOPE_VISIBILITIES:
            raise ValueError(f"bad visibility {t.get('visibility')!r}")
    json.dumps(doc, allow_nan=False)


def write(path: Path, doc: dict) -> None:
    """Write atomically: the file is either the old one or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False, allow_nan=False)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def mark_cut_short(path: Path, note: str) -> None:
    """Add ``note`` to the output of the results last written at ``path`` (a checkpoint
    or the placeholder), or write a minimal valid file when there is none."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        validate(doc)
    except (OSError, ValueError):
        doc = {"output": "", "tests": [], "score": 0}
    doc["output"] = (note + "\n" + str(doc.get("output", ""))).strip()
    for t in doc.get("tests", []):
        if t.get("output") == NOT_RUN:
            t["output"] = "not run: grading was stopped at its overall time budget"
    write(path, clean(doc))
