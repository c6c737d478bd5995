"""The grader reads the memory and CPU limits that apply to it (its own cgroup, v1 or v2,
up to the root, and the machine's memory), grades one question at a time where two do
not fit, and never charges a student for a sandbox killed for memory while another
question ran beside it."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from grading_helpers import vae_entry, REPO, judge, score_of, solution_with, write_folder
from hw10grader import judge as judge_mod
from hw10grader import resources
from hw10grader.sandbox import SandboxError

MB = 2**20


def fake_tree(tmp_path, *, cgroup, mountinfo, files, meminfo_kb=16 * 2**20, cpus="0-1"):
    root = tmp_path / "root"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/self/status").write_text(f"Name:\tpython\nCpus_allowed_list:\t{cpus}\n")
    (root / "proc/meminfo").write_text(f"MemTotal:       {meminfo_kb} kB\nMemAvailable:   {meminfo_kb // 2} kB\n")
    for path, text in files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = ("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
             "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n")


def test_a_v2_limit_on_the_processs_own_cgroup_below_the_root_is_found(tmp_path):
    root = fake_tree(tmp_path, cgroup="0::/gradescope/job7\n", mountinfo=V2_MOUNT, files={
        "/sys/fs/cgroup/memory.max": "max\n",
        "/sys/fs/cgroup/gradescope/memory.max": "max\n",
        "/sys/fs/cgroup/gradescope/job7/memory.max": "805306368\n",
        "/sys/fs/cgroup/gradescope/job7/memory.current": "104857600\n",
        "/sys/fs/cgroup/gradescope/job7/cpu.max": "50000 100000\n"})
    assert resources.memory_limit_bytes(root) == 768 * MB
    assert resources.memory_available_bytes(root) == 668 * MB
    assert resources.cpus(root) == 0.5
    assert judge_mod.default_parallel(root) == 1


def test_the_smallest_limit_on_the_way_up_wins_and_memory_high_counts(tmp_path):
    root = fake_tree(tmp_path, cgroup="0::/a/b\n", mountinfo=V2_MOUNT, files={
        "/sys/fs/cgroup/a/memory.max": "1073741824\n",
        "/sys/fs/cgroup/a/b/memory.max": "4294967296\n",
        "/sys/fs/cgroup/a/b/memory.high": "2147483648\n"})
    assert resources.memory_limit_bytes(root) == 1024 * MB


def test_a_v1_memory_cgroup_and_cfs_quota_are_found(tmp_path):
    root = fake_tree(tmp_path, cgroup="4:memory:/process_api/x\n2:cpu,cpuacct:/job\n0::/\n",
                     mountinfo=V1_MOUNTS, files={
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        "/sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": "805306368\n",
        "/sys/fs/cgroup/memory/process_api/x/memory.oom_control": "oom_kill_disable 0\noom_kill 3\n",
        "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us": "50000\n",
        "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"})
    assert resources.memory_limit_bytes(root) == 768 * MB
    assert resources.cpus(root) == 0.5
    assert resources.oom_kills(root) == 3


def test_a_container_mounted_at_its_own_cgroup_reads_its_limit_at_the_mount_point(tmp_path):
    mount = "30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    root = fake_tree(tmp_path, cgroup="0::/docker/abc\n", mountinfo=mount, files={
        "/sys/fs/cgroup/memory.max": "1610612736\n"})
    assert resources.memory_limit_bytes(root) == 1536 * MB


def test_a_small_machine_without_cgroup_limits_is_limited_by_its_memory(tmp_path):
    root = fake_tree(tmp_path, cgroup="0::/\n", mountinfo=V2_MOUNT, files={
        "/sys/fs/cgroup/memory.max": "max\n"}, meminfo_kb=1024 * 1024)
    assert resources.memory_limit_bytes(root) == 1024 * MB
    assert judge_mod.default_parallel(root) == 1


def test_two_questions_at_once_only_with_room_for_two_sandboxes_and_two_cpus(tmp_path):
    root = fake_tree(tmp_path, cgroup="0::/\n", mountinfo=V2_MOUNT, files={}, meminfo_kb=16 * 2**20)
    assert judge_mod.default_parallel(root) == 2
    one_cpu = fake_tree(tmp_path / "one", cgroup="0::/\n", mountinfo=V2_MOUNT, files={}, cpus="0")
    assert judge_mod.default_parallel(one_cpu) == 1
    assert resources.parallel_for(768 * MB, 700 * MB, 2.0) == 1
    assert resources.parallel_for(4096 * MB, 4000 * MB, 2.0) == 2


def test_hw10_parallel_overrides_what_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("HW10_PARALLEL", "3")
    assert judge_mod.default_parallel() == 3


# ---------------------------------------------------------------- retrying alone
class _Q:
    label, target, notebook = "Q9(z)", "f", "hw10_x.ipynb"

    def __init__(self, n):
        from hw10kit.checks.core import Check

        self.checks = [Check("Q9(z)", "f", f"c{i}", 1.0, lambda rng: {}, _probe, lambda i, o: (True, "ok"))
                       for i in range(n)]

        class Refs:
            @staticmethod
            def case(check, seed):
                return {}, {}
        self.references = Refs()


def _probe(ns, inputs):
    return {}


class _Answer:
    chunks = []


def _entries(n):
    from hw10grader import results

    return [results.Entry(f"9.{i}", f"c{i}", 1.0, results.VISIBLE) for i in range(n)]


def _fake_sandbox(monkeypatch, gate, kill_when_crowded=True, kill_alone=False):
    """A Sandbox whose second request is killed for memory when another question holds
    the gate (or always, with kill_alone)."""
    starts = []

    class FakeBox:
        note, failures = None, []

        def __init__(self, chunks, limits, deadline):
            self.n = 0
            starts.append(len(gate.slots))

        def request(self, probe, target, inputs, seed):
            self.n += 1
            crowded = len(gate.slots) > 1
            if self.n == 2 and ((kill_when_crowded and crowded) or kill_alone):
                raise SandboxError("the process running your code was killed by the kernel", True)
            return {"ok": {}}

        def close(self):
            pass

    monkeypatch.setattr(judge_mod, "Sandbox", FakeBox)
    return starts


def test_a_memory_kill_beside_another_question_is_retried_alone_and_costs_nothing(monkeypatch):
    gate = resources.Gate()
    _fake_sandbox(monkeypatch, gate)
    release = threading.Event()

    def other_question():
        with gate.shared():
            release.wait(5)

    other = threading.Thread(target=other_question)
    other.start()
    while not gate.slots:
        time.sleep(0.01)
    threading.Timer(0.3, release.set).start()  # the other question ends; the retry can run alone
    entries, notes = _entries(3), []
    judge_mod._grade_question_checks(_Q(3), _Answer(), entries, 1, time.monotonic() + 60, notes, gate)
    other.join()
    assert [e.score for e in entries] == [1.0, 1.0, 1.0]
    assert any("graded again alone" in n for n in notes)


def test_a_memory_kill_while_alone_is_charged_and_says_so(monkeypatch):
    gate = resources.Gate()
    _fake_sandbox(monkeypatch, gate, kill_alone=True)
    entries, notes = _entries(3), []
    judge_mod._grade_question_checks(_Q(3), _Answer(), entries, 1, time.monotonic() + 60, notes, gate)
    assert [e.score for e in entries] == [1.0, 0.0, 0.0]
    assert "ran alone" in entries[1].output


def test_a_question_waiting_to_run_alone_keeps_new_ones_from_starting():
    gate = resources.Gate()
    order = []
    with gate.shared():
        def alone():
            with gate.alone(time.monotonic() + 10) as ok:
                order.append(("alone", ok))
                time.sleep(0.2)

        t = threading.Thread(target=alone)
        t.start()
        time.sleep(0.1)

        def late():
            with gate.shared():
                order.append(("late", True))

        t2 = threading.Thread(target=late)
        t2.start()
        time.sleep(0.1)
        assert order == []
    t.join()
    t2.join()
    assert order == [("alone", True), ("late", True)]


# ------------------------------------------- a real cgroup: 768 MB and half a CPU
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def _own_v1(controller):
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return None


def _make_cgroup(name):
    """(command prefix moving a shell into a cgroup of 768 MB and half a CPU, cleanup),
    or None where this machine cannot make one (not root, no writable cgroup fs)."""
    if os.geteuid() != 0:
        return None
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    try:
        if v2.exists():
            d = Path("/sys/fs/cgroup") / name
            d.mkdir(exist_ok=True)
            (d / "memory.max").write_text("805306368")
            (d / "cpu.max").write_text("50000 100000")
            dirs = [d]
        else:
            mem = CGROUP_V1_MEMORY / (_own_v1("memory") or "/").lstrip("/") / name
            cpu = CGROUP_V1_CPU / name
            mem.mkdir(exist_ok=True)
            cpu.mkdir(exist_ok=True)
            (mem / "memory.limit_in_bytes").write_text("805306368")
            (cpu / "cpu.cfs_quota_us").write_text("50000")
            (cpu / "cpu.cfs_period_us").write_text("100000")
            dirs = [mem, cpu]
    except OSError:
        return None
    enter = " ".join(f"echo $$ > {d}/cgroup.procs;" for d in dirs)
    return enter, dirs


def _graded_in_cgroup(tmp_path, sub, extra_env=None):
    """Grade the folder ``sub`` under a fresh cgroup of 768 MB and half a CPU:
    (results, seconds)."""
    made = _make_cgroup(f"hw10test-{os.getpid()}")
    if made is None:
        pytest.skip("cannot create a cgroup here (needs root and a writable cgroup file system)")
    enter, dirs = made
    results = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k != "HW10_PARALLEL"}
    env.update({"HW10_LOCAL": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'autograder'}",
                **(extra_env or {})})
    cmd = (f"{enter} exec {sys.executable} -m hw10grader --submission {sub} --results {results} --seed 1")
    started = time.monotonic()
    try:
        subprocess.run(["sh", "-c", cmd], cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    finally:
        for d in dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    import json

    return json.loads(results.read_text()), time.monotonic() - started


@pytest.mark.slow
def test_the_solutions_get_full_marks_in_gradescopes_default_container(tmp_path):
    """768 MB and half a CPU: the default parallelism is then 1, and nothing is charged."""
    sub = tmp_path / "solutions"
    sub.mkdir()
    for nb in ("hw10_vae.ipynb", "hw10_gan.ipynb"):
        (sub / nb).write_bytes((REPO / "source" / "hw10" / nb).read_bytes())
    doc, seconds = _graded_in_cgroup(tmp_path, sub)
    assert score_of(doc, "Q2") + score_of(doc, "Q3") == 17.0, \
        [t["output"] for t in doc["tests"] if t["status"] == "failed"]
    assert "graded again alone" not in doc["output"]
    print(f"graded in {seconds:.1f} s under 768 MB and half a CPU")


@pytest.mark.slow
def test_a_student_function_that_exhausts_memory_alone_is_charged_with_a_message(tmp_path):
    cell = "import torch\ndef sample_gaussian(m, v):\n    big = torch.ones(2**28)\n    return m + big[:1] * 0"
    doc, _ = _graded_in_cgroup(tmp_path, write_folder(tmp_path / "sub", solution_with(cell)))
    assert score_of(doc, "Q2(a)") == 0 and score_of(doc, "Q2(b)") == 6.0
    out = vae_entry(doc)["output"]
    assert "ran out of memory" in out and "ran alone" in out
