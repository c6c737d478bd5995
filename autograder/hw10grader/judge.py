"""The judge: grades one submission and writes results.json, whatever happens.

It holds the checks and reference values, reads notebooks as data, and sends only
plain inputs to the sandboxed process that runs the student's definitions (one per
question, so a crash, timeout or cheat costs only that question). A placeholder
results.json is written first and replaced at the end, and an overall time budget
keeps the whole run inside the platform's limit.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from hw10kit import manifest, notebook
from hw10kit.checks.core import judge as judge_reply
from hw10kit.checks.core import probe_id

from . import reading, resources, results, sandbox_users, settings, submission
from .assignment import QUESTIONS
from .sandbox import Limits, Sandbox, SandboxError, start_forkserver, stop_forkserver, sweep_active

VERSION = "hw10grader 1.0"
DEFAULT_BUDGET_S = settings.value("HW10_BUDGET_S")
SAFETY_S = 10.0
OUT_OF_BUDGET = "Grading ran out of its overall time budget; checks that had not finished score 0."


def default_parallel(root="/") -> int:
    """Questions graded at once: ``HW10_PARALLEL``, else 2 where two sandboxes fit beside
    the judge in the memory that applies to this process (its own cgroups up to the root,
    and the machine's memory, ``resources``) and it has two whole CPUs (cgroup quota and
    affinity); else 1. Gradescope's default container (768 MB, half a CPU) gets 1."""
    if settings.value("HW10_PARALLEL"):
        return max(1, settings.value("HW10_PARALLEL"))
    return resources.parallel_for(resources.memory_limit_bytes(root),
                                  resources.memory_available_bytes(root), resources.cpus(root))


def _entries(questions):
    """One entry per check; a question whose problem could not be loaded gets one failed
    entry worth its declared points, saying why."""
    table = {}
    for q in questions:
        if q.broken:
            entry = results.Entry(f"{q.number}.1", f"{q.label} {q.target}: checks could not be loaded",
                                  q.points, results.VISIBLE)
            entry.set(False, q.broken)
            table[q] = [entry]
            continue
        table[q] = [results.Entry(f"{q.number}.{i}", c.name, c.points,
                                  results.VISIBLE if c in q.public else results.hidden_visibility())
                    for i, c in enumerate(q.checks, start=1)]
    return table


def _process_entry() -> results.Entry:
    """Question 6 (how the homework was done): an entry worth no points that says whether
    its answers were filled in; their content is never scored."""
    labels = ", ".join(q.label for q in manifest.PROCESS)
    return results.Entry(f"{manifest.PROCESS_NUMBER}.1",
                         f"Q{manifest.PROCESS_NUMBER} process questions ({labels}): filled in "
                         "(graded by hand, not here)", 0.0, results.VISIBLE)


def _report_process(entry: results.Entry, answers: dict) -> None:
    """Fill ``entry`` from the process notebook's written-answer cells."""
    answer = answers.get(manifest.PROCESS_NOTEBOOK)
    points = sum(q.points for q in manifest.PROCESS)
    where = f"at the end of {manifest.PROCESS_NOTEBOOK}"
    if not isinstance(answer, notebook.Answer):
        entry.status, entry.output = "failed", (
            f"not found: question {manifest.PROCESS_NUMBER} is answered {where}, which could not be read "
            f"({answer}). It carries {points:g} point(s) on the written side.")
        return
    filled = {w.grade_id: w.filled for w in answer.written}
    empty = [q for q in manifest.PROCESS if not filled.get(q.grade_id)]
    if not empty:
        entry.status, entry.output = "passed", (
            f"All {len(manifest.PROCESS)} answers are filled in. Their content is not autograded; "
            "they are read with the written answers.")
        return
    entry.status, entry.output = "failed", (
        "Still empty " + where + ": " + "; ".join(f"{q.label} ({q.asks})" for q in empty)
        + f". They carry {sum(q.points for q in empty):g} point(s) on the written side: fill them in "
        "and resubmit. (This entry itself is worth no autograded points.)")


def _keyword(name: str) -> str:
    return next((p.keyword for p in manifest.PROBLEMS if p.notebook == name), name.removesuffix(".ipynb"))


