"""The Gradescope autograder zip, built reproducibly.

Layout at the zip's root (what Gradescope expects)::

    setup.sh                 0755
    run_autograder           0755
    requirements-grader.txt
    hw10grader/...           the judge (from autograder/hw10grader)
    hw10grader/settings.json the build's choices (hidden checks' visibility)
    hw10kit/...              the shared helper package (from hw10kit)

Reproducible: entries sorted by name, no directory entries, every timestamp
1980-01-01 00:00:00 (the zip epoch), Unix modes fixed (0755 for the two
scripts, 0644 for everything else), ``create_system`` fixed to Unix, DEFLATE at
level 9, no archive comment, no extra fields. The zip is written to a
temporary file and moved into place, so a failed build never leaves half a zip.
:func:`write_zip` does that for any list of entries (the kit zip of
:mod:`pipeline.colab_setup` too).
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from .files import BuildError, iter_files
from .layout import AUTOGRADER_EXECUTABLES, AUTOGRADER_ROOT_FILES, Layout

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
UNIX = 3
REGULAR_FILE = 0o100000
#: Kit files only a student's notebook reads: the stored expected values of the public
#: checks (the judge computes its own from the references).
STUDENT_ONLY = ("checks/expected/",)


def zip_entries(layout: Layout) -> list[tuple[str, Path]]:
    """``(name in zip, file on disk)`` pairs, sorted by name."""
    entries: list[tuple[str, Path]] = []
    for name in AUTOGRADER_ROOT_FILES:
        path = layout.autograder / name
        if not path.is_file():
            raise BuildError(f"autograder zip: {path} is missing")
        entries.append((name, path))
    for package, top in (("hw10grader", layout.autograder / "hw10grader"), ("hw10kit", layout.kit)):
        files = iter_files(top) if top.is_dir() else []
        if not files:
            raise BuildError(f"autograder zip: {top} is missing or empty")
        entries.extend((f"{package}/{f.relative_to(top).as_posix()}", f) for f in files
                       if not (package == "hw10kit" and f.relative_to(top).as_posix().startswith(STUDENT_ONLY)))
    return sorted(entries)


def mode_for(name: str) -> int:
    return 0o755 if name in AUTOGRADER_EXECUTABLES else 0o644


def grader_settings():
    """The grader's settings module (``autograder/hw10grader/settings.py``, standalone):
    one home for the visibility values the build may choose."""
    import importlib.util
    import sys

    if "hw10grader_settings" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "autograder" / "hw10grader" / "settings.py"
        spec = importlib.util.spec_from_file_location("hw10grader_settings", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["hw10grader_settings"]


def settings_json(hidden_visibility: str | None = None) -> bytes:
    """``hw10grader/settings.json``: the build's choices the judge reads. The hidden
    checks' visibility comes from ``hidden_visibility``, else ``$HIDDEN_VISIBILITY``
    (``make release HIDDEN_VISIBILITY=after_due_date``), else after_published."""
    import json

    grader = grader_settings()
    value = hidden_visibility or os.environ.get("HIDDEN_VISIBILITY") or grader.DEFAULT_HIDDEN_VISIBILITY
    allowed = grader.HIDDEN_VISIBILITIES
    if value not in allowed:
        raise BuildError(f"HIDDEN_VISIBILITY must be one of {', '.join(allowed)}, not {value!r}")
    return (json.dumps({"hidden_visibility": value}, sort_keys=True) + "\n").encode()


def write_zip(dest: Path, entries: list[tuple[str, bytes]], mode=lambda name: 0o644) -> Path:
    """Write ``(name, data)`` entries to ``dest`` reproducibly (sorted, epoch timestamps,
    ``mode(name)``, DEFLATE level 9), through a temporary file moved into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".zip", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name, data in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.create_system = UNIX
                info.external_attr = (REGULAR_FILE | mode(name)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED,
                            compresslevel=9)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def build_zip(layout: Layout, hidden_visibility: str | None = None) -> dict:
    settings = settings_json(hidden_visibility)
    entries = sorted([(name, path.read_bytes()) for name, path in zip_entries(layout)
                      if name != "hw10grader/settings.json"] + [("hw10grader/settings.json", settings)])
    write_zip(layout.zip, entries, mode_for)
    return {"entries": len(entries), "names": [name for name, _ in entries]}
