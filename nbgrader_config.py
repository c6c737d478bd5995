"""nbgrader configuration for the course root (this repository).

Used by ``make release`` (pipeline/release.py loads it before running nbgrader's
GenerateAssignment) and by instructors running nbgrader directly on JupyterHub,
e.g. ``nbgrader generate_assignment hw10 --force`` or ``nbgrader autograde hw10``
from this directory. Keep both uses in mind when changing it.
"""
import os
import sys

#: The course root: this file's folder. The preprocessors below live in its pipeline/.
ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.append(ROOT)

from nbgrader.converters import Autograde, GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import Execute  # noqa: E402

from pipeline.preprocessors import ExecuteInCourse, InjectKitFetch, SkipTaggedCells  # noqa: E402

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

c.CourseDirectory.course_id = "eecs182"

# Non-notebook files of source/hw10 are copied into release/hw10 by nbgrader;
# these never are.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    ".DS_Store",
    "runs",
]

# Stubs put in place of solutions (nbgrader's defaults, spelled out because the
# release notebook and the autograder both rely on them).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Every setup cell gets the code that fetches hw10kit/ and data/ when they are missing
# (Colab): pipeline/colab_setup.py. `make release RELEASE_URL=...` sets where from; listed
# here so that `nbgrader generate_assignment` run by hand writes the notebooks (and the
# gradebook's copy of the setup cells) that `make release` writes without RELEASE_URL.
c.GenerateAssignment.preprocessors = [InjectKitFetch, *GenerateAssignment.preprocessors.default()]

# nbgrader autograde: cells tagged training, skip-grader or export are not run (a grading
# neither retrains the models, nor runs the demos, nor writes a submission zip), and the
# kernel imports hw10kit and the hidden tests' hw10grader (autograder/) from this root.
c.Autograde.autograde_preprocessors = [
    SkipTaggedCells,
    *(ExecuteInCourse if pp is Execute else pp for pp in Autograde.autograde_preprocessors.default()),
]
c.ExecuteInCourse.python_path = [ROOT, os.path.join(ROOT, "autograder")]

# Per-cell limit when nbgrader runs a notebook: `nbgrader validate` runs the training cells
# too (on a CPU); autograde skips them (above).
c.Execute.timeout = 1800
