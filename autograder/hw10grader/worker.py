"""The sandboxed side: runs a student's definitions and answers probe requests.

The judge starts this file's text with ``python -I -c`` as the unprivileged user,
under resource limits, with argv = [kit_dir, reply_fd, limits as JSON]; it applies the limits before
anything else. Or the fork server (``zygote.py``), which has torch imported already, forks a
child that drops to the unprivileged user, applies the same limits and calls ``serve``. Nothing in it is secret: it
holds no checks or reference values. Protocol (``hw10kit.checks.wire`` lines):

  judge -> worker (stdin):  {"chunks": [{"cell", "source", "tentative"}...]}, then requests
                            {"id", "nonce", "probe", "target", "inputs", "torch_seed"}
  worker -> judge (reply_fd): {"ready": true, "failures": [[cell, line, statement, error]...]},
                            then {"id", "nonce", "ok": outputs} or {"id", "nonce", "error": text}

The student's own output (fd 1 and 2) goes to a pipe the judge drains and caps; the
request and reply channels live on private descriptors, and fd 0 is /dev/null, so
prints and input() cannot touch the protocol.

Before any student code runs, the worker binds every probe of every problem
(``hw10kit.manifest.PROBLEMS[*].probes``) into a table that requests are resolved in,
and snapshots the library it relies on (``Integrity``): after the definitions ran and
around every probe call it checks that those objects are still the same, so a cell
that replaces a probe, a helper or a torch function is reported as tampering, never
graded. What in-process code can still do is in docs/grading.md, "What isolation does not
cover".
"""
import os
import sys

#: Modules whose callables the probes and the reply path rely on (and their submodules).
WATCHED = ("builtins", "torch", "numpy", "hw10kit", "json", "base64", "zlib", "math",
           "traceback", "linecache", "functools", "inspect", "types", "copyreg", "abc")
#: Attributes a library may add to a class by itself (caches), never a tampering sign.
CLASS_CACHES = frozenset({"__slotnames__", "__abstractmethods__", "_abc_impl", "__weakref__",
                          "__annotations__", "__orig_bases__"})


def apply_limits(spec: str) -> None:
    """The judge's rlimits, and no_new_privs: no setuid program can raise this
    process or its children above the sandbox user. The worker also volunteers to be
    the first victim of the OOM killer (the judge shares its memory cgroup)."""
    import ctypes
    import json
    import resource

    for name, (soft, hard) in json.loads(spec).items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    PR_SET_NO_NEW_PRIVS = 38
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:  # raising it needs no privilege
            fh.write("1000")
    except OSError:
        pass


def bind_probes():
    """(table, broken): every probe function of every problem's probes module, by its
    wire name ``module:function``, bound now, before any student code runs; ``broken``
    maps a probes module that failed to import to why."""
    import importlib
    import types

    from hw10kit.checks.core import probe_id

    table, broken = {}, {}
    try:
        from hw10kit.manifest import PROBLEMS
        modules = sorted({p.probes for p in PROBLEMS if getattr(p, "probes", "")})
    except Exception as exc:  # noqa: BLE001 - reported with every request
        return table, {"hw10kit.manifest": f"{type(exc).__name__}: {exc}"}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - one problem's probes cost only its checks
            broken[name] = f"{type(exc).__name__}: {exc}"
            continue
        for value in list(vars(module).values()):
            if isinstance(value, types.FunctionType) and value.__module__ == name:
                table[probe_id(value)] = value
    return table, broken


