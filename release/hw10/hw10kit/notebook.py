"""Reading a student's answer out of a notebook: one reader for the grader and ``experiment.py``.

Every code cell is read in order the way IPython would (line and cell magics, ``!``
shell lines), and only what *defines* things is kept: imports, functions, classes,
assignments, and ``if``/``try``/``with`` blocks made of those. Statements that only do
work (loops, plots, bare calls, check cells) are left out, so the answer is graded
without running the notebook. An assignment whose value calls something other than
imported library code (``model = train(...)``) is kept as *tentative*: it runs under a
short time limit, and if it fails or runs out of time it costs only the names it would
define. Every top-level statement runs on its own, so one failing statement (a missing
module, say) never stops the ones after it. Kept code keeps its line numbers, so tracebacks
point at the student's own lines (``<cell 7>`` is the 7th cell of the notebook, 1-based).

Parsing is pure Python: nothing from the notebook is imported or executed here.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field

#: Cells carrying one of these tags are never read (training, plots, long evaluation);
#: nor are nbgrader's check cells.
SKIP_TAGS = frozenset({"training", "skip-grader"})

#: Cell magics whose body is ordinary Python that runs in the user namespace.
PYTHON_CELL_MAGICS = frozenset({"time", "capture", "prun"})

#: Calls allowed on the right of a kept assignment: cheap and side-effect free.
CHEAP_CALLS = frozenset({
    "bool", "int", "float", "str", "tuple", "list", "dict", "set", "frozenset", "range",
    "len", "min", "max", "abs", "round", "sorted", "zip", "enumerate", "getattr", "isinstance",
    "torch.device", "torch.cuda.is_available", "torch.backends.mps.is_available",
    "torch.tensor", "torch.Size", "torch.finfo", "np.array", "numpy.array", "math.log",
    "math.sqrt", "np.log", "np.sqrt", "os.environ.get", "os.getenv", "os.path.join",
    "Path", "pathlib.Path", "namedtuple", "collections.namedtuple", "TypeVar",
    "typing.TypeVar", "partial", "functools.partial", "field", "dataclasses.field",
    "logging.getLogger",
})

#: Calls on these modules (and methods called on their results, as in
#: ``torch.tensor(0.5).float()``) count as cheap: constants, distributions, layers.
CHEAP_MODULES = frozenset({"torch", "nn", "F", "np", "numpy", "math", "functools",
                           "collections", "itertools", "typing", "dataclasses"})

#: Bounds on what one cell may hold (IPython's translation is quadratic in magics, and
#: its help-end transform is quadratic in a long line that ends in ``?``).
MAX_CELL_CHARS = 200_000
MAX_MAGIC_LINES = 200
MAX_LINE_CHARS = 20_000
MAX_HELP_LINE_CHARS = 500

#: Time limits for tentative statements: each, and all of them together (seconds).
TENTATIVE_S = 2.0
TENTATIVE_TOTAL_S = 10.0
#: Every other top-level statement has a limit of its own too: an import (torch takes a
#: few seconds), and anything else (a class body, a library call that downloads...).
IMPORT_S = 60.0
STATEMENT_S = 10.0


def split_lines(text: str) -> list:
    """Lines as Python's tokenizer sees them: ``\n``, ``\r\n`` and ``\r`` end a line;
    U+2028, U+0085 or a form feed do not (``str.splitlines`` would split on them)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


#: Code kept from code cell N is compiled under this file name, so tracebacks name the cell.
CELL_FILE_PREFIX = "<code cell "


def cell_filename(cell: int) -> str:
    return f"{CELL_FILE_PREFIX}{cell}>"


class NotebookError(ValueError):
    """The file is not a readable Jupyter notebook; the message says why."""


@dataclass
class Chunk:
    """Kept code of one cell: ``cell`` is its number among the code cells (1-based)."""
    cell: int
    source: str
    dropped: list = field(default_factory=list)  # {"line", "text", "names"} of what was left out
    tentative: list = field(default_factory=list)  # first lines of top-level tentative statements
    label: str = ""  # how a student finds the cell: "code cell 3 (`def sample_gaussian(m, v):`)"

    @property
    def refused(self) -> list:
        """The statements left out because they would change imported code: entries of
        ``dropped`` with a ``"refused"`` reason (so they travel wherever ``dropped`` does)."""
        return [d for d in self.dropped if "refused" in d]

    @property
    def filename(self) -> str:
        return cell_filename(self.cell)


