"""``make release``: master sources -> student release, solutions, autograder zip.

Steps (each a function below, run in this order by :func:`build`):

1. :func:`check_masters` -- every master notebook is nbformat >= 4.5 and every
   cell carries a unique ``id`` (nbformat would otherwise invent *random* ids
   on read, and the outputs would differ on every build).
2. :func:`generate_assignment` -- nbgrader's own ``GenerateAssignment``
   converter, configured from ``nbgrader_config.py`` exactly as
   ``nbgrader generate_assignment hw10 --force --no-db`` run at the course
   root would be (so no ``gradebook.db`` is created), except that one extra
   preprocessor (:class:`~pipeline.preprocessors.StripVolatileMetadata`) runs
   first. nbgrader copies the non-notebook files of ``source/hw10`` itself. The
   config's :class:`~pipeline.preprocessors.InjectKitFetch` puts the code that
   fetches ``hw10kit/`` when it is missing into every setup cell
   (:mod:`pipeline.colab_setup`).
3. :func:`copy_kit`, :func:`copy_data` -- ``hw10kit/`` and the MNIST ``.gz``
   files plus ``data/README.md`` into ``release/hw10``.
4. :func:`publish_kit` -- with ``RELEASE_URL`` set (``make release
   RELEASE_URL=https://.../hw10_kit.zip``): ``release/hw10_kit.zip`` (the student
   folder without its notebooks), and its URL and sha256 in every setup cell;
   without it, no such zip (a stale one is removed).
5. :func:`write_solutions` -- the master through
   :data:`~pipeline.preprocessors.SOLUTION_PREPROCESSORS` into
   ``solutions/hw10`` (``solutions/hw10/executed`` is left alone).
6. :func:`pipeline.autograder_zip.build_zip` -- ``autograder/autograder.zip``.

Between 2 and 3, :func:`pipeline.validate.check_course` checks the manifest
(``hw10kit/manifest.py``) against the checks and both sets of notebooks, and stops
the build naming every disagreement.

Determinism: every notebook written is re-serialised by :func:`write_notebook`
(nbformat's sorted-key JSON, one trailing newline); copied files are written
byte-for-byte in sorted order with mode 0644; the zip is built by
:mod:`pipeline.autograder_zip` with fixed timestamps, modes and compression.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ComputeChecksums
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from . import colab_setup
from .autograder_zip import build_zip
from .files import FILE_MODE, BuildError, copy_file, iter_files
from .layout import DATA_FOLDERS, GRADER_ONLY, MNIST_FILES, Layout
from .preprocessors import SOLUTION_PREPROCESSORS, InjectKitFetch, StripVolatileMetadata
from .validate import check_course

log = logging.getLogger("pipeline")


# ---------------------------------------------------------------------------
# helpers


def load_config(layout: Layout) -> Config:
    """The course's ``nbgrader_config.py`` (empty config when there is none)."""
    config = Config()
    if layout.config.exists():
        loader = PyFileConfigLoader(layout.config.name, path=str(layout.config.parent), log=log)
        config.merge(loader.load_config())
    return config


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write ``nb`` in nbformat's canonical form (sorted keys, indent 1, final newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb, version=4)
    if not text.endswith("\n"):
        text += "\n"
    if path.exists():
        path.chmod(FILE_MODE)
    path.write_text(text, encoding="utf-8")
    path.chmod(FILE_MODE)
    return path


def normalize_notebook(path: Path) -> Path:
    """Re-serialise a notebook written by someone else (nbgrader) canonically."""
    nb = nbformat.read(path, as_version=4)
    return write_notebook(nb, path)


# ---------------------------------------------------------------------------
# steps


def check_masters(layout: Layout) -> list[Path]:
    masters = layout.master_notebooks()
    if not masters:
        raise BuildError(f"no master notebook in {layout.source}")
    for path in masters:
        raw = json.loads(path.read_text(encoding="utf-8"))
        version = (raw.get("nbformat", 0), raw.get("nbformat_minor", 0))
        if version < (4, 5):
            raise BuildError(
                f"{path}: nbformat {version[0]}.{version[1]}; the build needs 4.5 or later "
                "so that cells keep stable ids (save it from a recent Jupyter)")
        seen: dict[str, int] = {}
        for index, cell in enumerate(raw.get("cells", [])):
            cell_id = cell.get("id")
            if not cell_id:
                raise BuildError(
                    f"{path}: cell {index} has no 'id'; nbformat would give it a random one "
                    "on every build. Give every cell a fixed id.")
            if cell_id in seen:
                raise BuildError(f"{path}: cells {seen[cell_id]} and {index} share id {cell_id!r}")
            seen[cell_id] = index
    return masters


