"""The fork server: one interpreter per grading that has torch and the kit imported, and
forks a fresh worker for each question (``forkserver.py`` is the judge's side).

Starting a worker from scratch costs about 2.5 s, nearly all of it importing torch and
matplotlib; a fork of a process that already has them costs a few milliseconds, and the
children share those pages. Nothing here is secret: this interpreter is started from
this file's text (``python -I -c``), imports only what the worker imports, holds no
checks or reference values, and runs no student code itself. Torch is imported but runs
no operation here, so no thread pool exists to be broken by ``fork``.

argv = [kit_dir, socket fd, path of worker.py]. On the socket (SOCK_SEQPACKET), the
judge sends one JSON request per worker, {"id", "cwd", "env", "uid", "gid", "limits"},
with three descriptors attached (the worker's stdin, its output pipe, its reply pipe);
this answers {"id", "pid"} or {"id", "error"}, and {"exit": pid, "code": returncode}
when a child ends (a negative code is the signal that ended it). It exits when the
judge closes the socket.

A child, before anything else: closes every descriptor but its three, starts its own
session, moves into its folder with its environment, drops to the sandbox user (all
groups dropped), applies the worker's limits, reseeds the random generators it
inherited, and only then runs ``worker.serve``.
"""
import json
import os
import select
import socket
import sys

REPLY_FD = 3
#: The exit status of a child that failed before it ran the worker (the grader's fault).
SETUP_FAILED = 71
#: Imported once here so that no child pays for them (the notebooks' own imports).
PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "matplotlib", "matplotlib.pyplot",
           "hw10kit.notebook", "hw10kit.checks.core", "hw10kit.checks.wire", "hw10kit.manifest")


def preload(kit_dir: str) -> dict:
    """Import the libraries and the worker's code; returns the worker's namespace."""
    import importlib

    sys.path.insert(0, kit_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a child imports it again and reports the failure
            pass
    try:
        import torch

        torch.set_num_threads(1)
        from hw10kit.manifest import PROBLEMS  # the probes modules: bound again in each child

        for p in PROBLEMS:
            try:
                importlib.import_module(p.probes)
            except Exception:  # noqa: BLE001 - as above
                pass
    except Exception:  # noqa: BLE001 - as above
        pass
    worker = {"__name__": "hw10_worker", "__builtins__": __builtins__}
    path = sys.argv[3]
    with open(path, encoding="utf-8") as fh:
        exec(compile(fh.read(), path, "exec"), worker)  # noqa: S102 - the grader's own file
    return worker


def child(worker: dict, request: dict, fds: list, server: socket.socket) -> None:
    """In the forked child: become the sandboxed worker. Never returns."""
    code = SETUP_FAILED
    try:
        import fcntl

        server.close()
        # moved above 0-3 first, so that placing one cannot overwrite another
        stdin, out, reply = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(reply, REPLY_FD)
        os.closerange(REPLY_FD + 1, max(1024, os.sysconf("SC_OPEN_MAX")))
        os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _set_oom_score(1000)  # while still root: the OOM killer's first victim, never the judge
        if request.get("uid") is not None:
            os.setgroups([])
            os.setgid(int(request["gid"]))
            os.setuid(int(request["uid"]))
            _as_if_exec()
        worker["apply_limits"](request["limits"])
        _fresh_state(["-c", sys.argv[1], str(REPLY_FD), request["limits"]])
        code = 70
        worker["serve"](REPLY_FD)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - said on the output pipe the judge reads
        try:
            import traceback

            os.write(2, traceback.format_exc().encode("utf-8", "replace")[-2000:])
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # what a process exiting normally would print
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)


def _set_oom_score(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(value))
    except OSError:
        pass


def _as_if_exec() -> None:
    """After the uid drop: what exec would have given a worker started anew. No
    capability may remain (a stray securebit could keep root's), and the process is
    dumpable again (setuid without exec makes /proc/self root's)."""
    import ctypes

    with open("/proc/self/status") as fh:
        caps = {k: int(v, 16) for k, v in (line.split(":", 1) for line in fh if line.startswith("Cap"))
                if k in ("CapEff", "CapPrm", "CapAmb")}
    if any(caps.values()):
        raise PermissionError(f"capabilities remain after the uid drop: {caps}")
    PR_SET_DUMPABLE = 4
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def _fresh_state(argv: list) -> None:
    """What a worker started anew would have had: its own random seeds, its argv
    (``worker.main``'s), no cached temp folder."""
    import random
    import tempfile

    sys.argv = argv
    tempfile.tempdir = None
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


def reap(server: socket.socket) -> None:
    """Report every child that ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(server, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(server, msg) -> None:
    try:
        server.send(json.dumps(msg).encode())
    except OSError:
        pass


def main() -> None:
    kit_dir, fd = sys.argv[1], int(sys.argv[2])
    server = socket.socket(fileno=fd)
    worker = preload(kit_dir)
    _set_oom_score(500)  # before the judge, after the workers
    import gc

    gc.collect()
    gc.freeze()  # a child's collections then leave the shared pages alone
    sys.stdout.flush()
    sys.stderr.flush()
    _send(server, {"ready": True})
    while True:
        ready, _, _ = select.select([server], [], [], 0.05)
        reap(server)
        if not ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(server, 1 << 20, 3)
        except OSError:
            return
        if not data:
            return
        request = {}
        try:
            request = json.loads(data)
            if len(fds) != 3:
                raise ValueError(f"expected 3 descriptors, got {len(fds)}")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as exc:  # noqa: BLE001 - this request fails, the server goes on
            for f in fds:
                os.close(f)
            _send(server, {"id": request.get("id") if isinstance(request, dict) else None,
                           "error": f"{type(exc).__name__}: {exc}"})
            continue
        if pid == 0:
            child(worker, request, fds, server)
        for f in fds:
            os.close(f)
        _send(server, {"id": request.get("id"), "pid": pid})


if __name__ == "__main__":
    main()
