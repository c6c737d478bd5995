"""Handing in HW10 in one call: ``from hw10kit import export; export()`` in a notebook's
last cell, or ``python -m hw10kit.export`` in a terminal, in the homework folder (the one
holding the ``hw10_*.ipynb`` notebooks, ``hw10kit/`` and ``data/``).

Everything is read from the notebooks **saved on disk**, as the autograder reads them:

1. each problem's notebook is found in the folder (its release name, or a renamed copy
   such as ``Copy of hw10_vae (1).ipynb``: the grader's rule, ``handin.normalized``);
2. called from a kernel, each graded function defined there is compared with the one in
   the saved notebook (their parsed code, so spacing and comments do not matter), and a
   notebook saved before the kernel's latest cells ran is named;
3. the public checks run on the saved definitions, through the grader's own reader, one
   child process per notebook (the kernel's state is never touched);
4. written answers still at nbgrader's "YOUR ANSWER HERE" are listed;
5. ``hw10_submission.zip`` gets the notebooks under their release names, at its top level;
6. a printout of the notebooks is written for the written assignment: a PDF when a PDF
   engine that needs neither LaTeX nor a browser is installed (WeasyPrint), else one
   self-contained HTML file, ``hw10_printout.html`` (figures inline, nothing loaded from
   the network), to open in a browser and print to PDF.

``export`` returns a ``Report`` (``ok``, ``problems``, the paths written) and prints a
short summary saying what to fix. The rules for names and sizes are the grader's own
(``hw10kit.handin``).
"""
from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import notebook
from .handin import MAX_NOTEBOOK_BYTES, normalized  # the grader's rules  # noqa: F401
from .manifest import PROBLEMS, Problem

ZIP_NAME = "hw10_submission.zip"
PRINTOUT_HTML = "hw10_printout.html"
PRINTOUT_PDF = "hw10_printout.pdf"
#: Seconds the public checks of one notebook may take in their child process.
CHECK_TIMEOUT_S = 120.0
#: The child process writes each result on a line of its own, after this marker.
_MARK = "HW10-EXPORT-RESULT "
_OK, _FAIL = "\u2714", "\u2718"
_SAVE = "save it (Ctrl-S / File > Save) and run export() again"


# --------------------------------------------------------------------- finding notebooks


@dataclass
class Located:
    """Where a problem's notebook is in the folder: ``path`` is None when it is missing;
    ``note`` says how a file other than the release name was chosen, ``warning`` what the
    student should look at (a newer copy left out)."""
    problem: Problem
    path: Path | None
    note: str = ""
    warning: str = ""
    _loaded: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def read(self) -> dict | None:
        """The saved notebook, parsed once; None when it is missing or unreadable."""
        if self._loaded is None:
            self._loaded = _read(self.path) if self.path else (None, "")
        return self._loaded[0]

    @property
    def unreadable(self) -> str:
        """Why the file found cannot be read as a notebook ("" when it can)."""
        self.read()
        return self._loaded[1]


def _read(path: Path) -> tuple:
    """(the notebook at ``path`` as a dict, "") or (None, why it cannot be read)."""
    try:
        return notebook.load(Path(path).read_bytes()), ""
    except OSError as exc:
        return None, f"cannot be opened ({exc.strerror or exc})"
    except notebook.NotebookError as exc:
        return None, str(exc)


def locate(folder: Path) -> list:
    """Each problem's notebook in ``folder`` itself (not its subfolders), in the
    homework's order. The grader's preference: the release name, then a renamed copy (the
    newest, if there are several), then the only notebook whose name holds the problem's
    keyword and that no other problem claims."""
    files = sorted(p for p in Path(folder).glob("*.ipynb") if p.is_file() and not p.name.startswith("._"))
    wanted = {normalized(p.notebook) for p in PROBLEMS}
    claimed = {f for f in files if normalized(f.name) in wanted}
    found = []
    for problem in PROBLEMS:
        want = normalized(problem.notebook)
        exact = [f for f in files if f.name == problem.notebook]
        copies = sorted((f for f in files if f.name != problem.notebook and normalized(f.name) == want),
                        key=lambda f: f.stat().st_mtime, reverse=True)
        loose = [f for f in files if f not in claimed and problem.keyword in f.name.lower()]
        if exact:
            found.append(Located(problem, exact[0], "", _newer_copies(exact[0], copies)))
        elif copies:
            others = f"; also seen: {', '.join(f.name for f in copies[1:])}" if copies[1:] else ""
            found.append(Located(problem, copies[0], f"from {copies[0].name!r}{others}"))
        elif len(loose) == 1:
            found.append(Located(problem, loose[0], f"from {loose[0].name!r}: no file is named {problem.notebook}"))
        else:
            found.append(Located(problem, None))
    return found


