"""Starting and talking to the sandboxed process that runs a student's code.

One process per question (forked from the grading's fork server, ``forkserver.py``, when
it runs, else started anew): it runs as an unprivileged user when the judge is root,
in its own session and empty working folder, with limits on CPU time, address space,
processes, open files and file size, and the judge enforces a wall-clock deadline.
Only plain data crosses the boundary (``hw10kit.checks.wire``); nothing from the
submission is imported or run on the judge's side.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hw10kit.checks import wire

from . import resources, sandbox_users, settings
from .forkserver import ForkServer, ForkServerError, Forked
from .zygote import SETUP_FAILED

WORKER_SOURCE = (Path(__file__).with_name("worker.py")).read_text()
KIT_DIR = settings.value("HW10_KIT_DIR") or str(Path(__file__).resolve().parents[1]
                                                if (Path(__file__).resolve().parents[1] / "hw10kit").is_dir()
                                                else Path(__file__).resolve().parents[2])


@dataclass
class Limits:
    """Per-question limits. Memory is address space (virtual): torch maps far more than
    it touches, so this caps runaway allocations rather than resident memory."""
    wall_s: float = settings.value("HW10_QUESTION_TIMEOUT_S")
    cpu_s: int = settings.value("HW10_QUESTION_CPU_S")
    memory_mb: int = settings.value("HW10_MEMORY_MB")
    processes: int = settings.value("HW10_MAX_PROCESSES")
    open_files: int = 256
    file_mb: int = 16
    output_chars: int = 4000


class SandboxError(Exception):
    """The sandboxed process died, timed out or broke the protocol; the message is
    written for the student. ``memory_kill``: it was SIGKILLed while the kernel's OOM
    killer was at work (or could not tell), so it may have died for another process's
    memory."""

    def __init__(self, message: str, memory_kill: bool = False):
        super().__init__(message)
        self.memory_kill = memory_kill


#: Set by ``make grade`` and the tests (never on Gradescope): a root judge whose Python
#: the sandbox users cannot reach may then run student code as itself, and says so.
LOCAL_ENV = "HW10_LOCAL"
_ACTIVE: set = set()  # leases held by live sandboxes, for the watchdog's last sweep
_SERVER: list = []    # the grading's fork server, while it runs
#: What every worker's environment holds (each also gets HOME, TMPDIR and its cleanup token).
BASE_ENV = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
            "CUDA_VISIBLE_DEVICES": ""}


def _random_token() -> str:
    """A variable whose name and value are both random, so that nothing stable in the
    environment tells student code that it runs under the grader."""
    return f"X{os.urandom(6).hex().upper()}={os.urandom(8).hex()}"


def start_forkserver(python: str | None = None) -> None:
    """Start the fork server for this grading (``HW10_FORKSERVER=0``: never; nor without
    root, since only workers of a leased pool user are forked). It imports torch while
    the notebooks are read; a failure only means workers start anew."""
    if not settings.value("HW10_FORKSERVER") or _SERVER or os.geteuid() != 0:
        return
    python = python or settings.value("HW10_WORKER_PYTHON") or sys.executable
    home = tempfile.mkdtemp(prefix="hw10-forkserver-")
    os.chmod(home, 0o755)  # matplotlib's cache, written by the server, read by the workers
    token = _random_token()
    env = {**BASE_ENV, "HOME": home, "MPLCONFIGDIR": home, token.split("=", 1)[0]: token.split("=", 1)[1]}
    try:
        server = ForkServer(python, KIT_DIR, env, token)
    except OSError:
        shutil.rmtree(home, ignore_errors=True)
        return
    server.home = home
    _SERVER.append(server)


def stop_forkserver() -> None:
    """Stop the server and kill every process forked from it that is still alive."""
    while _SERVER:
        server = _SERVER.pop()
        server.close()
        kill_by_token(server.token)
        shutil.rmtree(server.home, ignore_errors=True)


def _needed_paths(python: str) -> list[str]:
    """What the worker must reach: the interpreter, the kit and (for the judge's own
    interpreter) where torch is installed."""
    import importlib.util

    paths = [python, os.path.join(KIT_DIR, "hw10kit", "__init__.py")]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        spec = importlib.util.find_spec("torch")
        if spec is not None and spec.origin:
            paths.append(spec.origin)
    return paths


def choose_identity(python: str, deadline: float):
    """(lease or None, note or None): who runs the student's code.

    A root judge leases a dedicated pool user (``sandbox_users``). When that user cannot
    reach the interpreter (a checkout inside a 0700 folder, such as /root in a
    container), a local run (``HW10_LOCAL=1``) runs the code as the judge's own user and
    returns a note saying so; on Gradescope that is an internal error naming the folder.
    """
    if os.geteuid() != 0:
        return None, None
    try:
        lease = sandbox_users.acquire(deadline)
    except sandbox_users.SandboxUserError as exc:
        raise SandboxError(f"internal: {exc}") from None
    for path in _needed_paths(python):
        blocked = sandbox_users.blocked_directory(path, lease.uid, lease.gid)
        if blocked is None:
            continue
        sandbox_users.release(lease)
        mode = stat.S_IMODE(blocked.stat().st_mode)
        why = (f"the sandbox user {lease.name} cannot traverse {blocked} (mode {mode:04o}), "
               f"which holds {path}")
        if settings.value(LOCAL_ENV) == "1":
            return None, (f"Local grading as root: {why}. Student code therefore ran as root, in "
                          "separate, resource-limited processes, without the per-user isolation "
                          "used on Gradescope. For full isolation, grade from a folder that other "
                          "users can traverse.")
        raise SandboxError(f"internal: {why}; install the grader where other users can "
                           "traverse every folder on the way (setup.sh does)")
    _ACTIVE.add(lease.name)
    return lease, None


def kill_by_token(token: str) -> None:
    """SIGKILL, round after round, every process whose environment holds ``token``: the
    best a sandbox that shares the judge's uid can do (it misses a process that cleared
    its environment; a leased user is swept whole instead)."""
    for _ in range(200):
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if token.encode() in fh.read():
                        pids.append(int(entry))
            except OSError:
                continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def sweep_active() -> None:
    """Kill every process of every user a live sandbox leased (the watchdog's last act)."""
    for name in list(_ACTIVE):
        try:
            pw = pwd.getpwnam(name)
            sandbox_users.kill_all(pw.pw_uid, pw.pw_gid)
        except (KeyError, sandbox_users.SandboxUserError, OSError):
            pass


class _Tail:
    """Drains a pipe in a thread, keeping only the last ``limit`` characters."""

    def __init__(self, stream, limit):
        self.limit, self.text = limit, ""
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        while True:
            block = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not block:
                break
            self.text = (self.text + block.decode("utf-8", "replace"))[-self.limit:]


class _Lines:
    """Reads reply lines in a thread, with a size cap per line."""

    def __init__(self, stream):
        self.lines: list = []
        self.done = False
        self.cond = threading.Condition()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        try:
            while True:
                line = stream.readline(wire.MAX_MESSAGE + 1)
                if not line:
                    break
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
                if len(line) > wire.MAX_MESSAGE:
                    break
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def get(self, deadline):
        with self.cond:
            while not self.lines:
                if self.done:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.cond.wait(min(left, 1.0))
            return self.lines.pop(0)


class Sandbox:
    """A running worker: ``Sandbox(chunks, limits, deadline)`` starts it and runs the
    definitions; ``request(...)`` asks for one probe; ``close()`` kills it."""

    def __init__(self, chunks, limits: Limits, deadline: float, python: str | None = None):
        self.limits, self.deadline = limits, deadline
        python = python or settings.value("HW10_WORKER_PYTHON") or sys.executable
        self.lease, self.note = choose_identity(python, deadline)
        self.token = _random_token()  # for the cleanup of a sandbox without a leased user
        self.oom_before = resources.oom_kills()
        try:
            self.workdir = tempfile.mkdtemp(prefix="hw10-sandbox-")
            if self.lease:
                os.chown(self.workdir, self.lease.uid, self.lease.gid)
        except OSError as exc:
            self._release()
            raise SandboxError(f"internal: could not make the sandbox's folder ({exc})") from None
        env = {self.token.split("=", 1)[0]: self.token.split("=", 1)[1], **BASE_ENV,
               "HOME": self.workdir, "TMPDIR": self.workdir}
        try:
            self.proc, reply_r = self._fork(env, deadline)
        except Exception:  # noqa: BLE001 - no fork server, or it failed: start one anew
            reply_r, reply_w = os.pipe()
            try:
                self.proc = self._start(python, reply_w, env)
            except OSError as exc:
                os.close(reply_r)
                self._release()
                raise SandboxError(f"internal: could not start {python} ({exc})") from None
            finally:
                os.close(reply_w)
        self.output = _Tail(self.proc.stdout, limits.output_chars)
        self.replies = _Lines(os.fdopen(reply_r, "rb"))
        self._next_id = 0
        try:
            self._send({"chunks": [{"cell": c.cell, "source": c.source, "tentative": c.tentative}
                                   for c in chunks]})
            ready = self._receive()
            if "unreadable" in ready:
                raise SandboxError(ready["unreadable"])
        except BaseException:
            self.close()
            raise
        #: (cell, line, statement, error text) of each statement that raised
        self.failures = [(int(f[0]), int(f[1]), str(f[2]), str(f[3])) for f in ready.get("failures", [])
                         if isinstance(f, list) and len(f) == 4]

    def _fork(self, env, deadline):
        """(process, reply read end) forked by the grading's fork server, as the leased
        user; ForkServerError when there is no server or no leased user (``_start`` then
        starts one anew). Only a leased user: a forked child shows the server's
        environment in /proc, not this sandbox's token, so without a user of its own what
        it leaves behind could not be found by that token."""
        servers = list(_SERVER)
        if not servers or not self.lease:
            raise ForkServerError("no fork server, or no pool user")
        return servers[0].spawn(self.workdir, env, self.lease.uid, self.lease.gid, self._rlimits(), deadline)

    def _start(self, python, reply_w, env):
        return subprocess.Popen(
            [python, "-I", "-c", WORKER_SOURCE, KIT_DIR, str(reply_w), self._rlimits()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.workdir, env=env, pass_fds=(reply_w,), start_new_session=True,
            close_fds=True, **self._identity())

    def _rlimits(self) -> str:
        """The limits the worker applies to itself before it runs any student code
        (no preexec_fn: the judge is threaded). The process cap counts every process
        of the user, so it is only set for a leased sandbox user."""
        lim, mb = self.limits, 1024 * 1024
        limits = {"RLIMIT_CPU": [lim.cpu_s, lim.cpu_s + 5],
                  "RLIMIT_AS": [lim.memory_mb * mb] * 2,
                  "RLIMIT_NOFILE": [lim.open_files] * 2,
                  "RLIMIT_FSIZE": [lim.file_mb * mb] * 2,
                  "RLIMIT_CORE": [0, 0]}
        if self.lease:
            limits["RLIMIT_NPROC"] = [lim.processes] * 2
        return json.dumps(limits)

    def _identity(self) -> dict:
        if not self.lease:
            return {}
        return {"user": self.lease.uid, "group": self.lease.gid, "extra_groups": []}

    def _release(self):
        """Every process of the leased user killed and awaited, then the lease freed; or,
        without a lease, every process that still carries this sandbox's token."""
        if self.lease:
            _ACTIVE.discard(self.lease.name)
            sandbox_users.release(self.lease)
            self.lease = None
        else:
            kill_by_token(self.token)

    def _send(self, msg):
        """Write one message; a worker that stops reading (stopped, or busy forever)
        cannot block the judge past the deadline: the write happens in a thread."""
        payload = wire.dumps(msg)
        errors: list = []

        def write():
            try:
                self.proc.stdin.write(payload)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                errors.append(exc)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(max(0.0, self.deadline - time.monotonic()))
        if writer.is_alive():
            self._kill()
            raise self._timeout()
        if errors:
            raise self._died()

    def _timeout(self) -> SandboxError:
        return SandboxError(f"timed out: your code was still running after the question's "
                            f"{self.limits.wall_s:.0f} s limit (an infinite loop, or very slow code?)")

    def _kill(self):
        if isinstance(self.proc, Forked) and self.proc.poll() is not None:
            return  # reaped by the fork server: its pid may belong to someone else now
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _receive(self) -> dict:
        try:
            line = self.replies.get(self.deadline)
        except TimeoutError:
            raise self._timeout() from None
        if line is None:
            raise self._died()
        try:
            return wire.loads(line)
        except wire.WireError as exc:
            return {"unreadable": f"the grader could not read the reply from your code's process ({exc}); "
                                  "does your code write to file descriptors it did not open?"}

    def _died(self) -> SandboxError:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code == SETUP_FAILED and isinstance(self.proc, Forked):
            self.output.thread.join(timeout=2)
            return SandboxError("internal: the grader could not set up the process for your code "
                                f"(please tell the course staff): {self.output.text.strip()[-800:]}")
        why = {None: "stopped answering", -9: "was killed (out of memory or CPU time?)",
               -24: "ran out of CPU time", -11: "crashed (segmentation fault)"}.get(
            code, f"exited with code {code}")
        memory_kill = False
        if code == -9:
            after = resources.oom_kills()
            memory_kill = after is None or self.oom_before is None or after > self.oom_before
            if after is not None and self.oom_before is not None and after > self.oom_before:
                limit = resources.memory_limit_bytes()
                room = f" ({limit / 2**20:.0f} MB for the grader and your code together)" if limit else ""
                why = f"was killed by the kernel: the machine ran out of memory{room}"
        self.output.thread.join(timeout=2)
        tail = self.output.text.strip()
        tail = f"\nLast output:\n{tail[-1500:]}" if tail else ""
        return SandboxError(f"the process running your code {why}.{tail}", memory_kill)

    def request(self, probe: str, target: str, inputs: dict, torch_seed: int) -> dict:
        """One probe round trip: ``{"ok": outputs}`` or ``{"error": text}``."""
        self._next_id += 1
        nonce = os.urandom(12).hex()  # a line written blindly to the reply descriptor lacks it
        self._send({"id": self._next_id, "nonce": nonce, "probe": probe, "target": target,
                    "inputs": inputs, "torch_seed": torch_seed})
        reply = self._receive()
        if "unreadable" in reply:  # costs this check only
            return {"error": reply["unreadable"]}
        if reply.get("id") != self._next_id or reply.get("nonce") != nonce \
                or not ("ok" in reply or "error" in reply):
            raise SandboxError("the reply from your code's process did not follow the protocol "
                               "(a line that the grader's worker did not write reached its reply "
                               "channel: does your code write to file descriptors it did not open?)")
        return reply

    def close(self):
        """Kill the worker, its process group and everything else its user runs. The
        output pipe is not closed here: its reader thread may still be blocked on it,
        and closing a buffered reader under a reading thread blocks."""
        self._kill()
        self._release()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
