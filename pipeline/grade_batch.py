"""Grade a whole class: ``make grade-batch SUBMISSIONS=<folder or export zip> OUT=<folder>``.

``python -m pipeline.grade_batch --submissions PATH --out DIR [--jobs N] [--regrade]
[--timeout S] [--unsafe-no-isolation]`` grades every submission through the same path as ``make grade``
(``pipeline.grade_local``: the zip's own ``run_autograder`` in a Gradescope layout), several
at once, and writes

- ``OUT/<student>/results.json`` (Gradescope's file, as the judge wrote it),
  ``OUT/<student>/grading.log`` (run_autograder's output) and ``OUT/<student>/batch.json``
  (who, from where, status, seconds, seed);
- ``OUT/gradebook.csv``: one row per student, one column per check, and the totals;
- ``OUT/report.html``: the overview for the course staff (``pipeline.batch_report``).

OUT is made 0700 and everything in it is readable by its owner only: names, emails, SIDs
and every student's feedback are there, beside the next batch's student code.

SUBMISSIONS is Gradescope's "Download submissions" export (its zip, or the unpacked
folder: ``submission_metadata.yml`` maps each ``submission_<id>`` folder to its submitters),
or a plain folder holding one zip or one folder per student (named after the student).

Isolation: a root judge runs each sandbox as a pool user it leases under an exclusive
lock (``hw10grader.sandbox_users``), so gradings running side by side never share a uid;
the batch sizes the pool for the gradings it runs at once. Without that (not root, or an
interpreter the pool users cannot reach) student code would run as the batch's own user,
able to rewrite other students' results, the gradebook and the hidden checks: the batch
refuses, unless ``--unsafe-no-isolation`` (``make grade-batch UNSAFE=1``) is given, for
submissions that are trusted; it then grades one at a time and says so in the report.

A grading that outlives its wall-clock limit is killed (the results it had checkpointed
are kept and marked), and one whose grading dies gets a row saying so; neither stops the
batch. A re-run skips every student whose ``results.json`` exists (unless the last
attempt left no results of its own); ``--regrade`` grades them again with the seed recorded
there (or in ``batch.json``), so the hidden inputs stay the same. A grading that fails keeps
the results of the one before it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from pipeline import grade_local

ROOT = Path(__file__).resolve().parents[1]
ZIP = ROOT / "autograder" / "autograder.zip"
METADATA = "submission_metadata.yml"
#: Seconds a grading gets beyond the judge's own budget before the batch kills it (the
#: judge's watchdog normally ends it first, with its results written).
GRACE_S = 60.0
NOBODY = 65534  # a uid that owns nothing: stands for "any other user" in permission checks
DEBRIS = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints"}

GRADED, TIME_LIMIT, INTERNAL, FAILED = "graded", "time limit", "internal error", "failed"
#: What the judge writes when a time limit stopped something (sandbox.py, judge.py, watchdog.py).
TIME_LIMIT_SIGNS = ("timed out: your code was still running", "ran out of CPU time",
                    "ran out of its overall time budget", "ran out of time before this question")
#: How the judge's (or run_autograder's) own faults are told: by where the judge writes its
#: own words, never by a phrase anywhere (a student's exception message, or the name of a
#: notebook echoed in the notes, can say "please tell the course staff"). The top-level
#: output *starting* with a placeholder ("Grading did not finish": a judge that died before
#: its first checkpoint; "The autograder could not start": run_autograder);
INTERNAL_OUTPUT_START = ("Grading did not finish", "The autograder could not start")
#: a check's output *starting* with the judge's words for its own fault (judge.py, sandbox.py;
#: "internal: ..." also after "<function> could not be loaded: "). Student text only follows
#: them. (The one check output that starts with student text, "<notebook> could not be read:
#: ...", names a notebook the judge could not read, which scores 0 whatever its status.)
INTERNAL_CHECK_START = re.compile(
    r"(?:the autograder hit an internal error on this question"
    r"|this check could not judge the reply \("
    r"|the autograder could not load the checks of Problem"
    r"|(?:[\w.]+ could not be loaded: )?internal:)")
#: A check the judge never reached (results.NOT_RUN), when no time limit stopped it: the
#: judge crashed (its note says so, among notes that echo student file names).
NOT_RUN = "not run: grading did not reach this check"
#: The note this batch puts first in the checkpoint of a grading it killed.
BATCH_KILLED = "The batch killed this grading"
#: The least budget the batch gives a judge (below it the judge's own watchdog would
#: stop gradings that are fine, so a shorter --timeout kills the judge instead).
MIN_BUDGET_S = 30.0


class BatchError(Exception):
    """The batch cannot start (the message says why and what to do)."""


def grader():
    """The judge's package (``autograder/hw10grader``), imported from this checkout."""
    if str(ROOT / "autograder") not in sys.path:
        sys.path.insert(0, str(ROOT / "autograder"))
    import hw10grader  # noqa: F401  (the submodules are imported where used)
    return hw10grader