def _newer_copies(chosen: Path, copies: list) -> str:
    """A warning when renamed copies beside ``chosen`` were saved after it."""
    newer = [f.name for f in copies if f.stat().st_mtime > chosen.stat().st_mtime]
    if not newer:
        return ""
    one = len(newer) == 1
    return (f"{', '.join(newer)} {'is' if one else 'are'} newer than {chosen.name}, which is the one "
            f"handed in: if your work is in {'that copy' if one else 'one of those'}, rename it to {chosen.name}")


def file_problems(loc: Located) -> list:
    """What keeps the grader from reading ``loc``'s file: not a notebook, or too large."""
    if loc.path is None:
        return []
    if loc.unreadable:
        return [f"{loc.path.name} is not a readable notebook: {loc.unreadable}"]
    size = loc.path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return [f"{loc.path.name} is {size / 2**20:.0f} MB, and the grader refuses notebooks over "
                f"{MAX_NOTEBOOK_BYTES // 2**20} MB: delete the outputs that print large arrays or many "
                "images, then save it and run export() again"]
    return []


# --------------------------------------------------------------------- unsaved work
@dataclass(frozen=True)
class _Definition:
    """A ``def`` of a graded function as the grader runs it: the class it sits in (or
    None at the top level), its parsed code (``code_of``), its cell."""
    owner: str | None
    code: str
    where: str


class _Multiline(ast.NodeTransformer):
    """Multi-line strings as ``inspect.cleandoc`` leaves them: the kernel's copy of a
    method is dedented before it is parsed, which shifts the lines of its docstring."""

    def visit_Constant(self, node):
        if isinstance(node.value, str) and "\n" in node.value:
            return ast.copy_location(ast.Constant(inspect.cleandoc(node.value)), node)
        return node


def code_of(node) -> str:
    """What is compared of a ``def``: its parsed code (no line numbers or comments),
    multi-line strings by their text."""
    import copy

    return ast.dump(_Multiline().visit(copy.deepcopy(node)))


def saved_definitions(nb: dict, target: str) -> list:
    """Every ``def target`` in the code the grader keeps from ``nb`` (top level or in a
    class body), in notebook order: the last one is the one graded."""
    found = []
    for chunk in notebook.read_answer(nb).chunks:
        try:
            tree = ast.parse(chunk.source)
        except SyntaxError:
            continue
        for node in tree.body:
            owner, body = (node.name, node.body) if isinstance(node, ast.ClassDef) else (None, [node])
            for stmt in body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == target:
                    found.append(_Definition(owner, code_of(stmt), chunk.label))
    return found


def _kernel_function(namespace: dict, target: str, owner: str | None):
    """``target`` as the kernel holds it (a method of the class ``owner`` if given), when
    it is a function defined by the notebook's own cells; else None."""
    obj = namespace.get(target) if owner is None else getattr(namespace.get(owner), target, None)
    if inspect.isfunction(obj) and obj.__module__ == namespace.get("__name__", "__main__"):
        return obj
    return None


def kernel_definition(namespace: dict, target: str, owner: str | None) -> str | None:
    """The parsed code (``code_of``) of ``target`` as the kernel holds it, or None when
    it is not a function defined by the notebook's cells or its source cannot be found."""
    obj = _kernel_function(namespace, target, owner)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj))) if obj else None
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    node = tree.body[0] if tree and tree.body else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == target:
        return code_of(node)
    return None


def _run_as(obj) -> str:
    """" (In [12])" when IPython knows which cell defined ``obj``; else ""."""
    try:
        from IPython import get_ipython

        number = get_ipython().compile._filename_map.get(obj.__code__.co_filename)
        return f" (In [{number}])" if isinstance(number, int) else ""
    except Exception:  # noqa: BLE001 - a detail of the message only
        return ""