def _read_notebooks(root: Path, questions, notes: list, deadline: float, also=()) -> dict:
    """release name -> notebook.Answer, or an error message for the student."""
    answers = {}
    for name, keyword in sorted({(q.notebook, q.keyword) for q in questions} | set(also)):
        found = submission.find_notebook(root, name, keyword)
        notes.append(found.note)
        if found.path is None:
            answers[name] = found.note
            continue
        try:
            answer = reading.read_answer(submission.read_bytes(found.path), deadline - time.monotonic())
        except (notebook.NotebookError, submission.SubmissionError) as exc:
            answers[name] = f"{found.path.name} could not be read: {exc}"
            notes.append(answers[name])
            continue
        for _, message in answer.problems:
            notes.append(f"{name}: {message} (that cell was skipped)")
        answers[name] = answer
    return answers


_UNDEFINED = re.compile(r"name '(\w+)' is not defined|`(\w+)` is not defined")


def _skipped_hint(answer, message: str) -> str:
    """When a failure names something the reader left out, say which line and why."""
    names = {a or b for a, b in _UNDEFINED.findall(message)}
    for chunk in answer.chunks:
        for d in chunk.dropped:
            hit = names & set(d["names"])
            if hit:
                return (f"\n\nNote: `{hit.pop()}` is assigned in {chunk.label or f'code cell {chunk.cell}'}, line {d['line']} "
                        f"(`{d['text']}`), which the grader does not run because it does work beyond "
                        "defining things (training and calls are skipped). Define it in a function, "
                        "a class, or with a plain value.")
    return ""


def _failure_note(answer, failures) -> str:
    """The statements that raised while the definitions ran (each costs only the names
    it would have defined), for the feedback of a check that failed."""
    if not failures:
        return ""
    labels = {c.cell: c.label or f"code cell {c.cell}" for c in answer.chunks}
    shown = [f"{labels.get(cell, f'code cell {cell}')}, line {line} (`{text}`) raised:\n{error}"
             for cell, line, text, error in failures[:3]]
    more = f"\n(and {len(failures) - 3} more)" if len(failures) > 3 else ""
    return "\n\nNote: while your definitions ran, " + "\n".join(shown) + more


def _grade_question(q, answer, entries, seed: int, deadline: float, notes: list) -> None:
    """Grade one question; whatever goes wrong costs only this question's checks."""
    try:
        _grade_question_checks(q, answer, entries, seed, deadline, notes)
    except Exception:  # noqa: BLE001 - the grader's own fault: this question only
        why = traceback.format_exc(limit=3)
        for e in entries:
            if e.output == results.NOT_RUN:
                e.set(False, "the autograder hit an internal error on this question; please tell "
                             f"the course staff.\n{why}")


def _grade_question_checks(q, answer, entries, seed: int, deadline: float, notes: list,
                           gate: resources.Gate = resources.GATE) -> None:
    """Run the question's checks in a sandbox, beside the other questions. A sandbox
    that the kernel killed for memory while another question ran beside it is not
    charged: the checks it did not finish run again in a fresh sandbox, alone (no other
    question starts meanwhile). A kill while it ran alone is charged, and says so."""
    for chunk in answer.chunks:  # what the reader refused to run, said once per notebook
        for r in getattr(chunk, "refused", []):
            text = (f"{q.notebook}: {chunk.label or f'code cell {chunk.cell}'}, line {r['line']} "
                    f"(`{r['text']}`) was not run: {r['refused']}")
            if text not in notes:
                notes.append(text)
    limits = Limits()
    start, killed = 0, None  # the first check not yet graded; what ended the last sandbox
    for attempt in ("shared", "alone"):
        context = gate.shared() if attempt == "shared" else gate.alone(deadline - 5)
        with context as slot:
            if slot is False:  # no moment alone before the deadline: charge the first kill
                break
            killed, start = _run_checks_once(q, answer, entries, start, seed, deadline, notes, limits)
        if killed is None:
            return
        if attempt == "shared" and slot.crowded and killed.memory_kill:
            notes.append(f"{q.label} {q.target}: its sandbox was killed for lack of memory while another "
                         "question was graded beside it; it was graded again alone (this costs nothing).")
            continue
        break
    why = str(killed)
    if killed.memory_kill and slot is not False and (attempt == "alone" or not slot.crowded):
        why += ("\n(Your code ran alone, no other question was graded beside it: the memory it used "
                "is what the kernel stopped.)")
    for e in entries[start:]:
        e.set(False, why + _failure_note(answer, getattr(killed, "failures", [])))


