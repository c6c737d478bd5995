"""The unprivileged users that run student code when the judge is root.

A pool of dedicated users (``hw10sb1`` ... ``hw10sb8``; ``setup.sh`` creates them, and
the judge creates any that are missing, one at a time) that nothing else uses. A sandbox *leases* one
user for its whole life, under an exclusive ``flock`` on a root-only lock file, so code of
two sandboxes (two questions, or two students graded at the same time on one machine)
never runs under the same uid at once. Before a lease is handed out and when it ends,
every process of that user is killed and awaited, whatever its environment, session or
parent, and the files it left in the shared temporary folders are removed.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import settings

PREFIX = "hw10sb"
POOL_SIZE = settings.value("HW10_SANDBOX_POOL")
#: Folders anyone may write to: what the sandbox user leaves there is removed.
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")
SWEEP_TIMEOUT_S = 10.0


class SandboxUserError(RuntimeError):
    """No dedicated user could be leased (the message is for the course staff)."""


def pool_names() -> list[str]:
    """``HW10_SANDBOX_USERS`` (comma-separated), else hw10sb1 ... hw10sb<POOL_SIZE>."""
    names = [n.strip() for n in settings.value("HW10_SANDBOX_USERS").split(",") if n.strip()]
    return names or [f"{PREFIX}{i}" for i in range(1, POOL_SIZE + 1)]


@dataclass
class Lease:
    name: str
    uid: int
    gid: int
    lock_fd: int


def _lock_dir() -> Path:
    """A folder only root can touch, for the lock files."""
    for base in ("/run", tempfile.gettempdir()):
        path = Path(base) / "hw10grader-sandbox-locks"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            continue
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o077:
            return path
    raise SandboxUserError("no root-only folder for the sandbox users' lock files "
                           "(tried /run and the temporary folder)")


def create_user(name: str) -> None:
    """A system user with no home, no login shell and a group of its own."""
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if os.path.exists(p)),
                   "/bin/false")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    if shutil.which("useradd", path=path):
        cmd = [shutil.which("useradd", path=path), "--system", "--no-create-home", "--user-group",
               "--shell", nologin, name]
    elif shutil.which("adduser", path=path):
        cmd = [shutil.which("adduser", path=path), "--system", "--no-create-home", "--group",
               "--shell", nologin, name]
    else:
        raise SandboxUserError(f"cannot create the sandbox user {name!r}: neither useradd nor adduser "
                               "exists; run setup.sh, or create it by hand")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise SandboxUserError(f"could not create the sandbox user {name!r}: "
                               f"{(proc.stderr or proc.stdout).strip()}") from None


_CREATING = threading.Lock()


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_pool(locks: Path, deadline: float | None = None) -> None:
    """Create the missing pool users, one at a time: under a lock shared by this process's
    threads and a file lock shared by every judge on the machine (waited for until
    ``deadline``). Two ``useradd`` calls at once can give two users one uid (seen in a
    Debian container, where the first grading then killed its own sandboxes), so they
    never run concurrently."""
    if all(_exists(name) for name in pool_names()):
        return
    with _CREATING:
        fd = os.open(locks / "create.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise SandboxUserError("another judge has been creating the sandbox users "
                                               "for too long") from None
                    time.sleep(0.05)
            for name in pool_names():
                if not _exists(name):
                    create_user(name)
        finally:
            os.close(fd)


def _checked(name: str):
    """``name``'s passwd entry, which must be unprivileged and share its uid with no other
    account: sweeping it would kill the other account's processes and delete its files."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise SandboxUserError(f"the sandbox user {name!r} does not exist") from None
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise SandboxUserError(f"the sandbox user {name!r} has uid or gid 0")
    twins = [other.pw_name for other in pwd.getpwall() if other.pw_uid == pw.pw_uid and other.pw_name != name]
    if twins:
        raise SandboxUserError(f"the sandbox user {name!r} shares uid {pw.pw_uid} with {twins[0]!r}; "
                               f"give it a uid of its own (stop its processes, then userdel {name}: "
                               "the judge recreates it)")
    return pw


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire(deadline: float) -> Lease:
    """Lease a free pool user (creating the missing ones first); waits for a free one
    until ``deadline`` (``time.monotonic()``)."""
    if os.geteuid() != 0:
        raise SandboxUserError("only a root judge runs student code as another user")
    locks = _lock_dir()
    ensure_pool(locks, deadline)
    while True:
        for name in pool_names():
            fd = _try_lock(locks / f"{name}.lock")
            if fd is None:
                continue
            try:
                pw = _checked(name)
            except BaseException:
                os.close(fd)
                raise
            lease = Lease(name, pw.pw_uid, pw.pw_gid, fd)
            try:
                if _take_clean_stamp(locks, name):  # swept whole when it was last released
                    kill_all(lease.uid, lease.gid)
                else:  # whatever an earlier, crashed judge left behind
                    sweep(lease.uid, lease.gid)
            except Exception:  # noqa: BLE001 - a user that cannot be swept clean is not handed out
                os.close(fd)
                continue
            return lease
        if time.monotonic() > deadline:
            raise SandboxUserError("every sandbox user is busy (more gradings at once than "
                                   f"HW10_SANDBOX_POOL={len(pool_names())} allows)")
        time.sleep(0.05)


def _take_clean_stamp(locks: Path, name: str) -> bool:
    """True when the user's last release swept it whole (the stamp is then used up)."""
    try:
        os.unlink(locks / f"{name}.clean")
        return True
    except OSError:
        return False


