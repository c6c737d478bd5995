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


class NotebookError(ValueError):
    """The file is not a readable Jupyter notebook; the message says why."""


@dataclass
class Chunk:
    """Kept code of one cell: ``cell`` is the notebook cell number (1-based)."""
    cell: int
    source: str
    dropped: list = field(default_factory=list)  # one-line descriptions of what was left out

    @property
    def filename(self) -> str:
        return f"<cell {self.cell}>"


def load(data) -> dict:
    """Parse notebook JSON (bytes, str or a path) into a dict, with a clear error."""
    if isinstance(data, (bytes, bytearray)):
        text = bytes(data).decode("utf-8-sig", errors="replace")
    elif isinstance(data, str) and data.lstrip().startswith("{"):
        text = data
    else:
        with open(data, "rb") as fh:
            text = fh.read().decode("utf-8-sig", errors="replace")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"the notebook is not valid JSON ({exc.msg} at line {exc.lineno}); "
                            "re-download it from Jupyter with File > Save and try again") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError("the file is JSON but not a Jupyter notebook (no 'cells' list)")
    return nb


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


def _is_cheap(expr) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, ast.Call) and _dotted(node.func) not in CHEAP_CALLS:
            return False
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
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
    if isinstance(stmt, ast.Try):
        return True
    return False


def _describe(stmt, lines) -> str:
    first = lines[stmt.lineno - 1].strip() if stmt.lineno <= len(lines) else ""
    return f"line {stmt.lineno}: {first[:60]}"


def _filter_block(stmts, lines, out, dropped):
    """Blank the lines of dropped statements in ``out`` (a list of source lines);
    returns whether anything in the block was kept."""
    kept_any = False
    for stmt in stmts:
        verdict = _keep(stmt)
        if verdict is True and not isinstance(stmt, (ast.If, ast.Try)):
            kept_any = True
            continue
        if verdict is False:
            for n in range(stmt.lineno - 1, stmt.end_lineno):
                out[n] = ""
            dropped.append(_describe(stmt, lines))
            continue
        # if / try: filter each body; an emptied body gets a `pass` to stay valid Python.
        bodies = ([stmt.body, stmt.orelse] if isinstance(stmt, ast.If) else
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
    py = to_python(text)
    if py is None:
        return None
    filename = f"<cell {cell}>"
    try:
        tree = ast.parse(py, filename=filename)
    except SyntaxError as exc:
        exc.filename = filename
        raise
    lines = py.splitlines()
    out = list(lines)
    dropped: list = []
    if any(";" in ln for ln in lines) and _has_shared_lines(tree):
        # Several statements on one line: rebuild from the AST (line numbers may shift).
        kept = [s for s in tree.body if _keep(s) is not False]
        src = ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""
        return Chunk(cell, src + "\n", [_describe(s, lines) for s in tree.body if _keep(s) is False]) if kept else None
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
    syntax_errors: list  # (cell number, message)


def read_answer(nb: dict) -> Answer:
    """Kept definitions of every code cell, in notebook order."""
    chunks, errors = [], []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        if _tags(cell) & SKIP_TAGS or _is_check_cell(cell):
            continue
        try:
            chunk = definitions_of(_cell_text(cell), number)
        except SyntaxError as exc:
            errors.append((number, f"SyntaxError in cell {number}, line {exc.lineno}: {exc.msg}"))
            continue
        except Exception as exc:  # IPython's translation failing on odd input
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
    if answer.syntax_errors:
        raise SyntaxError("; ".join(msg for _, msg in answer.syntax_errors))
    ns = namespace if namespace is not None else {"__name__": "hw10_notebook"}
    failures = exec_chunks(answer.chunks, ns)
    if failures:
        cell, exc = failures[0]
        raise RuntimeError(f"cell {cell} of {path} raised {type(exc).__name__}: {exc}") from exc
    return ns