def _run_checks_once(q, answer, entries, start, seed, deadline, notes, limits):
    """One sandbox for the checks from ``start`` on: (the SandboxError that ended it, or
    None, and the index of the first check it did not grade). Checks are independent
    (their own inputs and torch seed), so a rerun starts where a killed sandbox stopped."""
    q_deadline = min(time.monotonic() + limits.wall_s, deadline)
    if q_deadline - time.monotonic() < 5:
        for e in entries[start:]:
            e.set(False, "not graded: the autograder ran out of time before this question "
                         "(this is not about your code; please tell the course staff)")
        return None, len(entries)
    try:
        box = Sandbox(answer.chunks, limits, q_deadline)
    except SandboxError as exc:
        exc.args = (f"{q.target} could not be loaded: {exc}",)
        return exc, start
    if box.note and box.note not in notes:
        notes.append(box.note)
    try:
        note = _failure_note(answer, box.failures)
        for index in range(start, len(entries)):
            check, entry = q.checks[index], entries[index]
            inputs, judged = q.references.case(check, seed)  # only `inputs` reach the sandbox
            try:
                reply = box.request(probe_id(check.probe), check.target, inputs, check.torch_seed(seed))
            except SandboxError as exc:
                exc.failures = box.failures
                return exc, index
            try:
                passed, message = judge_reply(check, judged, reply)
                if check.false_failure and "error" not in reply:  # only a verdict that ran is stochastic
                    message += (f" [stochastic check: a correct answer fails it with probability at "
                                f"most {check.false_failure:.0e}]")
                if reply.get("internal") and passed:
                    notes.append(f"{check.name}: internal error in the check (not the student's code); "
                                 "the check was given its points. Please tell the course staff.")
                entry.set(passed, message if passed or reply.get("tampered")
                          else message + _skipped_hint(answer, message) + note)
            except Exception as exc:  # noqa: BLE001 - one check's fault costs that check only
                entry.set(False, f"this check could not judge the reply ({type(exc).__name__}); "
                                 "please tell the course staff")
        return None, len(entries)
    finally:
        box.close()


def grade(submission_path, results_path, seed: int | None = None,
          budget_s: float = DEFAULT_BUDGET_S, questions=QUESTIONS) -> dict:
    """Grade ``submission_path`` (zip or folder) into ``results_path``; returns the document."""
    started = time.monotonic()
    deadline = started + budget_s - SAFETY_S
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else int(seed)
    table = _entries(questions)
    process = _process_entry()
    table[manifest.PROCESS_NUMBER] = [process]
    all_entries = [e for q in questions for e in table[q]] + [process]
    extra = {"seed": seed, "grader": VERSION}
    seed_note = f"Hidden-input seed: {seed} (a regrade with HW10_SEED={seed} reproduces these inputs)."
    results.write(results_path, results.document(all_entries, "Grading did not finish. " + seed_note, 0.0, extra))

    notes: list = []
    workdir = Path(tempfile.mkdtemp(prefix="hw10-grade-"))
    watchdog = _Watchdog(results_path, table, notes, seed_note, extra, started, budget_s)
    try:
        start_forkserver()  # imports torch while the notebooks are read
        root = submission.prepare(Path(submission_path), workdir, notes)
        wanted = [q for q in questions if not q.broken]
        answers = _read_notebooks(root, wanted, notes, started + budget_s / 3,
                                  also=[(manifest.PROCESS_NOTEBOOK, _keyword(manifest.PROCESS_NOTEBOOK))])
        _report_process(process, answers)
        runnable = []
        for q in questions:
            if q.broken:
                continue
            answer = answers[q.notebook]
            if isinstance(answer, str):
                for e in table[q]:
                    e.set(False, answer)
            else:
                runnable.append((q, answer))
        workers = max(1, min(len(runnable), default_parallel()))
        pool = ThreadPoolExecutor(workers)
        try:
            futures = [pool.submit(_grade_question, q, a, table[q], seed, deadline, notes) for q, a in runnable]
            for _ in as_completed(futures, timeout=max(1.0, deadline - time.monotonic() + SAFETY_S / 4)):
                # a checkpoint: what the outside watchdog leaves if this process is killed
                _final(results_path, table, notes, seed_note, extra, started)
        except FutureTimeout:
            notes.append(OUT_OF_BUDGET)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    except submission.SubmissionError as exc:
        notes.append(str(exc))
        for e in all_entries:
            e.set(False, str(exc))
    except Exception:  # noqa: BLE001 - the grader's own bug: still write results
        notes.append("The autograder hit an internal error; checks that did not run score 0. "
                     "Please tell the course staff.\n" + traceback.format_exc(limit=5))
    finally:
        watchdog.cancel()
        _kill_sandboxes()
        sandbox_users.wait_released(max(1.0, started + budget_s - SAFETY_S / 2 - time.monotonic()))
        shutil.rmtree(workdir, ignore_errors=True)
    return _final(results_path, table, notes, seed_note, extra, started)