def generate_assignment(layout: Layout, config: Config) -> list[Path]:
    """Run nbgrader's GenerateAssignment for the assignment; return the release notebooks."""
    from nbgrader.converters import GenerateAssignment, NbGraderException
    from nbgrader.coursedir import CourseDirectory

    c = Config()
    c.merge(config)
    c.CourseDirectory.root = str(layout.root)
    c.CourseDirectory.assignment_id = layout.assignment
    c.CourseDirectory.notebook_id = "*"
    # what `nbgrader generate_assignment --force --no-db` sets: no gradebook at all
    c.GenerateAssignment.force = True
    c.GenerateAssignment.no_database = True
    c.SaveCells.enabled = False
    # never used with the two settings above; points nowhere on disk regardless
    c.CourseDirectory.db_url = "sqlite://"
    if layout.release.exists():
        shutil.rmtree(layout.release)  # what --force would do, minus its warning
    coursedir = CourseDirectory(config=c, log=log)
    converter = GenerateAssignment(coursedir=coursedir, config=c, log=log)
    if InjectKitFetch not in converter.preprocessors:  # nbgrader_config.py lists it
        converter.preprocessors = [InjectKitFetch, *converter.preprocessors]
    if StripVolatileMetadata not in converter.preprocessors:
        converter.preprocessors = [StripVolatileMetadata, *converter.preprocessors]
    try:
        converter.start()
    except NbGraderException as exc:
        raise BuildError(f"nbgrader generate_assignment failed: {exc} (see log above)") from exc
    notebooks = sorted(layout.release.glob("*.ipynb"))
    for path in notebooks:
        normalize_notebook(path)
    return notebooks


def copy_kit(layout: Layout) -> list[Path]:
    """``hw10kit/`` -> ``release/hw10/hw10kit/`` (no caches, none of ``GRADER_ONLY``)."""
    dest = layout.release / "hw10kit"
    if dest.exists():
        shutil.rmtree(dest)
    return [copy_file(f, dest / f.relative_to(layout.kit)) for f in iter_files(layout.kit)
            if f.relative_to(layout.kit).as_posix() not in GRADER_ONLY]


def copy_data(layout: Layout) -> list[Path]:
    """``data/README.md``, ``data/MNIST/raw/*.gz``, the sample-metric classifier's
    weights (``data/mnist_classifier.pt``) and the folders of ``DATA_FOLDERS`` ->
    ``release/hw10/data/``.

    The decompressed ``*-ubyte`` files that may sit beside the ``.gz`` are a
    local cache and are never copied.
    """
    dest = layout.release / "data"
    if dest.exists():
        shutil.rmtree(dest)
    wanted = [Path("README.md"), Path("mnist_classifier.pt")] + [Path("MNIST", "raw", name) for name in MNIST_FILES]
    wanted += [f.relative_to(layout.data) for folder in DATA_FOLDERS for f in iter_files(layout.data / folder)]
    missing = [str(rel) for rel in wanted if not (layout.data / rel).is_file()]
    missing += [f"{folder}/" for folder in DATA_FOLDERS if not (layout.data / folder).is_dir()]
    if missing:
        raise BuildError(f"missing data files under {layout.data}: {', '.join(missing)}")
    return [copy_file(layout.data / rel, dest / rel) for rel in wanted]


def publish_kit(layout: Layout, config: Config, release_url: str | None) -> str | None:
    """With a URL: write ``release/hw10_kit.zip`` (:func:`pipeline.colab_setup.write_kit_zip`),
    set ``InjectKitFetch.url``/``sha256`` in ``config`` (the solutions are written with
    them) and render every release setup cell again from its master with them, its
    nbgrader checksum recomputed. Returns the zip's sha256. Without one: removes a stale
    zip, returns None (the setup cells only say what to upload)."""
    zip_path = colab_setup.kit_zip_path(layout)
    if not release_url:
        zip_path.unlink(missing_ok=True)
        return None
    url = colab_setup.check_url(release_url)
    sha256 = colab_setup.write_kit_zip(layout)
    config.InjectKitFetch.url = url
    config.InjectKitFetch.sha256 = sha256
    setup_id = config.InjectKitFetch.get("setup_grade_id", "setup")
    for path in sorted(layout.release.glob("*.ipynb")):
        master = nbformat.read(layout.source / path.name, as_version=4)
        sources = {c.id: c.source for c in master.cells
                   if c.metadata.get("nbgrader", {}).get("grade_id") == setup_id}
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.get("id") in sources:
                cell.source = sources[cell.id]
        write_notebook(apply_preprocessors(nb, [InjectKitFetch, ComputeChecksums], config), path)
    return sha256