def load(data) -> dict:
    """Parse notebook JSON (bytes, str or a path) into a dict, with a clear error."""
    if isinstance(data, str) and data.lstrip().startswith("{"):
        text = data
    else:
        if not isinstance(data, (bytes, bytearray)):
            with open(data, "rb") as fh:
                data = fh.read()
        raw = bytes(data)
        encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        text = raw.decode(encoding, errors="replace")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"the notebook is not valid JSON ({exc.msg} at line {exc.lineno}); "
                            "re-download it from Jupyter with File > Save and try again") from None
    except RecursionError:
        raise NotebookError("the notebook's JSON is nested too deeply to be a notebook") from None
    if isinstance(nb, dict) and "cells" not in nb and isinstance(nb.get("worksheets"), list):
        nb = _from_v3(nb)
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError("the file is JSON but not a Jupyter notebook (no 'cells' list)")
    return nb


def _from_v3(nb: dict) -> dict:
    """nbformat 3 keeps cells in worksheets and code in ``input``."""
    cells = []
    for ws in nb["worksheets"]:
        for cell in ws.get("cells", []) if isinstance(ws, dict) else []:
            if isinstance(cell, dict):
                cell = dict(cell)
                if cell.get("cell_type") == "code" and "source" not in cell:
                    cell["source"] = cell.get("input", "")
                cells.append(cell)
    return {"cells": cells, "metadata": nb.get("metadata", {}), "nbformat": 3}


def _cell_text(cell) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def _is_check_cell(cell) -> bool:
    """nbgrader's autograder-test cells (grade, not solution): they only run checks."""
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return isinstance(nbg, dict) and nbg.get("grade") is True and not nbg.get("solution")


def _tags(cell) -> set:
    meta = cell.get("metadata")
    tags = meta.get("tags", []) if isinstance(meta, dict) else []
    return {t for t in tags if isinstance(t, str)} if isinstance(tags, list) else set()


def to_python(text: str) -> str | None:
    """IPython's own translation of a cell into Python, or None for a non-Python cell
    magic (``%%bash``, ``%%writefile``...). Line magics and ``!`` lines become calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    lines = split_lines(text)
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in PYTHON_CELL_MAGICS:
            return None
        # Keep line numbers: the magic line becomes blank, the body stays in place.
        text = "\n".join(lines[:first] + [""] + lines[first + 1:]) + "\n"
    import warnings

    with warnings.catch_warnings():  # IPython warns about U+2028 and kin, which are fine
        warnings.simplefilter("ignore", UserWarning)
        return TransformerManager().transform_cell(text)


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _cheap_call(call: ast.Call, library: frozenset) -> bool:
    """A call of a listed builtin, of a name that an import bound (library code), or a
    method of such a call's result (``torch.tensor(0.5).float()``)."""
    name = _dotted(call.func)
    if name is not None:
        root = name.split(".")[0]
        return name in CHEAP_CALLS or root in CHEAP_MODULES or root in library
    func = call.func
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and \
        _cheap_call(func.value, library)


def _is_cheap(expr, library: frozenset = frozenset()) -> bool:
    """Evaluating ``expr`` calls only library code (lambda bodies do not run)."""
    todo = [expr]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Lambda):
            todo.extend(node.args.defaults + [d for d in node.args.kw_defaults if d is not None])
            continue
        if isinstance(node, ast.Call) and not _cheap_call(node, library):
            return False
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        todo.extend(ast.iter_child_nodes(node))
    return True


KEEP, DROP, TENTATIVE = "keep", "drop", "tentative"

#: Calls that hand out a module, a class or a namespace without naming it.
ESCAPES = frozenset({"__import__", "globals", "vars", "locals", "getattr", "eval", "exec", "type",
                     "super", "object", "importlib", "sys"})
#: Methods that change the object they are called on (a module's ``__dict__``, ``sys.modules``).
MUTATORS = frozenset({"__setattr__", "__delattr__", "__setitem__", "__delitem__", "update",
                      "setdefault", "pop", "popitem", "clear"})