def _kill_sandboxes():
    """At the end: every process of every sandbox user still leased (each sandbox also
    sweeps its own user when it closes), and the fork server with what it forked."""
    sweep_active()
    stop_forkserver()


def _points(entries) -> tuple:
    return sum(e.score for e in entries), sum(e.max_score for e in entries)


def _breakdown(q, entries) -> str:
    """One line per graded function: what its public checks gave and what its hidden
    checks took, without anything about the hidden inputs."""
    public = [e for e in entries if e.visibility == results.VISIBLE]
    hidden = [e for e in entries if e.visibility != results.VISIBLE]
    (got, out_of), (pub, pub_max), (hid, hid_max) = _points(entries), _points(public), _points(hidden)
    if got == 0 and len({e.output for e in entries}) == 1:  # nothing ran: one reason for all
        return f"{q.label} {q.target}: 0/{out_of:g}: {entries[0].output.splitlines()[0][:200]}"
    line = (f"{q.label} {q.target}: {got:g}/{out_of:g} (public checks {pub:g}/{pub_max:g}, "
            f"hidden checks {hid:g}/{hid_max:g})")
    if hid < hid_max:
        failed = sum(e.score < e.max_score for e in hidden)
        when = {"visible": "see them below", "after_due_date": "their feedback shows after the due date",
                "after_published": "their feedback shows once grades are published"}.get(
            hidden[0].visibility, "")
        line += (f": the hidden checks took {hid_max - hid:g} point(s) in {failed} check(s); {when}. "
                 "They test the same function on other inputs and edge cases.")
    return line


def _final(results_path, table, notes, seed_note, extra, started) -> dict:
    entries = [e for q in table for e in table[q]]
    total, possible = _points(entries)
    lines = [_breakdown(q, table[q]) if not isinstance(q, int) else
             f"{table[q][0].name.split(':')[0]}: {table[q][0].output}" for q in table]
    summary = (f"Autograded score: {total:g} / {possible:g}. Written answers are graded by hand.\n"
               + "\n".join(lines))
    output = "\n".join([summary, *notes, seed_note])
    doc = results.document(entries, output, time.monotonic() - started, extra)
    results.write(results_path, doc)
    return doc


class _Watchdog:
    """Writes the results as they stand and ends the process when the overall budget is
    spent, whatever the grading threads are stuck on: Gradescope kills a run at its own
    limit and then shows the student nothing."""

    def __init__(self, results_path, table, notes, seed_note, extra, started, budget_s):
        self.args = (results_path, table, notes, seed_note, extra, started)
        self.timer = threading.Timer(max(1.0, budget_s - SAFETY_S / 2), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self):
        try:
            self.args[2].append(OUT_OF_BUDGET)
            _final(*self.args)  # the results first: the sweep may take a while
            _kill_sandboxes()
        finally:
            os._exit(0)

    def cancel(self):
        self.timer.cancel()
