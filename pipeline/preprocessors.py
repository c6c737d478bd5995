"""Small nbconvert preprocessors used by the build, one transformation each.

nbgrader's own preprocessors are reused wherever they already do the job
(``ClearOutput``, ``ClearHiddenTests``, ``ClearMarkScheme``); the ones here
cover what nbgrader has no preprocessor for:

* :class:`StripSolutionDelimiters` -- the *solutions* notebook keeps the
  solution code but loses the ``### BEGIN SOLUTION`` / ``### END SOLUTION``
  marker lines.
* :class:`StripBuildMarkers` -- the solutions lose the leak-sentinel lines that
  the build's tests look for.
* :class:`StripVolatileMetadata` -- drops editor bookkeeping that changes every
  time someone opens or runs the master (execution timestamps, scroll state),
  so that the outputs only change when the content does.
* :class:`InjectKitFetch` -- puts the code that fetches ``hw10kit/`` when it is
  missing (:mod:`pipeline.colab_setup`) into each setup cell.

and two that ``nbgrader autograde`` uses (``nbgrader_config.py``):

* :class:`SkipTaggedCells` -- cells tagged ``training``, ``skip-grader`` or
  ``export`` are not run when grading (nbgrader's own cells always are).
* :class:`ExecuteInCourse` -- nbgrader's ``Execute``, with the course root and
  ``autograder/`` on the kernel's ``PYTHONPATH`` (``hw10kit``, ``hw10grader``).
"""
from __future__ import annotations

import os
from typing import Tuple

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from traitlets import List, Unicode, default

from nbgrader import utils as nbgrader_utils
from nbgrader.preprocessors import (
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    Execute,
    NbGraderPreprocessor,
)

from . import colab_setup

__all__ = [
    "StripSolutionDelimiters",
    "StripVolatileMetadata",
    "InjectKitFetch",
    "SkipTaggedCells",
    "ExecuteInCourse",
    "SOLUTION_PREPROCESSORS",
    "ClearHiddenTests",
    "ClearMarkScheme",
    "ClearOutput",
]


class StripSolutionDelimiters(ClearSolutions):
    """Remove the solution delimiter lines but keep the solution between them.

    It subclasses nbgrader's ``ClearSolutions`` only to share its configuration
    (``ClearSolutions.begin_solution_delimeter`` / ``end_solution_delimeter``
    in ``nbgrader_config.py`` apply here too, through traitlets' class
    hierarchy) and its error for a solution region outside a solution cell.
    Unlike its parent it never inserts a stub: a solution cell without
    delimiters is left exactly as written.
    """

    def _strip_delimiters(self, cell: NotebookNode) -> bool:
        """Drop delimiter lines in place; True when the cell had any."""
        new_lines = []
        in_solution = False
        found = False
        for line in cell.source.split("\n"):
            if self.begin_solution_delimeter in line:
                if in_solution:
                    raise RuntimeError(
                        "encountered nested begin solution statements in cell:\n" + cell.source)
                in_solution = found = True
            elif self.end_solution_delimeter in line:
                if not in_solution:
                    raise RuntimeError(
                        "end solution statement without a begin in cell:\n" + cell.source)
                in_solution = False
            else:
                new_lines.append(line)
        if in_solution:
            raise RuntimeError("no end solution statement found in cell:\n" + cell.source)
        cell.source = "\n".join(new_lines)
        return found

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        cell_index: int) -> Tuple[NotebookNode, ResourcesDict]:
        found = self._strip_delimiters(cell)
        if found and self.enforce_metadata and not nbgrader_utils.is_solution(cell):
            raise RuntimeError(
                "Solution region detected in a non-solution cell; please make sure "
                "all solution regions are within solution cells. Cell contents are:\n"
                + cell.source)
        return cell, resources


class StripVolatileMetadata(NbGraderPreprocessor):
    """Drop cell and notebook metadata that records *when* or *how* the master
    was last viewed or run, not what it says.

    ``execution`` holds JupyterLab's per-cell ISO timestamps and
    ``ExecuteTime`` the ExecuteTime extension's; notebook-level ``widgets``
    holds saved widget state. (``collapsed``/``scrolled`` go with the outputs,
    in ``ClearOutput``.) nbgrader's checksums do not cover these keys, so
    dropping them never invalidates a checksum.
    """

    cell_metadata_keys = List(
        Unicode(),
        ["execution", "ExecuteTime"],
        help="Cell metadata keys to remove.",
    ).tag(config=True)

    notebook_metadata_keys = List(
        Unicode(),
        ["celltoolbar", "toc", "varInspector", "widgets"],
        help="Notebook metadata keys to remove.",
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict
                   ) -> Tuple[NotebookNode, ResourcesDict]:
        for key in self.notebook_metadata_keys:
            nb.metadata.pop(key, None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        cell_index: int) -> Tuple[NotebookNode, ResourcesDict]:
        for key in self.cell_metadata_keys:
            cell.metadata.pop(key, None)
        return cell, resources