_PENDING: list = []  # releases still removing files in the background


def release(lease: Lease) -> None:
    """Kill everything the user runs now; then, in the background and still holding the
    lease, remove its temporary files (on a machine with a large /tmp that scan takes a
    second), leave a stamp saying it was swept whole, and free the lease. A judge that
    dies before the stamp leaves the user to be swept whole when it is next leased."""
    try:
        kill_all(lease.uid, lease.gid)
    except BaseException:
        os.close(lease.lock_fd)
        raise

    def finish():
        try:
            if remove_files_of(lease.uid, lease.gid):  # else no stamp: swept again at the next lease
                stamp = _lock_dir() / f"{lease.name}.clean"
                os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except Exception:  # noqa: BLE001 - no stamp: swept whole at the next lease
            pass
        finally:
            os.close(lease.lock_fd)

    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    _PENDING.append(thread)


def wait_released(timeout_s: float = 60.0) -> None:
    """Wait for the background part of every release (the judge calls it at the end)."""
    end = time.monotonic() + timeout_s
    while _PENDING:
        _PENDING.pop().join(max(0.0, end - time.monotonic()))


def _status(path: str) -> dict:
    with open(path, "rb") as fh:
        return dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)


def live_processes(uid: int) -> list[int]:
    """Processes whose real, effective, saved or filesystem uid is ``uid`` and that have
    any thread still running. (A process whose main thread has exited shows ``Z`` in its
    own status while its other threads run on: each thread is looked at.)"""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _status(f"/proc/{entry}/status")
            if uid not in {int(u) for u in fields.get(b"Uid", b"").split()}:
                continue
            states = [_status(f"/proc/{entry}/task/{t}/status").get(b"State", b"").strip()
                      for t in os.listdir(f"/proc/{entry}/task")]
        except OSError:
            continue
        if any(not state.startswith(b"Z") for state in states):
            found.append(int(entry))
    return found


def kill_all(uid: int, gid: int, timeout_s: float = SWEEP_TIMEOUT_S) -> None:
    """SIGKILL every process of ``uid`` and wait until none is left.

    Each round, root sends SIGKILL to every process found in /proc (student code cannot
    block that), and ``kill(-1, SIGKILL)`` is sent *as that user*, which reaches every
    process it owns in one system call that new forks cannot outrun. Rounds repeat until
    a scan finds none. Nothing relies on what the processes hold (environment, session,
    parent).
    """
    if uid == 0:
        raise ValueError("refusing to kill every process of root")
    end = time.monotonic() + timeout_s
    found = live_processes(uid)
    while True:  # at least one round, even when the scan finds nothing
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        subprocess.run(["/bin/sh", "-c", "kill -9 -1"], user=uid, group=gid, extra_groups=[],
                       env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        found = live_processes(uid)
        if not found:
            return
        if time.monotonic() > end:
            raise SandboxUserError(f"processes of uid {uid} survive SIGKILL: {found[:10]}")
        time.sleep(0.01)


def remove_files_of(uid: int, gid: int, folders=SHARED_TMP) -> bool:
    """Delete what ``uid`` left in the shared temporary folders; True when nothing of it
    is left there. The deletion runs *as that user*, after its processes are gone: it can
    only reach and remove what the user itself could, so no path race can turn it against
    anyone else's files, and no depth of folders can make it recurse. What is left is then
    looked for by root, which only reads; when something is, the user's own folders are
    opened (``chmod u+rwx``, before ``find`` descends into each: a folder it closed to
    itself then hides nothing) and the deletion runs again."""
    present = [f for f in folders if os.path.isdir(f)]
    if not present:
        return True
    as_user = dict(user=uid, group=gid, extra_groups=[], env={"PATH": "/usr/bin:/bin"},
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd="/", timeout=60)
    mine = [*present, "-xdev", "-mindepth", "1", "-user", str(uid)]

    def left() -> bool:
        return bool(subprocess.run(["find", *mine, "-print", "-quit"], stdin=subprocess.DEVNULL,
                                   capture_output=True, cwd="/", timeout=60).stdout.strip())

    subprocess.run(["find", *mine, "-delete"], **as_user)
    if not left():  # the common case: one pass as the user, one look as root
        return True
    subprocess.run(["find", *mine, "-type", "d", "-exec", "chmod", "u+rwx", "{}", ";"], **as_user)
    subprocess.run(["find", *mine, "-delete"], **as_user)
    return not left()


def sweep(uid: int, gid: int) -> None:
    kill_all(uid, gid)
    remove_files_of(uid, gid)


def blocked_directory(path: str | os.PathLike, uid: int, gid: int) -> Path | None:
    """The first directory on the way to ``path`` that ``uid`` cannot traverse (None when
    it can reach it). Follows symbolic links the way the kernel does."""
    target = Path(os.path.abspath(path))
    seen = set()
    todo = [target]
    while todo:
        current = todo.pop()
        walked = Path("/")
        for part in current.parts[1:]:
            if not _may_traverse(walked, uid, gid):
                return walked
            walked = walked / part
            if walked.is_symlink() and walked not in seen:
                seen.add(walked)
                todo.append(Path(os.path.realpath(walked)))
    return None


def _may_traverse(folder: Path, uid: int, gid: int) -> bool:
    try:
        st = folder.stat()
    except OSError:
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)