def unsaved_functions(located: list, namespace: dict) -> list:
    """One message per graded function whose definition in ``namespace`` (the kernel's)
    differs from the one the grader would take from the saved notebook."""
    messages = []
    for loc in located:
        nb = loc.read()
        for q in loc.problem.questions if nb is not None else ():
            saved = saved_definitions(nb, q.target)
            owner = saved[-1].owner if saved else None
            mine = kernel_definition(namespace, q.target, owner)
            if mine is None or (saved and mine == saved[-1].code):
                continue
            name = loc.path.name
            if not saved:
                messages.append(f"{q.target}: your kernel defines it, but {name} on disk has no definition of it "
                                "that the grader reads: save the notebook, and keep the definition out of cells "
                                "tagged `training` or `skip-grader`")
            elif any(mine == d.code for d in saved):
                messages.append(f"{q.target}: your kernel holds the definition from an earlier cell of {name}, "
                                f"but the grader uses the last one ({saved[-1].where}): delete the one you do "
                                "not want, then save and run export() again")
            else:
                where = _run_as(_kernel_function(namespace, q.target, owner))
                messages.append(f"{q.target} in {name} on disk differs from the one in your kernel{where}, and "
                                f"the grader reads the file: {_SAVE} (if you changed the cell after "
                                "running it, run it first)")
    return messages


def stale_note(path: Path, nb: dict, last_run: int, kernel_start: float | None) -> str | None:
    """Whether ``path`` (parsed as ``nb``) was saved before the kernel's latest cells
    ran. ``last_run``: the number of the last cell the kernel ran (``In [last_run]``; 0
    for none); ``kernel_start``: when the kernel started (seconds since the epoch), if
    known. Jupyter saves each cell's number with it, so a notebook saved after ``In [n]``
    ran holds a cell numbered n."""
    if last_run <= 0:
        return None
    try:
        if kernel_start is not None and path.stat().st_mtime < kernel_start:
            return (f"{path.name} was last saved before this kernel started, and the kernel has run cells "
                    f"since (up to In [{last_run}]): {_SAVE}")
    except OSError:
        return None
    numbers = {c.get("execution_count") for c in nb.get("cells", []) if isinstance(c, dict)}
    if last_run not in numbers:
        return (f"{path.name} on disk was saved before In [{last_run}], the last cell you ran, so it lacks "
                f"that cell's work: {_SAVE}")
    return None


#: A cell that calls the export (its own run needs no saving).
_EXPORT_CALL = re.compile(r"^\s*(hw10kit\.)?export(\.export)?\(", re.M)


def last_run_cell(inputs: list, current: int) -> int:
    """The number of the last cell run before ``In [current]``, skipping cells that call
    the export; ``inputs``: the kernel's inputs by number (IPython's ``In``)."""
    n = current - 1
    while 0 < n < len(inputs) and _EXPORT_CALL.search(str(inputs[n] or "")):
        n -= 1
    return max(n, 0)


def _kernel_notebook(located: list, namespace: dict) -> Located | None:
    """The notebook this kernel runs: named by Jupyter (``__session__``, VS Code's
    ``__vsc_ipynb_file__``, ``JPY_SESSION_NAME``) or, failing that, the only problem
    whose graded functions the kernel defines."""
    present = [loc for loc in located if loc.read() is not None]
    for value in (namespace.get("__vsc_ipynb_file__"), namespace.get("__session__"),
                  os.environ.get("JPY_SESSION_NAME")):
        if isinstance(value, str) and value.endswith(".ipynb"):
            named = [loc for loc in present if Path(value).name == loc.path.name]
            return named[0] if named else None  # None: a notebook that is not one of the homework's
    mine = [loc for loc in present if _defines(namespace, loc)]
    return mine[0] if len(mine) == 1 else None


def _defines(namespace: dict, loc: Located) -> bool:
    """Whether the kernel holds one of ``loc``'s graded functions, defined by a cell."""
    for q in loc.problem.questions:
        saved = saved_definitions(loc.read(), q.target)
        if kernel_definition(namespace, q.target, saved[-1].owner if saved else None) is not None:
            return True
    return False