def _executed(stmt):
    """The nodes of ``stmt`` that run when it runs: all but function and lambda bodies
    (their decorators, defaults and annotations do run; so do class bodies)."""
    todo = [stmt]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            todo.extend(args.defaults + [d for d in args.kw_defaults if d is not None])
            if not isinstance(node, ast.Lambda):
                todo.extend(node.decorator_list)
                todo.extend(a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                            + [args.vararg, args.kwarg] if a is not None and a.annotation is not None)
                if node.returns is not None:
                    todo.append(node.returns)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _foreign(expr, imported: set) -> bool:
    """``expr`` names something imported (a module, a class or a function from one; or
    a name assigned from one), or reaches objects by name (``getattr``, ``vars``...)."""
    return any(isinstance(n, ast.Name) and (n.id in imported or n.id in ESCAPES) for n in ast.walk(expr))


def _patches(stmt, imported: set) -> str | None:
    """What ``stmt`` would change in imported code, if anything (``torch.Tensor.mean = f``,
    ``F.softplus += 1``, ``del np.sum``, ``setattr(torch, "randn", f)``, a module's
    ``__dict__`` updated, ``sys.modules[...] = ...``). Assigning attributes of the
    notebook's own classes and functions (``VAE.beta = 1``) is not a patch."""
    for node in _executed(stmt):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
                if isinstance(t, ast.Starred):
                    t = t.value
                if isinstance(t, (ast.Attribute, ast.Subscript)) and _foreign(t.value, imported):
                    return f"`{ast.unparse(t)[:60]}`"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else None
            if name in ("setattr", "delattr") and node.args and _foreign(node.args[0], imported):
                return f"`{ast.unparse(node.args[0])[:60]}` (through {name})"
            if isinstance(func, ast.Attribute) and func.attr in MUTATORS and _foreign(func.value, imported):
                return f"`{ast.unparse(func.value)[:60]}` (through .{func.attr})"
    return None


def _update_imported(stmt, imported: set) -> None:
    """Track which top-level names hold imported code: names that imports bind (the kit's
    too), and names assigned from an expression that mentions one; a def or class (or an
    assignment of anything else) makes a name the notebook's own again."""
    if isinstance(stmt, ast.Import):
        imported.update((a.asname or a.name).split(".")[0] for a in stmt.names)
    elif isinstance(stmt, ast.ImportFrom):
        imported.update(a.asname or a.name for a in stmt.names if a.name != "*")
    elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        imported.discard(stmt.name)
    elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
        foreign = _foreign(stmt.value, imported)
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for target in targets:
            for n in ast.walk(target):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    (imported.add if foreign else imported.discard)(n.id)
BLOCKS = (ast.If, ast.Try, ast.With)
ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign)


def _keep(stmt, library: frozenset) -> str:
    """KEEP, DROP or TENTATIVE for a simple statement; KEEP for a block whose header is
    cheap (its bodies are filtered statement by statement), TENTATIVE for one whose
    header is not."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef, ast.Pass, ast.Global)):
        return KEEP
    if isinstance(stmt, ASSIGNMENTS):
        if isinstance(stmt, ast.AnnAssign) and stmt.value is None:
            return KEEP
        return KEEP if not isinstance(stmt, ast.AugAssign) and _is_cheap(stmt.value, library) else TENTATIVE
    if isinstance(stmt, ast.If):
        return KEEP if _is_cheap(stmt.test, library) else TENTATIVE
    if isinstance(stmt, ast.With):
        return KEEP if all(_is_cheap(i.context_expr, library) for i in stmt.items) else TENTATIVE
    if isinstance(stmt, ast.Try):
        return KEEP
    return DROP


def _library_names(tree, library: set) -> None:
    """Add the names that imports in ``tree`` bind, except the course kit's own
    (``hw10kit`` holds the training loops)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] != "hw10kit":
                    library.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] != "hw10kit":
            library.update(a.asname or a.name for a in node.names if a.name != "*")


def _assigned_names(stmt) -> list:
    """Names the statement (a loop, say) would bind at the top level."""
    return sorted({n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)})


