"""Every setting of the grader in one table: its environment variable, type, default and
meaning. ``value(name)`` reads the environment when it is called; an unparsable value is
an error naming the variable. ``make release`` chooses the hidden checks' visibility and
stores it in ``settings.json`` beside this file (see ``hidden_visibility``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    default: object
    help: str


TABLE = {s.name: s for s in (
    Setting("HW10_QUESTION_TIMEOUT_S", float, 90.0, "wall-clock limit of one question's sandbox, seconds"),
    Setting("HW10_QUESTION_CPU_S", int, 120, "CPU-time limit of one question's sandbox, seconds"),
    Setting("HW10_MEMORY_MB", int, 6144, "address-space limit of one sandbox, MB"),
    Setting("HW10_MAX_PROCESSES", int, 512, "process limit of one sandbox user"),
    Setting("HW10_PARALLEL", int, None, "questions graded at once (default: from memory and CPUs)"),
    Setting("HW10_BUDGET_S", float, 480.0, "overall time budget of one grading, seconds"),
    Setting("HW10_SEED", int, None, "seed of the hidden inputs (default: random, recorded in results)"),
    Setting("HW10_SANDBOX_POOL", int, 8, "number of pool users hw10sb1..N"),
    Setting("HW10_SANDBOX_USERS", str, "", "comma-separated pool user names instead of hw10sb1..N"),
    Setting("HW10_LOCAL", str, "", "1 when make grade runs the judge (never on Gradescope)"),
    Setting("HW10_KIT_DIR", str, "", "folder holding hw10kit/ for the sandbox (default: found beside the grader)"),
    Setting("HW10_WORKER_PYTHON", str, "", "interpreter of the sandboxed worker (default: the judge's)"),
    Setting("HW10_FORKSERVER", int, 1, "1: fork each worker from a server with torch imported; 0: start each anew"),
)}

#: When students see the hidden checks' results (Gradescope's visibility values).
HIDDEN_VISIBILITIES = ("after_published", "after_due_date", "visible")
DEFAULT_HIDDEN_VISIBILITY = "after_published"
SETTINGS_JSON = Path(__file__).with_name("settings.json")  # written into the zip by `make release`


class SettingError(ValueError):
    pass


def value(name: str):
    """The setting's value from the environment, or its default."""
    setting = TABLE[name]
    raw = os.environ.get(name, "")
    if raw == "":
        return setting.default
    try:
        return setting.kind(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a valid {setting.kind.__name__} ({setting.help})") from None


def hidden_visibility() -> str:
    """The visibility ``make release HIDDEN_VISIBILITY=...`` stored in settings.json;
    default after_published."""
    try:
        chosen = json.loads(SETTINGS_JSON.read_text()).get("hidden_visibility", DEFAULT_HIDDEN_VISIBILITY)
    except (OSError, ValueError):
        return DEFAULT_HIDDEN_VISIBILITY
    return chosen if chosen in HIDDEN_VISIBILITIES else DEFAULT_HIDDEN_VISIBILITY
