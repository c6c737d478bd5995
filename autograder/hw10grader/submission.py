"""Finding the student's notebooks in whatever they uploaded.

Zips are unpacked defensively (no path escape, no links, caps on entries and on
uncompressed bytes). Notebooks are matched by their release name anywhere in the
tree, tolerating nesting folders, browser and Colab renames (``hw10_vae (1).ipynb``,
``Copy of hw10_vae.ipynb``) and the debris of macOS, Windows and Jupyter.
"""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# the rules for renamed copies and sizes, shared with the student's export
from hw10kit.handin import MAX_NOTEBOOK_BYTES, normalized

MAX_ENTRIES = 5000
MAX_BYTES = 500 * 1024 * 1024
MAX_DEPTH = 12
DEBRIS_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".git", ".Trash"}
DEBRIS_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class SubmissionError(Exception):
    """The upload cannot be read; the message is written for the student."""


def unpack_zip(path: Path, dest: Path) -> list:
    """Extract ``path`` into ``dest`` safely. Entries that cannot be extracted (bad
    names, CRC errors, encryption, a file where a folder is) are skipped; returns
    one note per skipped entry."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(f"{path.name} is not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise SubmissionError(f"the zip holds {len(infos)} entries; at most {MAX_ENTRIES} are read")
        total, skipped = 0, []
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
            if (not parts or name.startswith("/") or ".." in parts or ":" in parts[0]
                    or stat.S_ISLNK(info.external_attr >> 16)):
                continue  # absolute, escaping, drive-letter or symlink entries are skipped
            target = dest.joinpath(*parts)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        total += len(block)
                        if total > MAX_BYTES:
                            raise SubmissionError("the zip unpacks to more than "
                                                  f"{MAX_BYTES // 2**20} MB; submit only your notebooks")
                        out.write(block)
            except SubmissionError:
                raise
            except (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError,
                    ValueError, zlib.error) as exc:
                skipped.append(f"skipped {name[:80]!r} in the zip ({type(exc).__name__})")
    return skipped


def prepare(submission: Path, workdir: Path, notes: list | None = None) -> Path:
    """A folder holding the submission's files: a zip is unpacked into ``workdir``;
    a folder holding only zips (and no notebooks) has those unpacked too. Entries
    skipped while unpacking are added to ``notes``."""
    notes = [] if notes is None else notes
    submission = Path(submission)
    if submission.is_file():
        root = workdir / "unpacked"
        root.mkdir(parents=True, exist_ok=True)
        if zipfile.is_zipfile(submission):
            notes.extend(unpack_zip(submission, root))
        else:
            shutil.copy(submission, root / submission.name)
        return root
    if not submission.is_dir():
        raise SubmissionError("no submission was found")
    if not list(_walk(submission, ".ipynb")):
        zips = list(_walk(submission, ".zip"))
        if zips:
            root = workdir / "unpacked"
            for i, z in enumerate(zips):  # named after the zip, so feedback reads "hw10.zip/..."
                folder = root / z.name if not (root / z.name).exists() else root / f"{i + 1}-{z.name}"
                notes.extend(unpack_zip(z, folder))
            return root
    return submission


def _walk(root: Path, suffix: str):
    for folder, dirs, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in DEBRIS_DIRS and depth < MAX_DEPTH)
        for f in sorted(files):
            p = Path(folder) / f
            if (f.lower().endswith(suffix) and not f.startswith("._") and f not in DEBRIS_FILES
                    and not p.is_symlink()):
                yield p


@dataclass
class Found:
    path: Path | None
    note: str  # what was used or why nothing was


def find_notebook(root: Path, release_name: str, keyword: str) -> Found:
    """The student's copy of ``release_name`` under ``root``.

    Preference: the exact name, then a renamed copy (browser or Colab), shallowest
    first; failing both, the only notebook whose name contains ``keyword``."""
    want = normalized(release_name)
    notebooks = list(_walk(root, ".ipynb"))
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    exact = [p for p in notebooks if p.name == release_name]
    renamed = [p for p in notebooks if p.name != release_name and normalized(p.name) == want]
    for group, how in ((exact, ""), (renamed, " (renamed copy)")):
        if group:
            group.sort(key=lambda p: (len(p.relative_to(root).parts), rel(p)))
            others = [rel(p) for p in exact + renamed if p != group[0]]
            extra = f"; also found and ignored: {', '.join(others)}" if others else ""
            shown = group[0].name if group[0].parent == root else rel(group[0])
            return Found(group[0], f"graded {shown}{how}{extra}")
    loose = [p for p in notebooks if keyword in p.name.lower()]
    if len(loose) == 1:
        return Found(loose[0], f"graded {rel(loose[0])}: no file is named {release_name}, "
                               "so the only notebook with a matching name was used")
    listing = ", ".join(rel(p) for p in notebooks[:10]) or "no notebooks at all"
    return Found(None, f"{release_name} was not found in your submission (found: {listing}). "
                       f"Submit the notebook under its original name, {release_name}.")


def read_bytes(path: Path) -> bytes:
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB: "
                              "clear its outputs (Kernel > Restart & Clear Output) and resubmit")
    return path.read_bytes()