# ---------------------------------------------------------------- finding submissions

@dataclass
class Submission:
    key: str                  # its folder under OUT: unique, safe as a file name
    path: Path | None         # the zip or folder to grade; None when the export holds no files
    submission_id: str = ""   # Gradescope's folder name (submission_123456), if any
    submitters: list = field(default_factory=list)  # [{"name", "email", "sid"}]

    def joined(self, what: str) -> str:
        return "; ".join(str(s.get(what) or "") for s in self.submitters if s.get(what))


def slug(text: str) -> str:
    """``text`` as a folder name: letters, digits and ``._@+-`` kept, the rest ``_``; never
    starting with ``.``, ``_`` or what a spreadsheet reads as a formula (``+``, ``-``, ``@``)."""
    out = re.sub(r"[^A-Za-z0-9._@+-]+", "_", str(text)).lstrip("._@+-").rstrip("._")[:80]
    return out or "student"


def unique_keys(wanted: list) -> list:
    """``wanted`` with repeats made unique (``alice``, ``alice-2``), in order."""
    seen, out = set(), []
    for key in wanted:
        candidate, n = key, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{key}-{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def extract(zip_path: Path, dest: Path) -> Path:
    """Unpack ``zip_path`` into ``dest`` (no absolute paths, ``..`` or links); returns it."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BatchError(f"{zip_path} is not a readable zip ({exc})") from None
    with zf:
        for info in zf.infolist():
            parts = [p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("", ".")]
            if (not parts or info.filename.startswith("/") or ".." in parts
                    or stat.S_ISLNK(info.external_attr >> 16)):
                continue
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return dest


def find_metadata(folder: Path) -> Path | None:
    """The export's ``submission_metadata.yml``: in ``folder`` or a folder below it (the
    zip holds ``assignment_<id>_export/``), the shallowest."""
    for depth in range(3):
        found = sorted(p for p in folder.glob("/".join(["*"] * depth + [METADATA]))
                       if not DEBRIS & set(p.relative_to(folder).parts))
        if found:
            return found[0]
    return None


def _plain(value):
    """Keys without Ruby's leading colon (``:submitters`` -> ``submitters``), recursively."""
    if isinstance(value, dict):
        return {str(k).lstrip(":"): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_metadata(path: Path) -> dict:
    """``submission_metadata.yml`` as {folder: {"submitters": [...], ...}}.

    The layout assumed (Gradescope does not document it; this is what public scripts that
    read these exports rely on): one top-level key per submission folder of the export
    (``submission_<id>``), mapping to ``:submitters:`` (a list of ``:name:``, ``:sid:``,
    ``:email:``; several for a group), ``:created_at:``, ``:score:``, ``:history:`` (the
    earlier submissions) and possibly ``:results:``. Gradescope writes it from Ruby: keys
    are symbols (the leading colon is dropped here), and a tag Python does not know
    (``!ruby/...``) is read as the plain value it tags. Only the submitters are used."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def untagged(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", untagged)
    try:
        data = yaml.load(path.read_text(encoding="utf-8", errors="replace"), Loader=Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise BatchError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BatchError(f"{path} does not map submission folders to submitters")
    return {str(k): (_plain(v) if isinstance(v, dict) else {}) for k, v in data.items()}


def _submitter(entry) -> dict:
    entry = entry if isinstance(entry, dict) else {"name": entry}
    return {k: "" if entry.get(k) is None else str(entry.get(k)) for k in ("name", "email", "sid")}


def gradescope_submissions(metadata_path: Path) -> list:
    """One ``Submission`` per folder the export's metadata lists, named after its first
    submitter's email (else SID, name, folder)."""
    export = metadata_path.parent
    subs = []
    for folder, meta in sorted(read_metadata(metadata_path).items()):
        submitters = [_submitter(s) for s in meta.get("submitters") or []]
        first = submitters[0] if submitters else {}
        key = first.get("email") or first.get("sid") or first.get("name") or folder
        path = export / folder
        safe = (path.is_dir() and not path.is_symlink()
                and path.resolve().parent == export.resolve())  # a folder of the export, nothing else
        subs.append(Submission(slug(key), path if safe else None, folder, submitters))
    for sub, key in zip(subs, unique_keys([s.key for s in subs])):
        sub.key = key
    return subs


def _is_debris(p: Path) -> bool:
    return p.name in DEBRIS or p.name.startswith(".")


def plain_submissions(folder: Path, skip: Path | None = None) -> list:
    """One ``Submission`` per zip, folder or other file in ``folder``, named after it."""
    from hw10kit import manifest

    releases = {p.notebook for p in manifest.PROBLEMS}
    entries = sorted(p for p in folder.iterdir() if not _is_debris(p) and p != skip)
    loose = [p.name for p in entries if p.name in releases]
    if loose:
        raise BatchError(f"{folder} holds {', '.join(loose)} itself: it looks like one submission "
                         "(grade it with make grade), not a folder of them")
    names = [p.name[:-4] if p.suffix.lower() == ".zip" else (p.stem if p.is_file() else p.name)
             for p in entries]
    return [Submission(key, p, submitters=[{"name": name, "email": "", "sid": ""}])
            for p, name, key in zip(entries, names, unique_keys([slug(n) for n in names]))]


def discover(source: Path, work: Path, skip: Path | None = None) -> list:
    """Every submission in ``source`` (an export zip, an export folder or a plain folder);
    a zip is unpacked into ``work``."""
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise BatchError(f"{source} is neither a folder nor a zip")
        source = extract(source, work / "export")
        if find_metadata(source) is None:
            return plain_submissions(_only_folder(source))
    elif not source.is_dir():
        raise BatchError(f"{source} does not exist")
    metadata = find_metadata(source)
    if metadata is not None:
        return gradescope_submissions(metadata)
    return plain_submissions(source, skip)


def _only_folder(folder: Path) -> Path:
    """A zip of a folder of submissions unpacks to that one folder: look inside it."""
    entries = [p for p in folder.iterdir() if not _is_debris(p)]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


# ---------------------------------------------------------------- isolation and concurrency

def _reachable_by_others(path: Path) -> bool:
    """Whether a process of another user (a pool user) can get to ``path`` (and, for a
    folder, into it)."""
    sandbox_users = _sandbox_users()
    inside = path / "x" if path.is_dir() else path  # a folder's own mode counts too
    return sandbox_users.blocked_directory(inside, NOBODY, NOBODY) is None


def _sandbox_users():
    grader()
    from hw10grader import sandbox_users

    return sandbox_users


def isolation_problem(python: str) -> str | None:
    """Why student code would not run as leased pool users (None when it would): two
    students graded at once would then share a uid."""
    if os.geteuid() != 0:
        return "the judge is not root, so student code runs as this user"
    import importlib.util

    paths = [python]
    spec = importlib.util.find_spec("torch")
    if os.path.realpath(python) == os.path.realpath(sys.executable) and spec and spec.origin:
        paths.append(spec.origin)
    for path in paths:
        if not _reachable_by_others(Path(path)):
            return f"the pool users cannot reach {path}, so student code runs as root"
    return None


def default_jobs() -> int:
    """Gradings run at once: one per CPU (each grades its questions one at a time), fewer
    when memory holds fewer judges with their sandbox."""
    grader()
    from hw10grader import resources

    per_grading = resources.JUDGE_BYTES + resources.SANDBOX_BYTES
    fits = math.floor(resources.cpus() + 1e-9)
    for room in (resources.memory_limit_bytes(), resources.memory_available_bytes()):
        if room is not None:
            fits = min(fits, int(room // per_grading))
    return max(1, fits)


def grading_env(jobs: int, budget_s: float | None) -> dict:
    """What each grading's judge gets beyond our environment: one question at a time
    (unless HW10_PARALLEL says otherwise), a pool of users large enough for every sandbox
    of every grading at once, and a budget that ends before the batch's limit."""
    grader()
    from hw10grader import settings

    env = {}
    if not settings.value("HW10_PARALLEL"):
        env["HW10_PARALLEL"] = "1"
    parallel = int(env.get("HW10_PARALLEL") or settings.value("HW10_PARALLEL"))
    # README: more pool users than twice the sandboxes that can run at once.
    wanted = 2 * jobs * parallel + 1
    if not settings.value("HW10_SANDBOX_USERS") and settings.value("HW10_SANDBOX_POOL") < wanted:
        env["HW10_SANDBOX_POOL"] = str(wanted)
    if budget_s is not None:
        env["HW10_BUDGET_S"] = f"{budget_s:g}"
    return env


def sweep_idle_pool_users() -> None:
    """Kill what is left of sandboxes whose judge was killed: every pool user no judge
    holds a lease on is swept (under its lease lock, as ``acquire`` does)."""
    if os.geteuid() != 0:
        return
    sandbox_users = _sandbox_users()
    try:
        locks = sandbox_users._lock_dir()
    except sandbox_users.SandboxUserError:
        return
    for name in sandbox_users.pool_names():
        if not sandbox_users._exists(name):
            continue
        fd = sandbox_users._try_lock(locks / f"{name}.lock")
        if fd is None:  # leased: its judge sweeps it
            continue
        try:
            pw = sandbox_users._checked(name)
            sandbox_users.sweep(pw.pw_uid, pw.pw_gid)
        except (sandbox_users.SandboxUserError, OSError):
            pass
        finally:
            os.close(fd)


# ---------------------------------------------------------------- grading one submission

def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def graded_results(folder: Path) -> dict | None:
    """A finished (or cut short) grading's results.json in ``folder``, else None."""
    doc = read_json(folder / "results.json")
    return doc if doc is not None and isinstance(doc.get("tests"), list) else None


def as_seed(value) -> int | None:
    return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else None


def recorded_seed(doc: dict | None) -> int | None:
    return as_seed(((doc or {}).get("extra_data") or {}).get("seed"))


def classify(doc: dict) -> tuple:
    """(status, detail) of a results document: an internal error of the grader (only as
    the judge reports one, ``internal_error``), else a time limit, with the first line that
    says so; else graded."""
    output = str(doc.get("output", ""))
    texts = [output] + [f"{t.get('name')}: {t.get('output', '')}" for t in doc.get("tests", [])]
    if not doc.get("tests"):
        return INTERNAL, _line_with(texts, ("",)) or "no checks were graded"
    if output.startswith(BATCH_KILLED):
        return TIME_LIMIT, output.split("\n", 1)[0][:300]
    line = internal_error(doc)
    if line:
        return INTERNAL, line
    line = _line_with(texts, TIME_LIMIT_SIGNS)
    if line:
        return TIME_LIMIT, line
    not_run = [t for t in doc["tests"] if str(t.get("output", "")) == NOT_RUN]
    if not_run:
        return INTERNAL, (f"the judge stopped before {len(not_run)} check(s), without a time limit "
                          "(see the output in results.json)")
    return GRADED, ""


def internal_error(doc: dict) -> str:
    """The judge's own words for a fault of its own, where only the judge writes them (the
    start of the output, the start of a check's output), or ""."""
    output = str(doc.get("output", ""))
    if output.startswith(INTERNAL_OUTPUT_START):
        return output.split("\n", 1)[0].strip()[:300]
    for t in doc.get("tests", []):
        text = str(t.get("output", "")) if isinstance(t, dict) else ""
        if INTERNAL_CHECK_START.match(text):
            first = text.split("\n", 1)[0].strip()
            return f"{t.get('name')}: {first}"[:300]
    return ""


def _line_with(texts, signs) -> str:
    """The first line among ``texts`` holding one of ``signs`` (case-insensitive)."""
    for text in texts:
        for line in text.splitlines():
            if line.strip() and any(s.lower() in line.lower() for s in signs):
                return line.strip()[:300]
    return ""


def mark_cut_short(doc: dict, note: str) -> dict:
    """The checkpoint a killed grading left, with ``note`` first in its output."""
    doc = dict(doc)
    doc["output"] = (note + "\n" + str(doc.get("output", ""))).strip()
    return doc


def _write_json(path: Path, doc: dict) -> None:
    """Atomically, readable by its owner only (results hold hidden checks' feedback)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


def private_file(path: Path):
    """``path`` opened for writing text, created readable by its owner only (even where an
    older file there was not: it is replaced, never rewritten in place)."""
    path.unlink(missing_ok=True)
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", newline="",
                encoding="utf-8")


@dataclass
class Options:
    zip_path: Path = ZIP
    python: str | None = None
    timeout_s: float = 480.0 + GRACE_S
    env: dict = field(default_factory=dict)
    regrade: bool = False
    #: Why student code runs without pool-user isolation (``--unsafe-no-isolation``), else None.
    no_isolation: str | None = None


def already_graded(folder: Path) -> bool:
    """Whether ``folder`` holds a grading to keep: results, and a last attempt that did not
    fail (one that failed kept the results before it, and is graded again on a re-run)."""
    return (graded_results(folder) is not None
            and not (read_json(folder / "batch.json") or {}).get("previous_results_kept"))


def grade_one(sub: Submission, out: Path, opts: Options) -> dict:
    """Grade ``sub`` into ``out/<key>/`` and return its record (also ``batch.json``);
    never raises for anything the submission or its grading does. A student already
    graded is skipped unless ``opts.regrade``: the record of that grading, ``skipped`` set.
    The seed is the one the results record, else the one ``batch.json`` does; a grading
    that leaves no results keeps the earlier ones (and says so in its record)."""
    folder = out / sub.key
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    previous = graded_results(folder)
    old = read_json(folder / "batch.json") or {}
    record = {"student": sub.key, "submission": sub.submission_id, "submitters": sub.submitters,
              "source": str(sub.path or ""), "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if already_graded(folder) and not opts.regrade:
        status, detail = (old["status"], old.get("detail", "")) if old.get("status") else classify(previous)
        return {**record, **old, "status": status, "detail": detail, "seed": recorded_seed(previous),
                "skipped": True}
    seed = recorded_seed(previous)
    if seed is None:  # results lost (or never written): the seed batch.json recorded
        seed = as_seed(old.get("seed"))
    start = time.monotonic()
    status, detail, doc = _grade_into(sub, folder, opts, seed)
    record.update(status=status, detail=detail, seconds=round(time.monotonic() - start, 2))
    if doc is None and previous is not None:
        record["previous_results_kept"] = True
        record["detail"] = (f"{detail}; results.json is still the earlier grading's "
                            "(a re-run grades this student again)")
    new_seed = recorded_seed(doc)
    record["seed"] = seed if new_seed is None else new_seed
    if opts.no_isolation:
        record["no_isolation"] = opts.no_isolation
    _write_json(folder / "batch.json", record)
    return record


def _grade_into(sub: Submission, folder: Path, opts: Options, seed: int | None) -> tuple:
    """Run the grading; (status, detail, the new results or None). The grading writes to a
    staged file that replaces results.json only once it exists: a grading that failed, or
    was killed before the judge wrote anything, leaves the earlier results.json as it was."""
    if sub.path is None or not sub.path.exists():
        return FAILED, "the export lists this submission but holds no files for it", None
    staged = folder / ".results.json.partial"
    try:
        doc = grade_local.run(opts.zip_path, sub.path, staged, seed=seed, python=opts.python,
                              env=opts.env, timeout_s=opts.timeout_s, log=folder / "grading.log")
        status, detail = classify(doc)
    except grade_local.GradingTimeout as exc:
        if exc.partial is None:
            staged.unlink(missing_ok=True)
            return TIME_LIMIT, f"killed after {opts.timeout_s:g} s, before the judge wrote any results", None
        doc = mark_cut_short(exc.partial, f"{BATCH_KILLED} after {opts.timeout_s:g} s; "
                                          "checks that had not finished score 0.")
        _write_json(staged, doc)
        status, detail = TIME_LIMIT, f"killed after {opts.timeout_s:g} s (its results are what it had checkpointed)"
    except Exception as exc:  # noqa: BLE001 - one submission's failure never stops the batch
        staged.unlink(missing_ok=True)
        log = os.open(folder / "grading.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write("\n[grade_batch] the grading died:\n" + traceback.format_exc())
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return FAILED, f"the grading died ({type(exc).__name__}: {first}); see grading.log", None
    staged.chmod(0o600)  # the judge writes its results 0644
    os.replace(staged, folder / "results.json")
    return status, detail, doc


# ---------------------------------------------------------------- gradebook

def _number_key(number) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in str(number or "").split("."))


def check_columns(docs) -> list:
    """Every check name in ``docs``, in Gradescope's order (by their numbers)."""
    numbers = {}
    for doc in docs:
        for t in doc.get("tests", []):
            numbers.setdefault(t["name"], _number_key(t.get("number")))
    return sorted(numbers, key=lambda name: (numbers[name], name))


def totals(doc: dict | None) -> tuple:
    """(score, max_score) of a results document; (None, None) without one. A top-level
    ``score`` overrides the tests' sum, as on Gradescope."""
    if doc is None:
        return None, None
    tests = doc.get("tests", [])
    score = doc.get("score") if isinstance(doc.get("score"), (int, float)) else sum(t.get("score", 0) for t in tests)
    return float(score), float(sum(t.get("max_score", 0) for t in tests))


def _fmt(x) -> str:
    return "" if x is None else f"{x:g}"


def text_cell(value) -> str:
    """A text cell a spreadsheet will not run: one that starts like a formula (``=``,
    ``+``, ``-``, ``@``; names and messages can come from students) gets a leading ``'``."""
    text = str(value or "")
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_gradebook(path: Path, rows: list, columns: list) -> None:
    """``gradebook.csv``: one row per student (each submitter of a group gets the group's
    row), then one column per check."""
    head = ["student", "name", "email", "sid", "submission", "status", "detail", "score", "max_score",
            *columns, "seed", "seconds", "results"]
    tmp = path.with_name(f".{path.name}.tmp")
    with private_file(tmp) as fh:  # names, emails, SIDs and scores: the owner's only
        writer = csv.writer(fh)
        writer.writerow([text_cell(h) for h in head])
        for row in rows:
            doc, rec = row["doc"], row["record"]
            score, possible = totals(doc)
            by_name = {t["name"]: t.get("score") for t in (doc or {}).get("tests", [])}
            for person in rec.get("submitters") or [{}]:
                who = [rec["student"], person.get("name"), person.get("email"), person.get("sid"),
                       rec.get("submission"), row["status"], row["detail"]]
                writer.writerow([*map(text_cell, who), _fmt(score), _fmt(possible),
                                 *(_fmt(by_name.get(c)) for c in columns),
                                 "" if rec.get("seed") is None else rec["seed"], rec.get("seconds", ""),
                                 text_cell(f"{rec['student']}/results.json" if doc is not None else "")])
    os.replace(tmp, path)


def collect(out: Path, records: list) -> list:
    """Each record with its results document (None when its grading died)."""
    return [{"record": rec, "doc": graded_results(out / rec["student"]), "status": rec["status"],
             "detail": rec.get("detail", "")} for rec in records]


# ---------------------------------------------------------------- the batch

def refusal(problem: str) -> str:
    """Why the batch will not grade without isolation, and what to do instead."""
    return (f"refusing to grade: {problem}. Without a pool user of its own, one submission's code "
            "could rewrite other students' results in OUT, the gradebook and the hidden checks, and "
            "read every student's files. Run it as root, with .venv built from the system Python "
            "(remove an old .venv, then make venv PYTHON3=/usr/bin/python3) in a checkout other users "
            "can traverse; see the README, \"A whole class\". Only for submissions you trust: --unsafe-no-isolation "
            "(make grade-batch ... UNSAFE=1) grades them one at a time, without isolation.")


def run_batch(source: Path, out: Path, jobs: int | None = None, regrade: bool = False,
              timeout_s: float | None = None, zip_path: Path = ZIP, python: str | None = None,
              progress: bool = True, log=print, unsafe_no_isolation: bool = False) -> list:
    """Grade every submission in ``source`` into ``out``; returns the gradebook's rows.
    Without pool-user isolation it raises ``BatchError`` before it writes anything, unless
    ``unsafe_no_isolation``: then it grades one at a time and says so, in the report too."""
    source, out = Path(source).resolve(), Path(out).resolve()
    python = python or sys.executable
    problem = isolation_problem(python)
    if problem and not unsafe_no_isolation:
        raise BatchError(refusal(problem))
    if problem:
        log(f"grade-batch: WARNING: grading WITHOUT ISOLATION (--unsafe-no-isolation): {problem}. "
            "Each submission's code can change anything this user can, other students' results "
            "and the gradebook included; grading one submission at a time.")
        jobs = 1
    jobs = max(1, jobs or default_jobs())
    timeout_s, budget = _limits(timeout_s)
    env = grading_env(jobs, budget)
    if not problem:  # the judge never falls back to running student code as itself
        env["HW10_LOCAL"] = "0"
    opts = Options(zip_path=Path(zip_path).resolve(), python=python, timeout_s=timeout_s,
                   env=env, regrade=regrade, no_isolation=problem)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        out.chmod(0o700)  # an OUT made earlier (or by hand) too: every student's data is here
    except OSError as exc:
        raise BatchError(f"cannot make {out} readable by this user only ({exc}); choose an OUT you own") from None
    with tempfile.TemporaryDirectory(prefix="hw10-batch-") as work:
        subs = discover(source, Path(work), skip=out)
        if not subs:
            raise BatchError(f"no submissions found in {source}")
        _warn_if_exposed(source, log)
        records = _grade_all(subs, out, opts, jobs, progress, log)
    sweep_idle_pool_users()
    rows = collect(out, records)
    finish(out, rows, source, no_isolation=problem)
    return rows


def _limits(timeout_s: float | None) -> tuple:
    """(the batch's kill limit per grading, the judge's budget or None to keep its own).
    A limit below the judge's budget lowers the budget to end first, with its results
    written, but never under ``MIN_BUDGET_S``."""
    grader()
    from hw10grader import settings

    budget = settings.value("HW10_BUDGET_S")
    if timeout_s is None:
        return budget + GRACE_S, None
    lowered = timeout_s - min(GRACE_S, timeout_s / 4)
    return timeout_s, (lowered if MIN_BUDGET_S <= lowered < budget else None)


def _warn_if_exposed(source: Path, log) -> None:
    """Student code runs as pool users, who can read whatever other users may: a source
    they can reach exposes every student's files to every other student's code."""
    if os.geteuid() == 0 and _reachable_by_others(source) and (
            source.is_dir() or source.stat().st_mode & stat.S_IROTH):
        log(f"grade-batch: warning: other users can reach {source}, so the student code this batch "
            "runs (as the pool users) could read other students' files there; keep the submissions "
            "in a folder only you can enter (chmod 700).")


def _grade_all(subs: list, out: Path, opts: Options, jobs: int, progress: bool, log) -> list:
    """Grade ``subs`` ``jobs`` at a time, with a progress bar; records in ``subs``' order."""
    from tqdm import tqdm

    records = {}
    todo = []
    for sub in subs:
        if not opts.regrade and already_graded(out / sub.key):
            records[sub.key] = grade_one(sub, out, opts)  # skipped: nothing runs
        else:
            todo.append(sub)
    if records:
        log(f"grade-batch: {len(records)} already graded, skipped (REGRADE=1 grades them again); "
            f"{len(todo)} to grade, {jobs} at a time.")
    bar = tqdm(total=len(todo), unit="submission", desc="grading", disable=not progress or not todo,
               file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="grade")
    counts = {}
    try:
        futures = {pool.submit(grade_one, sub, out, opts): sub for sub in todo}
        for future in as_completed(futures):
            rec = _record_of(future, futures[future])
            records[rec["student"]] = rec
            counts[rec["status"]] = counts.get(rec["status"], 0) + 1
            if rec["status"] != GRADED:
                bar.write(f"{rec['student']}: {rec['status']}: {rec.get('detail', '')}")
            bar.set_postfix({k: v for k, v in counts.items()}, refresh=False)
            bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        grade_local.kill_running()
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return [records[s.key] for s in subs]


def _record_of(future, sub: Submission) -> dict:
    """The future's record; a record saying the grading died when the batch's own code
    failed around it (a full disk, say), so that nothing stops the batch."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001
        return {"student": sub.key, "submission": sub.submission_id, "submitters": sub.submitters,
                "source": str(sub.path or ""), "status": FAILED, "seed": None,
                "detail": f"the batch could not grade it ({type(exc).__name__}: {exc})"[:300]}


def finish(out: Path, rows: list, source: Path, no_isolation: str | None = None) -> None:
    """Write the gradebook and the report for ``rows`` (``no_isolation``: why this run
    graded without isolation, for the report's warning)."""
    from pipeline import batch_report

    columns = check_columns([r["doc"] for r in rows if r["doc"] is not None])
    write_gradebook(out / "gradebook.csv", rows, columns)
    batch_report.write(out / "report.html", rows, columns, source=str(source), no_isolation=no_isolation)


def summary(rows: list) -> str:
    """Counts by status (and of the students skipped) and the mean score, for the terminal."""
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    scores = [totals(r["doc"])[0] for r in rows if r["doc"] is not None and r["doc"].get("tests")]
    skipped = sum(bool(r["record"].get("skipped")) for r in rows)
    unsafe = sum(bool(r["record"].get("no_isolation")) for r in rows)
    parts = [f"{n} {s}" for s, n in sorted(counts.items())]
    parts += [f"{skipped} of them skipped (graded before)"] if skipped else []
    parts += [f"{unsafe} graded WITHOUT ISOLATION"] if unsafe else []
    parts += [f"mean score {sum(scores) / len(scores):.2f}"] if scores else []
    return f"{len(rows)} submissions: " + ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", required=True, type=Path,
                        help="Gradescope's export (zip or folder), or a folder of zips or folders")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--jobs", type=int, default=None,
                        help="gradings at once (default: one per CPU, fewer if memory is short)")
    parser.add_argument("--regrade", action="store_true",
                        help="grade again the students already graded (with their recorded seed)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock limit of one grading, seconds (default: the judge's budget + 60)")
    parser.add_argument("--zip", type=Path, default=ZIP)
    parser.add_argument("--python", default=None, help="the grader's interpreter (default: this one)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--unsafe-no-isolation", action="store_true",
                        help="grade even where student code cannot run as a pool user (not root, or an "
                             "interpreter the pool users cannot reach): one at a time, as this user, "
                             "able to change other students' results; only for trusted submissions")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        rows = run_batch(args.submissions, args.out, jobs=args.jobs, regrade=args.regrade,
                         timeout_s=args.timeout, zip_path=args.zip, python=args.python,
                         progress=not args.no_progress, unsafe_no_isolation=args.unsafe_no_isolation)
    except BatchError as exc:
        print(f"grade-batch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        sweep_idle_pool_users()
        print("grade-batch: interrupted; what was graded is kept (run again to continue)", file=sys.stderr)
        return 130
    out = args.out.resolve()
    print(f"{summary(rows)} in {time.monotonic() - start:.0f} s")
    print(f"gradebook: {out / 'gradebook.csv'}\nreport:    {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
