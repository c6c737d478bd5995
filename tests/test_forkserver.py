"""The fork server (autograder/hw10grader/zygote.py): each question's worker is a fork of an
interpreter that has torch imported, and is isolated exactly as a worker started anew."""
import os
import re
import sys
import time
from types import SimpleNamespace

import pytest
from grading_helpers import (FULL_MARKS, judge, needs_pool_users, score_of, solution_with,
                             write_folder)
from hw10grader import sandbox, sandbox_users
from hw10grader.forkserver import Forked

#: A sample_gaussian that reports who runs it and what its open descriptors point at.
WHO_AM_I = '''
import os
def sample_gaussian(m, v):
    kinds = sorted({os.readlink(f"/proc/self/fd/{fd}").split(":")[0]
                    for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")})
    oom = open("/proc/self/oom_score_adj").read().strip()
    raise RuntimeError(f"WHO uid={os.getuid()} groups={os.getgroups()} fds={kinds} sid={os.getsid(0) == os.getpid()} oom={oom}")
'''


def _who(doc) -> str:
    """The message (not the quoted source line) of the first Q2(a) check."""
    entry = next(t for t in doc["tests"] if t["name"].startswith("Q2(a)"))
    found = re.search(r"WHO (uid=\d+ .*)", entry["output"])
    assert found, entry["output"]
    return found.group(1)


@needs_pool_users
def test_a_forked_worker_runs_as_a_pool_user_without_groups_in_a_session_of_its_own(tmp_path):
    doc = judge(write_folder(tmp_path / "sub", solution_with(WHO_AM_I)), tmp_path / "r.json")
    who = _who(doc)
    uids = {__import__("pwd").getpwnam(n).pw_uid for n in sandbox_users.pool_names()
            if sandbox_users._exists(n)}
    assert int(who.split("uid=")[1].split()[0]) in uids, who
    assert "groups=[]" in who and "sid=True" in who, who


def test_a_forked_worker_holds_no_descriptor_but_its_pipes(tmp_path):
    """In particular not the fork server's socket: it cannot ask for workers of its own."""
    doc = judge(write_folder(tmp_path / "sub", solution_with(WHO_AM_I)), tmp_path / "r.json")
    who = _who(doc)
    kinds = who.split("fds=")[1].split(" sid=")[0]  # noqa: E501
    assert "socket" not in kinds and "pipe" in kinds, who


@needs_pool_users
def test_a_forked_worker_is_the_oom_killers_first_victim_not_the_judge(tmp_path):
    """Written while still root: after setuid without exec /proc/self is not its own."""
    doc = judge(write_folder(tmp_path / "sub", solution_with(WHO_AM_I)), tmp_path / "r.json")
    assert "oom=1000" in _who(doc)


def test_without_the_fork_server_the_solution_still_gets_full_marks(tmp_path):
    doc = judge(write_folder(tmp_path / "sub", solution_with()), tmp_path / "r.json", HW10_FORKSERVER=0)
    assert score_of(doc, "Q2(") == FULL_MARKS


def _chunks():
    return [SimpleNamespace(cell=1, source="x = 1\n", tentative=[])]


def _limits():
    return sandbox.Limits()


@pytest.fixture
def server():
    sandbox.start_forkserver()
    assert sandbox._SERVER, "the fork server did not start"
    yield sandbox._SERVER[0]
    sandbox.stop_forkserver()
    sandbox_users.wait_released()


@needs_pool_users
def test_a_worker_is_forked_when_the_server_runs(server):
    box = sandbox.Sandbox(_chunks(), _limits(), time.monotonic() + 60)
    try:
        assert isinstance(box.proc, Forked) and box.failures == []
    finally:
        box.close()


@needs_pool_users
def test_a_dead_fork_server_means_workers_start_anew(server):
    server.proc.kill()
    server.proc.wait()
    box = sandbox.Sandbox(_chunks(), _limits(), time.monotonic() + 60)
    try:
        assert not isinstance(box.proc, Forked) and box.failures == []
    finally:
        box.close()


@needs_pool_users
def test_a_child_that_cannot_be_set_up_exits_with_the_graders_own_code(server):
    from hw10grader.zygote import SETUP_FAILED

    child, reply_r = server.spawn("/nonexistent-folder", {}, 65534, 65534, "{}", time.monotonic() + 30)
    try:
        assert child.wait(timeout=30) == SETUP_FAILED
    finally:
        os.close(reply_r)


@needs_pool_users
def test_stopping_the_server_kills_what_it_forked(server):
    box = sandbox.Sandbox(_chunks(), _limits(), time.monotonic() + 60)
    pid = box.proc.pid
    sandbox.stop_forkserver()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
    box.close()


@pytest.fixture
def one_user(monkeypatch):
    """A pool of one user of its own (created at the first lease), deleted afterwards."""
    import pwd
    import subprocess
    import uuid

    name = f"hw10f{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("HW10_SANDBOX_USERS", name)
    yield name
    if sandbox_users._exists(name):
        sandbox_users.kill_all(pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
        subprocess.run(["userdel", name], check=True, capture_output=True)
    for suffix in (".lock", ".clean"):
        (sandbox_users._lock_dir() / f"{name}{suffix}").unlink(missing_ok=True)


@needs_pool_users
def test_a_user_is_swept_whole_when_its_last_release_left_no_stamp(one_user, monkeypatch):
    lease = sandbox_users.acquire(time.monotonic() + 10)
    sandbox_users.release(lease)
    sandbox_users.wait_released()
    (sandbox_users._lock_dir() / f"{one_user}.clean").unlink()  # as if the judge died mid-release
    swept = []
    monkeypatch.setattr(sandbox_users, "sweep", lambda uid, gid: swept.append(uid))
    again = sandbox_users.acquire(time.monotonic() + 10)
    try:
        assert swept == [again.uid], "no stamp: the whole sweep (files included) runs at the next lease"
    finally:
        sandbox_users.release(again)
        sandbox_users.wait_released()


@needs_pool_users
def test_a_user_released_whole_is_only_killed_at_its_next_lease(one_user, monkeypatch):
    lease = sandbox_users.acquire(time.monotonic() + 10)
    sandbox_users.release(lease)
    sandbox_users.wait_released()
    assert (sandbox_users._lock_dir() / f"{lease.name}.clean").exists()
    swept = []
    monkeypatch.setattr(sandbox_users, "sweep", lambda uid, gid: swept.append(uid))
    again = sandbox_users.acquire(time.monotonic() + 10)
    try:
        assert swept == []
        assert not (sandbox_users._lock_dir() / f"{lease.name}.clean").exists(), "the stamp is used up"
    finally:
        sandbox_users.release(again)
        sandbox_users.wait_released()


@needs_pool_users
def test_files_in_a_folder_the_user_closed_to_itself_are_removed(one_user, tmp_path):
    import pwd
    import subprocess

    lease = sandbox_users.acquire(time.monotonic() + 10)
    top = f"/tmp/hw10-closed-{os.getpid()}"
    try:
        script = (f"import os; os.makedirs('{top}/d'); open('{top}/d/answers.py', 'w').write('x');"
                  f"os.chmod('{top}/d', 0o500); os.chmod('{top}', 0)")
        subprocess.run([sys.executable, "-c", script], user=lease.uid, group=lease.gid, extra_groups=[],
                       check=True, cwd="/")
        assert sandbox_users.remove_files_of(lease.uid, lease.gid) is True
        assert not os.path.exists(top)
    finally:
        sandbox_users.release(lease)
        sandbox_users.wait_released()
        subprocess.run(["rm", "-rf", top])