class Integrity:
    """What the probes rely on, as it was before the student's code ran: the values of
    every watched module's globals and every watched class's attributes (functions,
    classes, builtins, modules: compared by identity, functions also by their code and
    defaults), which module each watched name in ``sys.modules`` is, and the probe table.
    ``changes()`` names what differs now."""

    def __init__(self, table: dict):
        import types
        import warnings

        self._types = types
        with warnings.catch_warnings():  # reading a deprecated alias may warn
            warnings.simplefilter("ignore")
            self._snapshot(table)

    def _snapshot(self, table):
        import types

        self.library_dirs = tuple(os.path.dirname(os.path.realpath(sys.modules[m].__file__)) + os.sep
                                  for m in ("torch", "numpy") if getattr(sys.modules.get(m), "__file__", None))
        self.table, self.table_copy = table, dict(table)
        self.modules = []   # (name, module, live dict, snapshot of the callables in it)
        self.classes = []   # (qualified name, live mappingproxy, snapshot)
        self.code = []      # (label, function, __code__, __defaults__, __kwdefaults__)
        self.sys_modules = sys.modules
        seen_classes = set()
        for name, module in sorted(sys.modules.items()):
            if not isinstance(module, types.ModuleType) or name.split(".")[0] not in WATCHED:
                continue
            live = vars(module)
            snap = {k: v for k, v in live.items() if self._guarded(v)}
            self.modules.append((name, module, live, snap))
            for key, value in snap.items():
                self._note_code(f"{name}.{key}", value)
                if isinstance(value, type) and id(value) not in seen_classes \
                        and getattr(value, "__module__", "").split(".")[0] in WATCHED:
                    seen_classes.add(id(value))
                    self._add_class(f"{value.__module__}.{value.__qualname__}", value)

    @staticmethod
    def _guarded(value) -> bool:
        """Callables, classes, modules and descriptors; not data (a library may rebind
        its own counters and caches)."""
        import types

        return callable(value) or isinstance(value, (types.ModuleType, staticmethod, classmethod,
                                                     property))

    def _add_class(self, label, cls):
        live = vars(cls)
        snap = {k: v for k, v in live.items() if self._guarded(v) or hasattr(type(v), "__get__")}
        self.classes.append((label, live, snap))
        for key, value in snap.items():
            inner = getattr(value, "__func__", None) or getattr(value, "fget", None) or value
            self._note_code(f"{label}.{key}", inner)

    def _note_code(self, label, value):
        if isinstance(value, self._types.FunctionType):
            self.code.append((label, value, value.__code__, value.__defaults__, value.__kwdefaults__))

    def _library_made(self, value) -> bool:
        """``value`` was made by torch or numpy itself: torch rebinds some of its own
        functions when a module loads lazily (``import torch._dynamo`` wraps
        ``torch.manual_seed``, say). Functions (also inside a property, partial,
        classmethod or staticmethod) whose code lives in those libraries' folders."""
        for _ in range(4):
            inner = getattr(value, "fget", None) or getattr(value, "__func__", None) \
                or getattr(value, "func", None)
            if inner is None or inner is value:
                break
            value = inner
        if value is None:  # a property without a getter
            return True
        code = getattr(value, "__code__", None) if isinstance(value, self._types.FunctionType) else None
        return code is not None and os.path.realpath(code.co_filename).startswith(self.library_dirs)

    def changes(self, limit: int = 3) -> list:
        """Names of what was replaced, added or removed (at most ``limit``). A value that
        torch or numpy rebound itself is accepted, and becomes the reference."""
        found = []
        missing = object()
        for ident, probe in self.table_copy.items():
            if self.table.get(ident) is not probe:
                found.append(f"the probe {ident}")
        for name, module, live, snap in self.modules:
            if self.sys_modules.get(name) is not module:
                found.append(f"the module {name}")
            for key, value in snap.items():
                now = live.get(key, missing)
                if now is not value:
                    if now is not missing and not name.startswith("hw10kit") and self._library_made(now):
                        snap[key] = now
                        continue
                    found.append(f"{name}.{key}")
                    if len(found) >= limit:
                        return found
        for label, live, snap in self.classes:
            for key, value in snap.items():
                now = live.get(key, missing)
                if now is not value:
                    if now is not missing and not label.startswith("hw10kit") and self._library_made(now):
                        snap[key] = now
                        continue
                    found.append(f"{label}.{key}")
            if len(live) != len(snap):
                found.extend(f"{label}.{key}" for key, value in live.items()
                             if key not in snap and key not in CLASS_CACHES
                             and (self._guarded(value) or hasattr(type(value), "__get__"))
                             and not self._library_made(value))
            if len(found) >= limit:
                return found[:limit]
        for label, fn, code, defaults, kwdefaults in self.code:
            if fn.__code__ is not code or fn.__defaults__ is not defaults \
                    or fn.__kwdefaults__ is not kwdefaults:
                found.append(f"the code of {label}")
                if len(found) >= limit:
                    break
        return found[:limit]


def tampering_message(target: str, changed: list) -> str:
    what = ", ".join(changed)
    return (f"your code replaced {what}, which the grader relies on to call {target} and read its "
            "result: the check cannot trust its result, so it does not pass. Remove the code that "
            "changes library or grader objects (assignments like `torch.Tensor.mean = ...`, "
            "`F.softplus = ...` or into hw10kit) and define only your own functions and classes.")


def main():
    kit_dir, reply_fd = sys.argv[1], int(sys.argv[2])
    apply_limits(sys.argv[3])
    sys.path.insert(0, kit_dir)
    serve(reply_fd)


def serve(reply_fd: int) -> None:
    """Answer the judge: read the definitions from fd 0, run them, then serve probe
    requests until fd 0 closes. Limits are already applied and the kit is importable
    (``main`` here, or the fork server's child)."""
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    replies = os.fdopen(reply_fd, "wb", buffering=0)
    os.environ.setdefault("MPLBACKEND", "Agg")

    from hw10kit.checks import wire
    from hw10kit.checks.core import call_probe, student_traceback
    from hw10kit.notebook import Chunk, exec_chunks

    def send(msg):
        replies.write(wire.dumps(msg))

    setup = wire.loads(requests.readline())
    import torch

    torch.set_num_threads(1)
    table, broken = bind_probes()
    integrity = Integrity(table)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    chunks = [Chunk(int(c["cell"]), str(c["source"]), tentative=[int(n) for n in c["tentative"]])
              for c in setup["chunks"]]
    failures = exec_chunks(chunks, namespace)
    tampered = integrity.changes()  # sticky: once changed, nothing after can be trusted
    send({"ready": True, "failures": [[f.cell, f.line, f.text, student_traceback(f.error)]
                                      for f in failures]})

    for line in requests:
        req = wire.loads(line)
        head = {"id": req["id"], "nonce": req.get("nonce")}
        probe = table.get(req["probe"])
        if probe is None:
            module = str(req["probe"]).partition(":")[0]
            why = f" ({module} failed to import: {broken[module]})" if module in broken else ""
            send({**head, "error": f"internal: unknown probe {req['probe']!r}{why}", "internal": True})
            continue
        if not tampered:
            reply = call_probe(probe, req["target"], namespace, req["inputs"], int(req["torch_seed"]))
            tampered = integrity.changes()  # also catches a change made between requests
        if tampered:
            reply = {"error": tampering_message(req["target"], tampered), "tampered": True}
        try:
            send({**head, **reply})
        except wire.WireError as exc:
            send({**head, "error": f"{req['target']} returned something that cannot be "
                                   f"checked ({exc})"})


if __name__ == "__main__":
    main()
