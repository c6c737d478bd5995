"""Reading a student's answer out of a notebook: one reader for the grader and ``experiment.py``.

Every code cell is read in order the way IPython would (line and cell magics, ``!``
shell lines), and only what *defines* things is kept: imports, functions, classes,
assignments of cheap expressions, and ``if``/``try`` blocks made of those. Everything
that does work (training loops, plots, calls, check cells) is left out, so the answer is
graded without running the notebook. Kept code keeps its line numbers, so tracebacks
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

#: Bounds on what one cell may hold (IPython's translation is quadratic in magics).
MAX_CELL_CHARS = 200_000
MAX_MAGIC_LINES = 200


#: Code kept from cell N is compiled under this file name, so tracebacks name the cell.
CELL_FILE_PREFIX = "<cell "


def cell_filename(cell: int) -> str:
    return f"{CELL_FILE_PREFIX}{cell}>"


class NotebookError(ValueError):
    """The file is not a readable Jupyter notebook; the message says why."""


@dataclass
class Chunk:
    """Kept code of one cell: ``cell`` is the notebook cell number (1-based)."""
    cell: int
    source: str
    dropped: list = field(default_factory=list)  # {"line", "text", "names"} of what was left out

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

    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in PYTHON_CELL_MAGICS:
            return None
        # Keep line numbers: the magic line becomes blank, the body stays in place.
        text = "\n".join(lines[:first] + [""] + lines[first + 1:]) + "\n"
    return TransformerManager().transform_cell(text)


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _cheap_call(call: ast.Call) -> bool:
    name = _dotted(call.func)
    if name is not None:
        return name in CHEAP_CALLS or name.split(".")[0] in CHEAP_MODULES
    # a method of a cheap call's result: torch.tensor(0.5).float(), torch.Generator().manual_seed(0)
    func = call.func
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and _cheap_call(func.value)


def _is_cheap(expr) -> bool:
    """No expensive call runs when ``expr`` is evaluated (lambda bodies do not run)."""
    todo = [expr]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Lambda):
            todo.extend(node.args.defaults + [d for d in node.args.kw_defaults if d is not None])
            continue
        if isinstance(node, ast.Call) and not _cheap_call(node):
            return False
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        todo.extend(ast.iter_child_nodes(node))
    return True


def _keep(stmt) -> bool | list:
    """True to keep the statement whole, False to drop it, or for an if/try a list of
    (body, kept statements) pairs to filter recursively."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef, ast.Pass, ast.Global)):
        return True
    if isinstance(stmt, ast.Assign):
        return _is_cheap(stmt.value)
    if isinstance(stmt, ast.AnnAssign):
        return stmt.value is None or _is_cheap(stmt.value)
    if isinstance(stmt, ast.If):
        return _is_cheap(stmt.test)
    if isinstance(stmt, ast.With):
        return all(_is_cheap(item.context_expr) for item in stmt.items)
    if isinstance(stmt, ast.Try):
        return True
    return False


BLOCKS = (ast.If, ast.Try, ast.With)


def _assigned_names(stmt) -> list:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else \
        [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
    return sorted({n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)})


def _describe(stmt, lines) -> dict:
    """What was left out: its line, its first line of text, the names it would assign."""
    first = lines[stmt.lineno - 1].strip() if stmt.lineno <= len(lines) else ""
    return {"line": stmt.lineno, "text": first[:80], "names": _assigned_names(stmt)}


def _filter_block(stmts, lines, out, dropped):
    """Blank the lines of dropped statements in ``out`` (a list of source lines);
    returns whether anything in the block was kept."""
    kept_any = False
    for stmt in stmts:
        verdict = _keep(stmt)
        if verdict is True and not isinstance(stmt, BLOCKS):
            kept_any = True
            continue
        if verdict is False:
            for n in range(stmt.lineno - 1, stmt.end_lineno):
                out[n] = ""
            dropped.append(_describe(stmt, lines))
            continue
        # if / with / try: filter each body; an emptied body gets a `pass` to stay valid.
        bodies = ([stmt.body, stmt.orelse] if isinstance(stmt, ast.If) else [stmt.body]
                  if isinstance(stmt, ast.With) else
                  [stmt.body, *[h.body for h in stmt.handlers], stmt.orelse, stmt.finalbody])
        for body in bodies:
            if body and not _filter_block(body, lines, out, dropped):
                first = body[0]
                out[first.lineno - 1] = " " * first.col_offset + "pass"
        kept_any = True
    return kept_any


def definitions_of(text: str, cell: int) -> Chunk | None:
    """The kept code of one code cell (None when nothing is kept).

    Raises SyntaxError (with ``filename`` set to ``<cell N>``) for a cell that is not
    valid Python after IPython's translation.
    """
    if len(text) > MAX_CELL_CHARS:
        raise ValueError(f"it holds {len(text)} characters; at most {MAX_CELL_CHARS} are read")
    magics = sum(1 for ln in text.splitlines()
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
    lines = py.splitlines()
    out = list(lines)
    dropped: list = []
    if not _filter_block(tree.body, lines, out, dropped):
        return None
    return Chunk(cell, "\n".join(out) + "\n", dropped)


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
    """What the grader takes from a notebook: kept chunks and per-cell syntax errors."""
    chunks: list
    problems: list  # (cell number, message): syntax errors, unreadable cells


def read_answer(nb: dict, deadline: float | None = None) -> Answer:
    """Kept definitions of every code cell, in notebook order; reading stops at
    ``deadline`` (``time.monotonic()``), if given, with a problem noted."""
    import time

    chunks, errors = [], []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if deadline is not None and time.monotonic() > deadline:
            errors.append((number, f"the notebook took too long to read; cells {number} and "
                                   "later were skipped"))
            break
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        if _tags(cell) & SKIP_TAGS or _is_check_cell(cell):
            continue
        try:
            chunk = definitions_of(_cell_text(cell), number)
        except SyntaxError as exc:
            errors.append((number, f"SyntaxError in cell {number}, line {exc.lineno}: {exc.msg}"))
            continue
        except Exception as exc:  # too large, or IPython's translation failing on odd input
            errors.append((number, f"cell {number} could not be read: {exc}"))
            continue
        if chunk is not None:
            chunks.append(chunk)
    return Answer(chunks, errors)


def exec_chunks(chunks, namespace: dict) -> list:
    """Run kept chunks in ``namespace`` (student side only). Each chunk's source is
    registered with ``linecache`` so tracebacks show the student's lines. Returns
    ``(cell, exception)`` for chunks that raised; later chunks still run."""
    import linecache

    failures = []
    for chunk in chunks:
        linecache.cache[chunk.filename] = (len(chunk.source), None,
                                           chunk.source.splitlines(True), chunk.filename)
        try:
            exec(compile(chunk.source, chunk.filename, "exec"), namespace)
        except BaseException as exc:  # noqa: BLE001 - a student cell may raise anything
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append((chunk.cell, exc))
    return failures


def load_definitions(path, namespace: dict | None = None) -> dict:
    """Read a notebook file and run its definitions in a fresh namespace (used by
    ``experiment.py`` on the student's own machine). Raises on syntax errors and on
    cells that fail, naming the cell."""
    answer = read_answer(load(path))
    if answer.problems:
        raise SyntaxError("; ".join(msg for _, msg in answer.problems))
    ns = namespace if namespace is not None else {"__name__": "hw10_notebook"}
    failures = exec_chunks(answer.chunks, ns)
    if failures:
        cell, exc = failures[0]
        raise RuntimeError(f"cell {cell} of {path} raised {type(exc).__name__}: {exc}") from exc
    return ns