def apply_preprocessors(nb: nbformat.NotebookNode, preprocessors, config: Config,
                        resources: dict | None = None) -> nbformat.NotebookNode:
    """Run nbconvert preprocessor classes over ``nb`` in order, as an exporter would."""
    resources = {} if resources is None else resources
    for cls in preprocessors:
        nb, resources = cls(config=config, log=log)(nb, resources)
    return nb


def write_solutions(layout: Layout, config: Config, masters: list[Path]) -> list[Path]:
    """Master -> ``solutions/hw10``: solution code kept, markers, hidden tests,
    mark schemes and outputs removed; the other files of the source folder
    (e.g. ``experiment.py``) copied beside it, as nbgrader's own
    ``generate_solution`` does. ``solutions/hw10/executed/`` is kept."""
    dest = layout.solutions
    if dest.exists():
        for child in sorted(dest.iterdir()):
            if child == layout.executed:
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    written = []
    for master in masters:
        nb = nbformat.read(master, as_version=4)
        nb = apply_preprocessors(nb, SOLUTION_PREPROCESSORS, config)
        written.append(write_notebook(nb, dest / master.name))
    for f in iter_files(layout.source):
        if f.suffix != ".ipynb":
            written.append(copy_file(f, dest / f.relative_to(layout.source)))
    return written


# ---------------------------------------------------------------------------


def _files_under(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*") if p.is_file()) if top.exists() else []


def build(root: str | Path, release_url: str | None = None) -> dict:
    """Build everything; return a summary dict (also printed by the CLI). ``release_url``
    (default ``$RELEASE_URL``): where ``release/hw10_kit.zip`` will be hosted."""
    start = time.perf_counter()
    layout = Layout.at(root)
    config = load_config(layout)
    release_url = release_url or os.environ.get("RELEASE_URL") or None

    masters = check_masters(layout)
    release_notebooks = generate_assignment(layout, config)
    if [p.name for p in release_notebooks] != [p.name for p in masters]:
        raise BuildError(
            f"nbgrader wrote {[p.name for p in release_notebooks]} for masters "
            f"{[p.name for p in masters]}")
    manifest_summary = check_course(layout.root)
    copy_kit(layout)
    copy_data(layout)
    kit_sha256 = publish_kit(layout, config, release_url)
    solutions = write_solutions(layout, config, masters)
    zip_info = build_zip(layout)

    return {
        "root": layout.root,
        "release_dir": layout.release,
        "release": _files_under(layout.release),
        "solutions": solutions,
        "zip": layout.zip,
        "zip_entries": zip_info["entries"],
        "zip_bytes": layout.zip.stat().st_size,
        "seconds": time.perf_counter() - start,
        "manifest": manifest_summary,
        "kit_zip": colab_setup.kit_zip_path(layout) if kit_sha256 else None,
        "kit_sha256": kit_sha256,
        "release_url": release_url,
    }


def format_summary(summary: dict) -> str:
    root = summary["root"]

    def rel(p: Path) -> str:
        return str(p.relative_to(root))

    release = summary["release"]
    notebooks = [rel(p) for p in release if p.suffix == ".ipynb"]
    release_bytes = sum(p.stat().st_size for p in release)
    lines = [
        f"release:   {rel(summary['release_dir'])}/: {len(release)} files, "
        f"{release_bytes / 1e6:.1f} MB; notebooks: {', '.join(notebooks)}",
        "solutions: " + ", ".join(rel(p) for p in summary["solutions"]),
        f"zip:       {rel(summary['zip'])}: {summary['zip_entries']} entries, "
        f"{summary['zip_bytes']:,} bytes",
        (f"kit zip:   {rel(summary['kit_zip'])}: {summary['kit_zip'].stat().st_size:,} bytes, "
         f"sha256 {summary['kit_sha256']}; upload it to {summary['release_url']} (the setup "
         "cells fetch it from there when hw10kit/ is missing)") if summary.get("kit_zip") else
        "kit zip:   none (RELEASE_URL not set: on Colab the setup cells say what to upload)",
        f"done in {summary['seconds']:.1f} s",
        "",
        summary.get("manifest", ""),
    ]
    return "\n".join(lines)
