"""nbgrader configuration for the course root (this repository).

Used by ``make release`` (pipeline/release.py loads it before running nbgrader's
GenerateAssignment) and by instructors running nbgrader directly on JupyterHub,
e.g. ``nbgrader generate_assignment hw10 --force`` or ``nbgrader autograde hw10``
from this directory. Keep both uses in mind when changing it.
"""
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

# nbgrader autograde runs the whole notebook; allow for CPU training cells.
c.Execute.timeout = 1800