def _describe(stmt, lines) -> dict:
    """What was left out: its line, its first line of text, the names it would assign."""
    first = lines[stmt.lineno - 1].strip() if stmt.lineno <= len(lines) else ""
    return {"line": stmt.lineno, "text": first[:80], "names": _assigned_names(stmt)}


def _filter_block(stmts, lines, out, dropped, library, imported=None, refused=None) -> tuple:
    """Blank the lines of dropped statements in ``out`` (a list of source lines), and of
    statements that would change imported code (recorded in ``refused``; ``imported``:
    the names that hold imported code so far, updated). Returns (anything kept,
    anything tentative) for the block."""
    refused = [] if refused is None else refused
    kept_any = tentative_any = False
    for stmt in stmts:
        verdict = _keep(stmt, library)
        header = stmt.test if isinstance(stmt, ast.If) else \
            ast.Tuple([i.context_expr for i in stmt.items], ast.Load()) if isinstance(stmt, ast.With) else \
            None if isinstance(stmt, ast.Try) else stmt
        patched = _patches(header, imported) if header is not None and imported is not None else None
        if patched:
            for n in range(stmt.lineno - 1, stmt.end_lineno):
                out[n] = ""
            first = lines[stmt.lineno - 1].strip() if stmt.lineno <= len(lines) else ""
            refused.append({"line": stmt.lineno, "text": first[:80], "names": [],
                            "refused": f"it changes {patched}, which belongs to imported code (a module, "
                                   "or a class or function from one); the grader never runs code that "
                                   "changes imported modules or classes. Define your own functions "
                                   "instead (attributes of your own classes are fine)."})
            continue
        if verdict != DROP and imported is not None:
            _update_imported(stmt, imported)
        if verdict == DROP:
            for n in range(stmt.lineno - 1, stmt.end_lineno):
                out[n] = ""
            dropped.append(_describe(stmt, lines))
            continue
        kept_any = True
        tentative_any |= verdict == TENTATIVE
        if not isinstance(stmt, BLOCKS):
            continue
        # if / with / try: filter each body; an emptied body gets a `pass` to stay valid.
        bodies = ([stmt.body, stmt.orelse] if isinstance(stmt, ast.If) else [stmt.body]
                  if isinstance(stmt, ast.With) else
                  [stmt.body, *[h.body for h in stmt.handlers], stmt.orelse, stmt.finalbody])
        for body in bodies:
            if not body:
                continue
            kept, tentative = _filter_block(body, lines, out, dropped, library, imported, refused)
            tentative_any |= tentative
            if not kept:
                first = body[0]
                out[first.lineno - 1] = " " * first.col_offset + "pass"
    return kept_any, tentative_any


def _check_lines(lines) -> None:
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ValueError(f"line {number} holds {len(line)} characters; at most "
                             f"{MAX_LINE_CHARS} are read per line")
        if len(line) > MAX_HELP_LINE_CHARS and line.rstrip().endswith("?"):
            raise ValueError(f"line {number} ends in `?` and holds {len(line)} characters: IPython "
                             "reads it as a help request; shorten it or drop the `?`")


def definitions_of(text: str, cell: int, library: set | None = None,
                   imported: set | None = None) -> Chunk | None:
    """The kept code of one code cell (None when nothing is kept). ``library``: names
    bound by imports so far (updated with this cell's); ``imported``: names that hold
    imported code so far (updated), whose changes are refused (``Chunk.refused``); None
    runs such changes like any other statement.

    Raises SyntaxError (with ``filename`` set to ``<cell N>``) for a cell that is not
    valid Python after IPython's translation, ValueError for one too large to read.
    """
    library = set() if library is None else library
    if len(text) > MAX_CELL_CHARS:
        raise ValueError(f"it holds {len(text)} characters; at most {MAX_CELL_CHARS} are read")
    _check_lines(split_lines(text))
    magics = sum(1 for ln in split_lines(text)
                 if ln.lstrip()[:1] in ("!", "%") and not ln.lstrip().startswith("!="))
    if magics > MAX_MAGIC_LINES:
        raise ValueError(f"it holds {magics} magic or shell lines; at most {MAX_MAGIC_LINES} are read")
    py = to_python(text)
    if py is None:
        return None
    filename = cell_filename(cell)
    try:
        tree = ast.parse(py, filename=filename)
    except SyntaxError as exc:
        exc.filename = filename
        raise
    if _has_shared_lines(tree):
        # Several statements on one line: one statement per line first (later line
        # numbers shift), so that each can be kept or left out on its own.
        py = ast.unparse(tree) + "\n"
        tree = ast.parse(py, filename=filename)
    _library_names(tree, library)
    frozen = frozenset(library)
    lines = split_lines(py)
    out = list(lines)
    dropped: list = []
    tentative = []
    kept_any = False
    for stmt in tree.body:
        kept, tent = _filter_block([stmt], lines, out, dropped, frozen, imported, dropped)
        kept_any |= kept
        if kept and tent:
            tentative.append(stmt.lineno)
    if not kept_any and not any("refused" in d for d in dropped):
        return None
    return Chunk(cell, "\n".join(out).rstrip("\n") + "\n", dropped, tentative)