#: The solutions notebook: master -> solution code kept, markers, hidden tests,
#: mark schemes and outputs gone. Order matters only in that ClearHiddenTests
#: must see the cells before anything rewrites their sources (it does not care
#: about solution delimiters, so any order of the first three works).
class StripBuildMarkers(NbGraderPreprocessor):
    """Drop the lines that carry the build's leak sentinels (``# SOLUTION-SENTINEL-...``
    in code, ``<!-- # SOLUTION-SENTINEL-... -->`` in markdown): the tests look for them in
    the release, but the solutions should read cleanly."""

    marker = Unicode("SENTINEL-").tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int
                        ) -> Tuple[NotebookNode, ResourcesDict]:
        if self.marker in cell.source:
            cell.source = "\n".join(line for line in cell.source.split("\n") if self.marker not in line)
        return cell, resources


class InjectKitFetch(NbGraderPreprocessor):
    """Replace the :data:`~pipeline.colab_setup.MARKER` line of the setup cell (nbgrader
    grade id ``setup``) with the code that fetches ``hw10kit/`` and ``data/`` when they are
    missing (:func:`pipeline.colab_setup.expand`). ``url`` and ``sha256`` are set by
    ``make release RELEASE_URL=...``; unset, the code only says what to upload. A setup
    cell without the marker (or with it twice) stops the build."""

    url = Unicode(None, allow_none=True, help="Where hw10_kit.zip is hosted.").tag(config=True)
    sha256 = Unicode(None, allow_none=True, help="The sha256 of that file.").tag(config=True)
    setup_grade_id = Unicode("setup", help="grade_id of the setup cell.").tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int
                        ) -> Tuple[NotebookNode, ResourcesDict]:
        if cell.cell_type == "code" and \
                cell.metadata.get("nbgrader", {}).get("grade_id") == self.setup_grade_id:
            cell.source = colab_setup.expand(cell.source, self.url, self.sha256)
        return cell, resources


class SkipTaggedCells(NbGraderPreprocessor):
    """Mark cells carrying one of ``tags`` with the tag that the executing preprocessor
    skips (nbclient's ``skip_cells_with_tag``, ``skip-execution``), so ``nbgrader
    autograde`` does not run them: a grading neither trains the models (``training``) nor
    runs the demos (``skip-grader``) nor writes a submission zip (``export``). Their code
    stays in the autograded notebook, without outputs. The default tags are the reader's
    (``hw10kit.notebook.SKIP_TAGS``, what Gradescope's grader never runs) plus ``export``.

    The tags are the student's (nbgrader's ``OverwriteCells`` restores a cell's source and
    nbgrader metadata, not its tags), and a test cell that does not run has no error, which
    nbgrader scores as full marks. So an nbgrader cell (a graded test, a locked cell or a
    solution; its metadata restored from the gradebook by then) always runs: it is never
    marked, and a skip tag the student put on it is removed."""

    tags = List(Unicode(), help="Cells with any of these tags are not run.").tag(config=True)
    skip_tag = Unicode("skip-execution", help="The tag the executor skips.").tag(config=True)

    @default("tags")
    def _tags_default(self):
        from hw10kit.notebook import SKIP_TAGS

        return sorted(SKIP_TAGS | {"export"})

    @staticmethod
    def is_nbgrader_cell(cell: NotebookNode) -> bool:
        """A cell nbgrader grades, locks or takes a solution from."""
        return (nbgrader_utils.is_grade(cell) or nbgrader_utils.is_locked(cell)
                or nbgrader_utils.is_solution(cell))

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int
                        ) -> Tuple[NotebookNode, ResourcesDict]:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code":
            return cell, resources
        if self.is_nbgrader_cell(cell):
            if self.skip_tag in tags:
                cell.metadata["tags"] = [t for t in tags if t != self.skip_tag]
        elif set(tags) & set(self.tags) and self.skip_tag not in tags:
            cell.metadata["tags"] = [*tags, self.skip_tag]
        return cell, resources


class ExecuteInCourse(Execute):
    """nbgrader's ``Execute`` whose kernels find the course's packages: ``python_path``
    (nbgrader_config.py: the course root, for ``hw10kit``, and ``autograder/``, for the
    hidden tests' ``hw10grader.local``) goes first on the kernel's ``PYTHONPATH``. Only the
    kernels it starts see it; the environment of the process running nbgrader is unchanged."""

    python_path = List(Unicode(), help="Folders put first on the kernel's PYTHONPATH.").tag(config=True)

    def setup_kernel(self, **kwargs):
        if self.python_path and "env" not in kwargs:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([*self.python_path, *filter(None, [env.get("PYTHONPATH")])])
            kwargs["env"] = env
        return super().setup_kernel(**kwargs)


SOLUTION_PREPROCESSORS = [
    StripVolatileMetadata,
    InjectKitFetch,
    ClearHiddenTests,
    ClearMarkScheme,
    StripSolutionDelimiters,
    StripBuildMarkers,
    ClearOutput,
]
