"""Nothing that student code starts outlives its question, whatever it does to hide,
and the next grading is unaffected. Only a root judge runs code as the pool users."""
import os
import pwd
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from grading_helpers import FULL_MARKS, judge, score_of, solution_with, write_folder, needs_pool_users
from hw10grader import sandbox_users

pytestmark = needs_pool_users

SPAWN_EMPTY_ENV_SESSION = '''
import subprocess, sys
def sample_gaussian(m, v):
    subprocess.Popen([sys.executable, "-c", {loop!r}], env={{}}, start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return m + v.sqrt() * __import__("torch").randn_like(m)
'''

DOUBLE_FORK = '''
import os, sys
def sample_gaussian(m, v):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", {loop!r}])
        os._exit(0)
    return m + v.sqrt() * __import__("torch").randn_like(m)
'''

#: The daemon: ignores SIGTERM, SIGHUP and SIGINT, and keeps rewriting a marker file.
LOOP = ("import os, signal, time\n"
        "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, signal.SIG_IGN)\n"
        "while True:\n"
        "    open({path!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(0.02)\n")


#: A daemon whose main thread exits (its status shows Z) while another thread runs on.
THREAD_ONLY = ("import ctypes, threading, time\n"
               "def loop():\n"
               "    while True:\n"
               "        open({path!r}, 'w').write('alive')\n"
               "        time.sleep(0.02)\n"
               "threading.Thread(target=loop).start()\n"
               "time.sleep(0.1)\n"
               "ctypes.CDLL(None).syscall(60, 0)\n")  # SYS_exit: this thread only


def pool_processes():
    uids = []
    for name in sandbox_users.pool_names():
        try:
            uids.append(__import__("pwd").getpwnam(name).pw_uid)
        except KeyError:
            pass
    return {uid: sandbox_users.live_processes(uid) for uid in uids if sandbox_users.live_processes(uid)}


def grade_with_daemon(tmp_path, template, loop=LOOP):
    marker = Path("/tmp") / f"hw10-daemon-{uuid.uuid4().hex}"
    cell = template.format(loop=loop.format(path=str(marker)))
    doc = judge(write_folder(tmp_path / "sub", solution_with(cell)), tmp_path / "results.json")
    time.sleep(0.5)  # a surviving daemon would have rewritten its marker by now
    return doc, marker


@pytest.mark.parametrize("template", [SPAWN_EMPTY_ENV_SESSION, DOUBLE_FORK],
                         ids=["empty-environment-own-session", "double-fork"])
def test_a_daemon_that_ignores_sigterm_does_not_survive_grading(tmp_path, template):
    doc, marker = grade_with_daemon(tmp_path, template)
    assert doc["tests"], doc["output"]
    assert not marker.exists(), f"daemon {marker.read_text()} survived"
    assert pool_processes() == {}


def test_a_daemon_whose_main_thread_exited_does_not_survive_grading(tmp_path):
    doc, marker = grade_with_daemon(tmp_path, SPAWN_EMPTY_ENV_SESSION, THREAD_ONLY)
    assert doc["tests"], doc["output"]
    assert not marker.exists(), "a thread of the daemon survived"
    assert pool_processes() == {}


def test_the_next_grading_after_a_daemon_is_unaffected(tmp_path):
    grade_with_daemon(tmp_path / "first", SPAWN_EMPTY_ENV_SESSION)
    doc = judge(write_folder(tmp_path / "second", solution_with()), tmp_path / "second.json")
    assert score_of(doc) == FULL_MARKS, [t["output"] for t in doc["tests"] if t["status"] == "failed"]


def test_files_a_student_leaves_in_tmp_are_removed(tmp_path):
    name = f"/tmp/hw10-left-{uuid.uuid4().hex}"
    cell = ("import torch\ndef sample_gaussian(m, v):\n"
            f"    open({name!r}, 'w').write('source of the next student?')\n"
            "    return m + v.sqrt() * torch.randn_like(m)\n")
    judge(write_folder(tmp_path / "sub", solution_with(cell)), tmp_path / "results.json")
    assert not os.path.exists(name)


def test_two_sandboxes_never_share_a_user_at_the_same_time():
    deadline = time.monotonic() + 10
    first = sandbox_users.acquire(deadline)
    try:
        second = sandbox_users.acquire(deadline)
        try:
            assert first.uid != second.uid
        finally:
            sandbox_users.release(second)
    finally:
        sandbox_users.release(first)


@pytest.fixture
def fresh_pool(monkeypatch):
    """A pool of four users that do not exist yet; deleted afterwards, with their locks."""
    names = [f"hw10t{uuid.uuid4().hex[:6]}{i}" for i in range(4)]
    monkeypatch.setenv("HW10_SANDBOX_USERS", ",".join(names))
    yield names
    for name in names:
        if sandbox_users._exists(name):
            sandbox_users.kill_all(pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
            subprocess.run(["userdel", name], check=True, capture_output=True)
        (sandbox_users._lock_dir() / f"{name}.lock").unlink(missing_ok=True)


def test_sandboxes_started_at_once_on_a_fresh_machine_get_users_with_distinct_uids(fresh_pool):
    leases, errors = [], []

    def lease():
        try:
            leases.append(sandbox_users.acquire(time.monotonic() + 30))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=lease) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert sorted(lease.name for lease in leases) == sorted(fresh_pool)
        assert len({lease.uid for lease in leases}) == 4
    finally:
        for lease in leases:
            sandbox_users.release(lease)


def test_pool_users_are_created_one_at_a_time(fresh_pool, monkeypatch):
    create, running, peak = sandbox_users.create_user, [], []

    def slow_create(name):
        running.append(name)
        peak.append(len(running))
        time.sleep(0.05)
        create(name)
        running.remove(name)

    monkeypatch.setattr(sandbox_users, "create_user", slow_create)
    threads = [threading.Thread(target=sandbox_users.ensure_pool, args=(sandbox_users._lock_dir(),))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak) == 1 and all(sandbox_users._exists(name) for name in fresh_pool)


def test_user_creation_waits_while_another_judge_holds_the_creation_lock(fresh_pool):
    lock = sandbox_users._lock_dir() / "create.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        creator = threading.Thread(target=sandbox_users.ensure_pool, args=(sandbox_users._lock_dir(),))
        creator.start()
        time.sleep(0.5)
        assert not any(sandbox_users._exists(name) for name in fresh_pool)
    finally:
        holder.stdin.close()
        holder.wait()
    creator.join()
    assert all(sandbox_users._exists(name) for name in fresh_pool)


def test_a_pool_user_sharing_its_uid_with_another_account_is_never_leased(fresh_pool, monkeypatch):
    sandbox_users.ensure_pool(sandbox_users._lock_dir())
    other = fresh_pool[1]  # outside the pool below: any account counts, not only pool users
    subprocess.run(["usermod", "--non-unique", "--uid", str(pwd.getpwnam(other).pw_uid), fresh_pool[0]],
                   check=True, capture_output=True)
    monkeypatch.setenv("HW10_SANDBOX_USERS", fresh_pool[0])
    with pytest.raises(sandbox_users.SandboxUserError, match=f"shares uid .* with '{other}'"):
        sandbox_users.acquire(time.monotonic() + 5)


def test_pool_users_are_unprivileged_and_own_no_home():
    lease = sandbox_users.acquire(time.monotonic() + 10)
    try:
        pw = __import__("pwd").getpwnam(lease.name)
        assert pw.pw_uid != 0 and pw.pw_gid != 0 and not os.path.isdir(pw.pw_dir)
    finally:
        sandbox_users.release(lease)