def _has_shared_lines(tree) -> bool:
    seen = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.stmt):
            if stmt.lineno in seen:
                return True
            seen.add(stmt.lineno)
    return False


@dataclass
class Answer:
    """What the grader takes from a notebook: kept chunks, per-cell syntax errors, and
    the state of its written-answer cells."""
    chunks: list
    problems: list  # (code cell number, message): syntax errors, unreadable cells
    written: list = field(default_factory=list)  # WrittenAnswer, in notebook order


#: What nbgrader leaves in a written-answer cell of the release (nbgrader_config.py).
TEXT_STUB = "YOUR ANSWER HERE"


@dataclass
class WrittenAnswer:
    """A written-answer cell (nbgrader solution markdown): its grade_id, the heading
    above it, and whether the student wrote anything in place of the stub."""
    grade_id: str
    heading: str
    filled: bool


def written_answers(nb: dict) -> list:
    """Every written-answer cell of ``nb``, in order: a markdown cell whose nbgrader
    metadata marks it a solution. It counts as filled when anything but the stub (and
    whitespace) is left in it."""
    found, heading = [], ""
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        meta = cell.get("metadata")
        nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
        if isinstance(nbg, dict) and nbg.get("solution") is True:
            text = _cell_text(cell).replace(TEXT_STUB, "").strip()
            found.append(WrittenAnswer(str(nbg.get("grade_id", "")), heading, bool(text)))
        else:
            heading = _heading(cell) or heading
    return found


def _heading(cell) -> str | None:
    for line in split_lines(_cell_text(cell)):
        if line.startswith("#"):
            return line.lstrip("#").strip()[:60] or None
    return None


def cell_label(number: int, text: str, heading: str | None) -> str:
    """How a student finds a code cell: its number among the code cells, its first
    line, and the heading above it."""
    first = next((ln.strip() for ln in split_lines(text) if ln.strip()), "")
    first = first if len(first) <= 50 else first[:47] + "..."
    where = f' under "{heading}"' if heading else ""
    return f"code cell {number} (`{first}`){where}"


def read_answer(nb: dict, deadline: float | None = None, refuse_patches: bool = True) -> Answer:
    """Kept definitions of every code cell, in notebook order; reading stops at
    ``deadline`` (``time.monotonic()``), if given, with a problem noted. Cells are
    numbered among the code cells, from 1, as a student counts them. Statements that
    would change imported modules or classes are left out and listed in each chunk's
    ``refused`` (unless ``refuse_patches`` is false: ``experiment.py`` on the student's
    own machine runs them)."""
    import time

    chunks, errors = [], []
    library: set = set()
    imported: set | None = set() if refuse_patches else None
    heading, number = None, 0
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        if cell.get("cell_type") == "markdown":
            heading = _heading(cell) or heading
            continue
        if cell.get("cell_type") != "code":
            continue
        number += 1
        if deadline is not None and time.monotonic() > deadline:
            errors.append((number, f"the notebook took too long to read; code cells {number} and "
                                   "later were skipped"))
            break
        if _tags(cell) & SKIP_TAGS or _is_check_cell(cell):
            continue
        text = _cell_text(cell)
        label = cell_label(number, text, heading)
        try:
            chunk = definitions_of(text, number, library, imported)
        except SyntaxError as exc:
            errors.append((number, f"SyntaxError in {label}, line {exc.lineno}: {exc.msg}"))
            continue
        except Exception as exc:  # too large, or IPython's translation failing on odd input
            errors.append((number, f"{label} could not be read: {exc}"))
            continue
        if chunk is not None:
            chunk.label = label
            chunks.append(chunk)
    return Answer(chunks, errors, written_answers(nb))