def unsaved_notebook(located: list, namespace: dict) -> str | None:
    """Best effort, never raising: whether the running IPython kernel ran cells after its
    notebook was last saved. None outside IPython or when it cannot be told."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        loc = _kernel_notebook(located, namespace) if shell is not None else None
        if loc is None:
            return None
        start = None
        try:
            start = shell.history_manager.get_session_info()[1].timestamp()
        except Exception:  # noqa: BLE001 - history disabled or an unusual shell
            pass
        last = last_run_cell(shell.history_manager.input_hist_raw, int(shell.execution_count))
        return stale_note(loc.path, loc.read(), last, start)
    except Exception:  # noqa: BLE001 - a hint only: never stop the export
        return None


def _caller_namespace() -> dict | None:
    """The globals of the code that called ``export`` (a notebook's namespace), when
    running under IPython; None otherwise."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals is globals():
        frame = frame.f_back
    return frame.f_globals if frame is not None else shell.user_ns


# --------------------------------------------------------------------- public checks
@dataclass
class FunctionResult:
    """The public checks of one graded function: ``passed`` of ``total``, and the first
    failure's message (empty when all passed); ``output`` is what ``check`` printed."""
    target: str
    passed: int
    total: int
    message: str = ""
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total


@dataclass
class NotebookChecks:
    """The public checks of one saved notebook, and what stopped its code from reading or
    running (syntax errors, definitions that raised, the checks running out of time)."""
    notebook: str
    functions: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(f.ok for f in self.functions)


def first_failure(output: str, limit: int = 240) -> str:
    """The first failure in what ``check`` printed: the line after its first mark
    ``✘``, with the first line of its explanation (indented below it), shortened."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(_FAIL):
            head = line[len(_FAIL):].strip()
            detail = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith("    ") else ""
            text = f"{head}: {detail}" if detail else head
            return text if len(text) <= limit else text[:limit - 3] + "..."
    return ""


def brief(message: str) -> str:
    """A failure message as the summary shows it: "not implemented yet" for a function
    that still raises NotImplementedError (the check's own message says where)."""
    return "not implemented yet" if _UNFINISHED.match(message) else message


_UNFINISHED = re.compile(r"^`\w+` is not implemented yet")


def _child_env() -> dict:
    """The environment of a checking child: this kit first on the path, one thread."""
    env = dict(os.environ)
    kit_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (kit_parent, env.get("PYTHONPATH", "")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HW10_THREADS="1", MPLBACKEND="Agg",
               PYTHONIOENCODING="utf-8")
    return env


def check_notebook(path: Path, problem: Problem, timeout_s: float = CHECK_TIMEOUT_S) -> NotebookChecks:
    """The public checks of ``problem``'s graded functions, run on the definitions saved
    in ``path``, in a child process (``python -m hw10kit.export --check-one``) that is
    stopped after ``timeout_s``."""
    path = Path(path)
    cmd = [sys.executable, "-m", "hw10kit.export", "--check-one", str(path.resolve()), "--problem", problem.key]
    timed_out = False
    try:
        proc = subprocess.run(cmd, cwd=path.parent, env=_child_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout_s)
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        timed_out, stdout, stderr = True, exc.stdout or b"", exc.stderr or b""
    result = NotebookChecks(path.name)
    for line in stdout.decode("utf-8", "replace").splitlines():
        if not line.startswith(_MARK):
            continue
        try:
            item = json.loads(line[len(_MARK):])
        except ValueError:
            continue
        if item.get("kind") == "errors":
            result.errors.extend(str(e) for e in item.get("errors", []))
        elif item.get("kind") == "check":
            result.functions.append(FunctionResult(str(item["target"]), int(item["passed"]), int(item["total"]),
                                                    first_failure(str(item["output"])), str(item["output"])))
    done = {f.target for f in result.functions}
    left = [q.target for q in problem.questions if q.target not in done]
    if left and timed_out:  # the first function left was running when time ran out
        result.functions.append(FunctionResult(left[0], 0, 0, f"its checks did not finish within "
                                                              f"{timeout_s:g} s (an endless loop?)"))
        result.functions += [FunctionResult(t, 0, 0, f"not checked: the checks of {left[0]} ran out of time")
                             for t in left[1:]]
    elif left:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        result.functions += [FunctionResult(t, 0, 0, f"its checks could not run ({tail[0][:200]})") for t in left]
    order = [q.target for q in problem.questions]
    result.functions.sort(key=lambda f: order.index(f.target) if f.target in order else len(order))
    nb = _read(path)[0]
    for f in result.functions if nb is not None else ():
        f.message = skipped_hint(nb, f.message) or f.message
    return result


_UNDEFINED = re.compile(r"name '(\w+)' is not defined|`(\w+)` is not defined")


def skipped_hint(nb: dict, message: str) -> str | None:
    """Why a name that ``message`` says is not defined is missing from what the grader
    reads, when ``nb`` defines it at the top level of a code cell the grader skips
    (tagged ``training`` or ``skip-grader``, or a check cell); else None."""
    for name in (a or b for a, b in _UNDEFINED.findall(message)):
        defines = re.compile(rf"^(?:(?:async\s+)?def|class)\s+{name}\b|^{name}\s*=(?!=)", re.M)
        number = 0
        for cell in nb.get("cells", []):
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            number += 1
            tags = sorted(notebook._tags(cell) & notebook.SKIP_TAGS)
            if (tags or notebook._is_check_cell(cell)) and defines.search(notebook._cell_text(cell)):
                why = f"tagged `{tags[0]}`" if tags else "a check cell"
                return (f"`{name}` is defined only in code cell {number}, {why}, which the grader skips: "
                        "move the definition to a cell of its own above it, without that tag")
    return None


def _check_one(path: str, key: str) -> None:
    """The child's side of ``check_notebook``: read the saved notebook with the grader's
    reader, run its definitions in a fresh namespace (as the grader's worker does), then
    ``check`` each graded function, writing one marked JSON line per result. Whatever the
    student's code prints goes to stderr."""
    import contextlib
    import io

    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(item):
        out.write(_MARK + json.dumps(item) + "\n")
        out.flush()

    from .manifest import BY_KEY

    problem = BY_KEY[key]
    try:
        answer = notebook.read_answer(notebook.load(Path(path).read_bytes()))
    except (OSError, notebook.NotebookError) as exc:
        emit({"kind": "errors", "errors": [f"{Path(path).name} cannot be read: {exc}"]})
        return
    import torch

    torch.set_num_threads(1)
    from .checks import check
    from .checks.core import student_traceback

    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    failures = notebook.exec_chunks(answer.chunks, namespace)
    labels = {c.cell: c.label for c in answer.chunks}
    errors = [msg for _, msg in answer.problems]
    errors += [f"{labels.get(f.cell, f'code cell {f.cell}')}, line {f.line}: "
               f"{(student_traceback(f.error, 300).splitlines() or [repr(f.error)])[-1]}"
               for f in failures if not f.tentative]
    errors += [f"{c.label}, line {d['line']} (`{d['text']}`) is not run by the grader: {d['refused']}"
               for c in answer.chunks for d in c.refused]
    emit({"kind": "errors", "errors": errors})
    for q in problem.questions:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            report = check(q.target, namespace=namespace)
        emit({"kind": "check", "target": q.target, "passed": report.passed, "total": report.total,
              "output": buf.getvalue()})


def run_public_checks(located: list, timeout_s: float = CHECK_TIMEOUT_S) -> list:
    """``check_notebook`` for every notebook found, a few at a time (each child uses one
    thread), in the homework's order."""
    from concurrent.futures import ThreadPoolExecutor

    present = [loc for loc in located if loc.path]
    if not present:
        return []
    workers = max(1, min(len(present), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda loc: _named(check_notebook(loc.path, loc.problem, timeout_s), loc),
                             present))


def _named(result: NotebookChecks, loc: Located) -> NotebookChecks:
    result.notebook = loc.problem.notebook  # the name the grader will see
    return result


# --------------------------------------------------------------------- written answers
def unanswered(nb: dict) -> list:
    """The written-answer cells of ``nb`` still holding only nbgrader's stub, each named
    by the heading above it and its grade id."""
    return [_answer_label(w) for w in notebook.written_answers(nb) if not w.filled]


def _answer_label(w) -> str:
    return f"{w.heading} [{w.grade_id}]" if w.heading else w.grade_id


# --------------------------------------------------------------------- the zip
def write_zip(folder: Path, located: list) -> Path:
    """``folder/hw10_submission.zip``: each notebook found, byte for byte, at the zip's
    top level under its release name. Written to a temporary name first, so a failed
    write leaves no half zip behind."""
    target = Path(folder) / ZIP_NAME
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for loc in located:
            if loc.path:
                zf.writestr(loc.problem.notebook, loc.path.read_bytes())
    os.replace(partial, target)
    return target


# --------------------------------------------------------------------- the printout
#: The lab template without anything loaded from the network (RequireJS, MathJax,
#: Mermaid, the widget manager): LaTeX stays as its source, which reads well enough.
#: Code is shown as Pygments highlights it (escaped), without the lab template's second
#: pass through an HTML sanitizer, which takes a third of the time.
_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block data_widget_view -%}{%- endblock data_widget_view -%}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
<div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
</div>
</div>
{%- endblock input %}
{% block extra_css %}
<style type="text/css">
.hw10-notebook { border-top: 4px solid #37474f; margin-top: 2.5em; padding-top: 0.4em;
                 font-size: 1.5em; font-weight: bold; break-before: page; }
.hw10-missing { border: 3px solid #c62828; background: #ffebee; color: #b71c1c;
                padding: 0.6em 1em; font-weight: bold; }
.hw10-answer { border-left: 5px solid #2e7d32; background: #e8f5e9; padding: 0.2em 0.6em;
               font-weight: bold; }
.jp-RenderedImage img, .jp-RenderedMarkdown img { max-width: 100%; height: auto; }
@media print {
  pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
  .jp-Cell { break-inside: avoid-page; }
}
</style>
{% endblock extra_css %}
"""


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _anchor(key: str, grade_id: str = "") -> str:
    return f"hw10-{key}" + (f"-{re.sub(r'[^A-Za-z0-9_-]', '_', grade_id)}" if grade_id else "")


def printout_notebook(located: list):
    """One nbformat notebook holding every notebook found, in order, behind a table of
    contents: each written answer labelled, each one still at the stub replaced by a
    flag that says so, each missing notebook flagged."""
    import nbformat

    cells, toc, metadata = [], [], {}
    for loc in located:
        title = f"{loc.problem.notebook}: Problem {loc.problem.number}, {loc.problem.title}"
        nb = loc.read()
        if nb is not None:
            metadata = metadata or {k: v for k, v in nb.get("metadata", {}).items()
                                    if k in ("kernelspec", "language_info")}
        part, empty = _printout_part(loc, title, nb)
        cells += part
        state = ": **missing**" if nb is None else (f": {len(empty)} written answer(s) not answered: "
                                                    f"{', '.join(empty)}" if empty else "")
        toc.append(f"* [{title}](#{_anchor(loc.problem.key)}){state}")
    head = nbformat.v4.new_markdown_cell(
        "# EECS 182 Homework 10: printout\n\n" + "\n".join(toc) + "\n\n"
        "Each written answer is marked in green; one still empty is flagged in red.")
    cells = [head, *cells]
    for i, cell in enumerate(cells):  # cell ids must be unique across the five notebooks
        cell["id"] = f"cell-{i}"
    out = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    out.metadata["title"] = "EECS 182 HW10 printout"
    return out


def _printout_part(loc: Located, title: str, nb: dict | None) -> tuple:
    """The cells one notebook adds to the printout, and links to its empty answers."""
    from nbformat.v4 import new_markdown_cell

    key = loc.problem.key
    header = f'<div class="hw10-notebook" id="{_anchor(key)}">{_escape(title)}</div>'
    if nb is None:
        why = "missing from the folder" if loc.path is None else f"{loc.path.name} cannot be read"
        return [new_markdown_cell(f'{header}\n<div class="hw10-missing">\u26a0 {_escape(loc.problem.notebook)}: '
                                  f"{_escape(why)}</div>")], []
    cells, empty = [new_markdown_cell(header)], []
    written = {w.grade_id: w for w in notebook.written_answers(nb)}
    for cell in _as_v4(nb).cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [_printable(o) for o in cell.get("outputs", [])]
        nbg = cell.get("metadata", {}).get("nbgrader", {})
        w = written.get(str(nbg.get("grade_id", ""))) if cell.get("cell_type") == "markdown" else None
        if w is not None and nbg.get("solution") is True:
            label, anchor = _answer_label(w), _anchor(key, w.grade_id)
            if w.filled:
                cell.source = (f'<div class="hw10-answer" id="{anchor}">Written answer: {_escape(label)}</div>'
                               f"\n\n{cell.source}")
            else:
                empty.append(f"[{label}](#{anchor})")
                cell.source = (f'<div class="hw10-missing" id="{anchor}">\u26a0 NOT ANSWERED: {_escape(label)}: '
                               f"the cell still says \u201c{notebook.TEXT_STUB}\u201d</div>")
        cells.append(cell)
    return cells, empty


def _as_v4(nb: dict):
    """``nb`` as an nbformat 4 notebook node (sources joined into strings)."""
    import warnings

    import nbformat

    with warnings.catch_warnings():  # missing cell ids and such: the printout numbers its own
        warnings.simplefilter("ignore")
        return nbformat.reads(json.dumps(nb), as_version=4)


def _printable(output):
    """An output without widget views (their text form stays): they need scripts from
    the network to show."""
    data = output.get("data")
    if isinstance(data, dict):
        data.pop("application/vnd.jupyter.widget-view+json", None)
    return output


def render_html(nb, folder: Path) -> str:
    """The printout notebook as one HTML page, images inline (``data:`` URIs; a
    markdown image's file is looked up in ``folder``, a pasted one in the cell's
    attachments)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True, extra_loaders=[DictLoader({"hw10_printout.html.j2": _TEMPLATE})],
                            template_file="hw10_printout.html.j2")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(folder)}})
    return body


