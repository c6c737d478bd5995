"""The judge's side of the fork server (``zygote.py``): one per grading, started when the
grading starts, so that each question's worker is a fork of an interpreter that has torch
imported (a few milliseconds) instead of a new one (about 2.5 s).

``ForkServer.spawn`` returns a ``Forked``: the few parts of ``subprocess.Popen`` the
sandbox uses (``pid``, ``stdin``, ``stdout``, ``wait``, ``returncode``). Isolation is the
sandbox's as before: the child drops to the leased user and applies the same limits
before it reads the student's code. When the fork server cannot start or dies, the
sandbox starts workers the old way (``Sandbox._start``); set ``HW10_FORKSERVER=0`` to
always do so.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

ZYGOTE_SOURCE = Path(__file__).with_name("zygote.py").read_text()
WORKER_PATH = str(Path(__file__).with_name("worker.py"))
START_S = 30.0  # how long the first fork may wait for the server to import torch


class ForkServerError(Exception):
    """The fork server is not available; the caller starts a worker the old way."""


class Forked:
    """A worker forked by the server (its parent), seen from the judge."""

    def __init__(self, server: "ForkServer", pid: int, stdin, stdout):
        self.server, self.pid, self.stdin, self.stdout = server, pid, stdin, stdout
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, 0)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired("worker", timeout)
        return self.returncode


class ForkServer:
    """Starts ``zygote.py`` with ``python`` (as the judge's user) in ``env``."""

    def __init__(self, python: str, kit_dir: str, env: dict, token: str):
        self.token = token  # in the server's environment, so in every child that did not exec
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-I", "-c", ZYGOTE_SOURCE, kit_dir, str(theirs.fileno()), WORKER_PATH],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=env, pass_fds=(theirs.fileno(),), start_new_session=True, close_fds=True)
        finally:
            theirs.close()
        self.sock = mine
        self.started = time.monotonic()
        self.lock = threading.Lock()  # one request on the socket at a time
        self.cond = threading.Condition()
        self.ready = False
        self.dead = False
        self.replies: dict = {}   # request id -> reply
        self.exits: dict = {}     # pid -> return code
        self._ids = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                msg = json.loads(data)
                with self.cond:
                    if msg.get("ready"):
                        self.ready = True
                    elif "exit" in msg:
                        self.exits[int(msg["exit"])] = int(msg["code"])
                    else:
                        if "pid" in msg:  # a pid reused by the system: forget its old exit
                            self.exits.pop(int(msg["pid"]), None)
                        self.replies[msg.get("id")] = msg
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.dead = True
                self.cond.notify_all()

    def _wait_for(self, predicate, deadline):
        with self.cond:
            while not predicate():
                if self.dead:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 1.0))
            return True

    def spawn(self, cwd: str, env: dict, uid, gid, limits: str, deadline: float) -> Forked:
        """Fork a worker; raises ForkServerError when the server is not there in time."""
        if not self._wait_for(lambda: self.ready, min(deadline, self.started + START_S)):
            with self.cond:
                self.dead = True  # once late, always late: later questions start anew at once
            raise ForkServerError("the fork server did not start")
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        reply_r, reply_w = os.pipe()
        theirs = (stdin_r, out_w, reply_w)
        try:
            with self.lock:
                self._ids += 1
                ident = self._ids
                request = {"id": ident, "cwd": cwd, "env": env, "uid": uid, "gid": gid, "limits": limits}
                try:
                    socket.send_fds(self.sock, [json.dumps(request).encode()], list(theirs))
                except OSError as exc:
                    raise ForkServerError(f"the fork server is gone ({exc})") from None
        finally:
            for fd in theirs:
                os.close(fd)
        got = self._wait_for(lambda: ident in self.replies, deadline)
        reply = self.replies.pop(ident, None) if got else None
        if not reply or "pid" not in reply:
            for fd in (stdin_w, out_r, reply_r):
                os.close(fd)
            raise ForkServerError((reply or {}).get("error", "the fork server did not answer"))
        return Forked(self, int(reply["pid"]), os.fdopen(stdin_w, "wb"), os.fdopen(out_r, "rb")), reply_r

    def exit_code(self, pid: int, timeout):
        """The child's return code once it ended, else None after ``timeout`` seconds."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        self._wait_for(lambda: pid in self.exits, deadline)
        return self.exits.get(pid)

    def close(self) -> None:
        """Stop the server; every child that has not exec'd carries its token and is
        killed by the caller's sweep (``sandbox.kill_by_token``)."""
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