@dataclass
class Failure:
    """A top-level statement that raised while the definitions ran."""
    cell: int
    line: int
    text: str
    error: BaseException
    tentative: bool = False


class StatementTimeout(BaseException):
    """A tentative statement ran past its time limit (BaseException: a student's
    ``except Exception`` must not swallow it)."""


def _run_limited(code, namespace, seconds: float | None) -> None:
    import signal
    import threading

    if seconds is None or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "SIGALRM"):  # Windows: no timer signal, so no limit
        exec(code, namespace)
        return

    def expire(signum, frame):
        raise StatementTimeout(f"it ran longer than {seconds:g} s, so it was stopped "
                               "(training and long computations belong in functions or in "
                               "cells tagged `training`)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        exec(code, namespace)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def exec_chunks(chunks, namespace: dict, tentative_s: float = TENTATIVE_S,
                tentative_total_s: float = TENTATIVE_TOTAL_S) -> list:
    """Run kept chunks in ``namespace`` (student side only), one top-level statement at
    a time, so that a statement that raises costs only what it would define. Tentative
    statements run under ``tentative_s`` each while ``tentative_total_s`` lasts, and are
    skipped after that; imports get ``IMPORT_S`` and every other statement ``STATEMENT_S``. Each chunk's source is registered with ``linecache`` so
    tracebacks show the student's lines. Returns a ``Failure`` per statement that raised."""
    import linecache
    import time

    failures = []
    budget = tentative_total_s
    for chunk in chunks:
        linecache.cache[chunk.filename] = (len(chunk.source), None,
                                           [ln + "\n" for ln in split_lines(chunk.source)],
                                           chunk.filename)
        lines = split_lines(chunk.source)
        try:
            tree = ast.parse(chunk.source, chunk.filename)
        except SyntaxError as exc:
            failures.append(Failure(chunk.cell, exc.lineno or 1, "", exc))
            continue
        tentative = set(chunk.tentative)
        for stmt in tree.body:
            text = lines[stmt.lineno - 1].strip()[:80]
            limited = stmt.lineno in tentative
            if limited and budget <= 0:
                failures.append(Failure(chunk.cell, stmt.lineno, text, StatementTimeout(
                    "skipped: earlier statements that do work used up the grader's "
                    f"{tentative_total_s:g} s for them"), True))
                continue
            started = time.monotonic()
            seconds = (min(tentative_s, budget) if limited else
                       IMPORT_S if isinstance(stmt, (ast.Import, ast.ImportFrom)) else STATEMENT_S)
            try:
                code = compile(ast.Module([stmt], type_ignores=[]), chunk.filename, "exec")
                _run_limited(code, namespace, seconds)
            except BaseException as exc:  # noqa: BLE001 - a student cell may raise anything, even KeyboardInterrupt
                failures.append(Failure(chunk.cell, stmt.lineno, text, exc, limited))
            finally:
                if limited:
                    budget -= time.monotonic() - started
    return failures


def load_definitions(path, namespace: dict | None = None) -> dict:
    """Read a notebook file and run its definitions in a fresh namespace (used by
    ``experiment.py`` on the student's own machine). Raises on syntax errors and on
    definitions that fail, naming the cell; a tentative statement that fails only
    costs its own names."""
    answer = read_answer(load(path), refuse_patches=False)
    if answer.problems:
        raise SyntaxError("; ".join(msg for _, msg in answer.problems))
    ns = namespace if namespace is not None else {"__name__": "hw10_notebook"}
    failures = [f for f in exec_chunks(answer.chunks, ns) if not f.tentative]
    if failures:
        f = failures[0]
        raise RuntimeError(f"code cell {f.cell}, line {f.line} of {path} (`{f.text}`) raised "
                           f"{type(f.error).__name__}: {f.error}") from f.error
    return ns