def _write_pdf(html: str, target: Path, folder: Path) -> bool:
    """Write ``html`` as a PDF with WeasyPrint when it is installed (no LaTeX, no
    browser); False when it is not, or fails."""
    try:
        from weasyprint import HTML
    except Exception:  # noqa: BLE001 - missing, or its system libraries are
        return False
    try:
        HTML(string=html, base_url=str(folder)).write_pdf(str(target))
        return True
    except Exception:  # noqa: BLE001 - fall back to the HTML page
        return False


def write_printout(folder: Path, located: list, pdf: bool = True) -> Path:
    """The printout of every notebook found: ``hw10_printout.pdf`` when a PDF engine is
    available (and ``pdf``), else ``hw10_printout.html``; the other one, left by an
    earlier export, is removed so that no stale printout is uploaded. Returns the path
    written."""
    folder = Path(folder)
    html = render_html(printout_notebook(located), folder)
    if pdf and _write_pdf(html, folder / PRINTOUT_PDF, folder):
        target, other = folder / PRINTOUT_PDF, folder / PRINTOUT_HTML
    else:
        target, other = folder / PRINTOUT_HTML, folder / PRINTOUT_PDF
        target.write_text(html, encoding="utf-8")
    other.unlink(missing_ok=True)
    return target


# --------------------------------------------------------------------- the whole export
@dataclass(repr=False)
class Report:
    """What ``export`` found and wrote. ``problems`` lists what to fix, in the order
    printed; ``ok`` is true when there is nothing."""
    folder: Path
    found: dict = field(default_factory=dict)       # release name -> the file handed in
    missing: list = field(default_factory=list)     # release names not found
    notes: list = field(default_factory=list)       # renamed copies used (nothing to fix)
    warnings: list = field(default_factory=list)    # newer copies left out, unreadable or too large files
    unsaved: list = field(default_factory=list)     # unsaved work in the kernel
    checks: list = field(default_factory=list)      # NotebookChecks, in the homework's order
    unanswered: dict = field(default_factory=dict)  # release name -> written answers still empty
    zip_path: Path | None = None
    printout_path: Path | None = None
    failed: list = field(default_factory=list)      # outputs that could not be written, and why

    @property
    def problems(self) -> list:
        out = [f"{name} is missing: put it in {self.folder}" for name in self.missing]
        out += self.warnings + self.unsaved
        for nb in self.checks:
            out += [f"{nb.notebook}: {e}" for e in nb.errors]
            out += [f"{f.target} ({nb.notebook}): {f.passed}/{f.total} public checks pass"
                    + (f": {brief(f.message)}" if f.message else "") for f in nb.functions if not f.ok]
        out += [f"{name}: written answer not answered yet: {what}"
                for name, items in self.unanswered.items() for what in items]
        return out + self.failed

    @property
    def ok(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        return (f"Report({len(self.problems)} thing(s) to fix, zip={self.zip_path}, "
                f"printout={self.printout_path})")

    def _ipython_display_(self):
        """Nothing more in a notebook: ``export`` printed the summary already."""


def export(folder=None, *, namespace: dict | None = None, checks=True, printout: bool = True,
           timeout_s: float = CHECK_TIMEOUT_S, quiet: bool = False) -> Report:
    """Check and pack the homework in ``folder`` (default: the working directory).

    ``namespace``: the kernel's definitions to compare with the saved notebooks (default:
    the calling notebook's, under IPython; none from a terminal). ``checks``: run the
    public checks of every notebook (True), of none (False), or of the problems whose keys
    are given. ``printout``: write the printout. ``quiet``: print nothing. Returns a
    ``Report``."""
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(os.getcwd() if folder is None else folder).resolve()
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    namespace = _caller_namespace() if namespace is None else namespace
    report = Report(folder)
    located = locate(folder)
    say(f"HW10 export from {folder}")
    _find(report, located, say)
    if namespace:
        _compare_kernel(report, located, namespace, say)
    wanted = {p.key for p in PROBLEMS} if checks is True else set(checks or ())
    to_check = [loc for loc in located if loc.problem.key in wanted and loc.read() is not None]
    with ThreadPoolExecutor(1) as pool:  # the checks' child processes run while the files are written
        pending = pool.submit(run_public_checks, to_check, timeout_s)
        if to_check:
            say("Public checks, run on the saved notebooks as the grader reads them ...")
        _write_zip(report, located)
        if printout:
            _write_printout(report, located)
        report.checks = pending.result()
    _say_checks(report, say)
    _list_unanswered(report, located, say)
    _say_written(report, say)
    problems = report.problems
    say(f"{_OK} Nothing left to fix." if not problems else
        f"{_FAIL} {len(problems)} thing(s) to fix, listed above; fix them, save, and run the export again.")
    return report


def _find(report: Report, located: list, say) -> None:
    say("Notebooks (read from disk: save them first)")
    for loc in located:
        name = loc.problem.notebook
        if loc.path is None:
            report.missing.append(name)
            say(f"  {_FAIL} {name}: not found in this folder")
            continue
        report.found[name] = loc.path
        report.notes += [f"{name}: {loc.note}"] if loc.note else []
        unusable = file_problems(loc)
        trouble = ([loc.warning] if loc.warning else []) + unusable
        report.warnings += trouble
        say(f"  {_FAIL if unusable else _OK} {name}" + (f" ({loc.note})" if loc.note else "")
            + "".join(f"\n    ! {t}" for t in trouble))


def _compare_kernel(report: Report, located: list, namespace: dict, say) -> None:
    report.unsaved = unsaved_functions(located, namespace)
    stale = unsaved_notebook(located, namespace)
    report.unsaved += [stale] if stale else []
    if report.unsaved:
        say("Unsaved work (the grader reads the files, not your kernel)")
        for message in report.unsaved:
            say(f"  {_FAIL} {message}")


def _say_checks(report: Report, say) -> None:
    for nb in report.checks:
        say(f"  {nb.notebook}")
        for e in nb.errors:
            say(f"    {_FAIL} {e}")
        for f in nb.functions:
            score = f"{f.passed}/{f.total}" if f.total else "-"
            say(f"    {_OK if f.ok else _FAIL} {score} {f.target}"
                + (f": {brief(f.message)}" if f.message and not f.ok else ""))


def _list_unanswered(report: Report, located: list, say) -> None:
    for loc in located:
        empty = unanswered(loc.read()) if loc.read() is not None else []
        if empty:
            report.unanswered[loc.problem.notebook] = empty
    if report.unanswered:
        say(f"Written answers still at \u201c{notebook.TEXT_STUB}\u201d")
        for name, items in report.unanswered.items():
            say(f"  {name}" + "".join(f"\n    {_FAIL} {item}" for item in items))


def _write_zip(report: Report, located: list) -> None:
    if not report.found:
        report.failed.append(f"no notebook was found in {report.folder}, so {ZIP_NAME} was not written")
        return
    try:
        report.zip_path = write_zip(report.folder, located)
    except OSError as exc:
        report.failed.append(f"{ZIP_NAME} could not be written: {exc}")


def _write_printout(report: Report, located: list) -> None:
    try:
        report.printout_path = write_printout(report.folder, located)
    except ImportError as exc:
        report.failed.append(f"the printout needs {exc.name or 'nbconvert'}, which is not installed: run "
                             "`pip install nbconvert` and then export() again")
    except Exception as exc:  # noqa: BLE001 - nbconvert failing: the zip still counts
        report.failed.append(f"the printout could not be written ({type(exc).__name__}: {exc})")


def _say_written(report: Report, say) -> None:
    say("Written")
    if report.zip_path:
        say(f"  {report.zip_path.name} ({len(report.found)} of {len(PROBLEMS)} notebooks): "
            "upload it to the Gradescope autograder assignment")
    if report.printout_path:
        how = ("" if report.printout_path.suffix == ".pdf"
               else ": open it in a browser and print it to PDF (File > Print > Save as PDF)")
        say(f"  {report.printout_path.name}, the printout for the written assignment{how}")
    for failure in report.failed:
        say(f"  {_FAIL} {failure}")


# --------------------------------------------------------------------- entry points
def main(argv=None) -> int:
    """``python -m hw10kit.export [--folder DIR] [--no-checks] [--no-printout]``: exits
    0 when there is nothing to fix, 1 otherwise."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hw10kit.export",
                                     description="Check the saved HW10 notebooks and write "
                                                 f"{ZIP_NAME} and the printout.")
    parser.add_argument("--folder", default=None, help="the homework folder (default: here)")
    parser.add_argument("--no-checks", action="store_true", help="do not run the public checks")
    parser.add_argument("--no-printout", action="store_true", help="do not write the printout")
    parser.add_argument("--check-one", help=argparse.SUPPRESS)
    parser.add_argument("--problem", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_one:
        _check_one(args.check_one, args.problem)
        return 0
    report = export(args.folder, checks=not args.no_checks, printout=not args.no_printout)
    return 0 if report.ok else 1


class _CallableModule(types.ModuleType):
    """``from hw10kit import export; export()``: the module itself calls ``export``."""

    def __call__(self, *args, **kwargs):
        return self.export(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
else:
    sys.modules[__name__].__class__ = _CallableModule
