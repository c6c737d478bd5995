"""What the grader accepts as a student's notebook: its one home, shared by the grader
(``hw10grader.submission``) and the students' export (``hw10kit.export``). Standard
library only: the grader imports it."""
from __future__ import annotations

import re

#: The grader refuses a notebook larger than this.
MAX_NOTEBOOK_BYTES = 100 * 1024 * 1024

_RENAMES = [re.compile(r"^copy of ", re.I), re.compile(r"\s*\(\d+\)$"), re.compile(r"-checkpoint$", re.I)]


def normalized(name: str) -> str:
    """A notebook's file name as its release name's stem, lower case: browser and Colab
    renames undone (``Copy of hw10_vae (2).ipynb`` -> ``hw10_vae``)."""
    stem = name[:-len(".ipynb")] if name.lower().endswith(".ipynb") else name
    for rx in _RENAMES:
        stem = rx.sub("", stem.strip())
    return stem.strip().lower().replace(" ", "_")
