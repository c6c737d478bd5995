"""What this process may use: memory and CPUs, as the kernel will enforce them.

The limit that applies is the smallest of: every memory cgroup from this process's own
(``/proc/self/cgroup``) up to the root of its hierarchy (cgroup v2 ``memory.max`` and
``memory.high``, v1 ``memory.limit_in_bytes``), and the machine's memory
(``/proc/meminfo``). CPUs: the CPU quota on the same path (v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) and the CPUs this process may run on.
Every function takes ``root`` (default ``/``) so that tests can point it at a fake
``/proc`` and ``/sys`` tree.

``Gate`` lets questions run side by side and one question run alone: a sandbox the OOM
killer took while others ran beside it is retried alone before anything is charged.
"""
from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def _read(root, path: str) -> str | None:
    try:
        return (Path(root) / path.lstrip("/")).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _mounts(root) -> list:
    """(mount root, mount point, fstype, super options) of the cgroup file systems."""
    text = _read(root, "/proc/self/mountinfo")
    out = []
    for line in (text or "").splitlines():
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((fields[3], fields[4], tail[0], set(tail[2].split(","))))
    return out


def cgroup_dirs(controller: str, root="/") -> list:
    """The directories of this process's cgroup for ``controller`` ("memory", "cpu"),
    its own first, then each parent up to the hierarchy's mount point (both v1 and v2
    hierarchies, where mounted). Falls back to the usual mount points when
    /proc/self/mountinfo cannot be read."""
    text = _read(root, "/proc/self/cgroup") or ""
    mounts = _mounts(root)
    if not mounts:
        mounts = [("/", "/sys/fs/cgroup", "cgroup2", set()),
                  ("/", f"/sys/fs/cgroup/{controller}", "cgroup", {controller}),
                  ("/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", {"cpu"})]
    dirs = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        v2 = controllers == ""
        if not v2 and controller not in controllers.split(","):
            continue
        for mount_root, mount_point, fstype, options in mounts:
            if (fstype == "cgroup2") != v2 or (not v2 and controller not in options):
                continue
            if mount_root == "/" or path == mount_root or path.startswith(mount_root.rstrip("/") + "/"):
                rel = path[len(mount_root.rstrip("/")):] if mount_root != "/" else path
            else:  # our cgroup is outside what is mounted here: its root is all we can see
                rel = "/"
            parts_rel = [p for p in rel.split("/") if p and p != ".."]
            for depth in range(len(parts_rel), -1, -1):
                d = Path(root) / mount_point.lstrip("/") / "/".join(parts_rel[:depth])
                if d.is_dir() and d not in dirs:
                    dirs.append(d)
    return dirs


def _number(text: str | None) -> int | None:
    text = (text or "").strip()
    if text.isdigit() and int(text) < UNLIMITED:
        return int(text)
    return None


def meminfo(root="/") -> dict:
    """/proc/meminfo in bytes: {"MemTotal": ..., "MemAvailable": ...}."""
    out = {}
    for line in (_read(root, "/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0]) * (1024 if fields[1:2] == ["kB"] else 1)
    return out


def cgroup_memory_limits(root="/") -> list:
    """(path, bytes) of every memory limit on this process's cgroup path."""
    found = []
    for d in cgroup_dirs("memory", root):
        for name in ("memory.max", "memory.high", "memory.limit_in_bytes"):
            value = _number(_read(d, name))
            if value is not None:
                found.append((str(d / name), value))
    return found


def memory_limit_bytes(root="/") -> int | None:
    """The smallest memory limit that applies to this process: its cgroups' (from its
    own up to the root) and the machine's MemTotal. None when nothing can be read."""
    values = [v for _, v in cgroup_memory_limits(root)]
    total = meminfo(root).get("MemTotal")
    if total:
        values.append(total)
    return min(values) if values else None


def memory_available_bytes(root="/") -> int | None:
    """What this process can still take: for each limited cgroup on its path, the limit
    minus that cgroup's usage, and the machine's MemAvailable; the smallest."""
    values = []
    for d in cgroup_dirs("memory", root):
        usage = _number(_read(d, "memory.current")) or _number(_read(d, "memory.usage_in_bytes"))
        for name in ("memory.max", "memory.high", "memory.limit_in_bytes"):
            limit = _number(_read(d, name))
            if limit is not None and usage is not None:
                values.append(max(0, limit - usage))
    available = meminfo(root).get("MemAvailable")
    if available is not None:
        values.append(available)
    return min(values) if values else None


def _cpu_list(text: str) -> int:
    count = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            count += (int(hi) - int(lo) + 1) if hi.strip().isdigit() else 1
    return count


def cpu_quota(root="/") -> float | None:
    """The smallest CPU quota on this process's cgroup path, in CPUs (0.5 for
    "50000 100000"), or None when there is none."""
    quotas = []
    for d in cgroup_dirs("cpu", root):
        fields = (_read(d, "cpu.max") or "").split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]) > 0:
            quotas.append(int(fields[0]) / int(fields[1]))
        quota, period = _read(d, "cpu.cfs_quota_us"), _read(d, "cpu.cfs_period_us")
        if quota and period and quota.strip().lstrip("-").isdigit() and period.strip().isdigit():
            if int(quota) > 0 and int(period) > 0:
                quotas.append(int(quota) / int(period))
    return min(quotas) if quotas else None


def cpus(root="/") -> float:
    """CPUs this process can use: the CPUs it may run on (Cpus_allowed_list), capped
    by its cgroups' quota."""
    allowed = None
    for line in (_read(root, "/proc/self/status") or "").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            allowed = _cpu_list(line.split(":", 1)[1]) or None
    if allowed is None:
        allowed = os.cpu_count() or 1
    quota = cpu_quota(root)
    return float(min(allowed, quota)) if quota is not None else float(allowed)


#: Peak resident memory of one sandbox grading a question (torch imported, a probe's
#: tensors), measured on the solutions; and of the judge itself.
SANDBOX_BYTES = 450 * 2**20
JUDGE_BYTES = 250 * 2**20


def parallel_for(limit: int | None, available: int | None, cpu: float, most: int = 2) -> int:
    """How many sandboxes to run at once: as many as fit beside the judge in memory
    (the smaller of the limit and what is available now), and no more than whole CPUs."""
    fits = most
    for room in (limit, available):
        if room is not None:
            fits = min(fits, int((room - JUDGE_BYTES) // SANDBOX_BYTES))
    return max(1, min(most, fits, math.floor(cpu + 1e-9)))


def oom_kills(root="/") -> int | None:
    """OOM kills so far in this process's memory cgroups (v2 memory.events, v1
    memory.oom_control) and on the whole machine (/proc/vmstat); None when unknown."""
    total, known = 0, False
    sources = [d / "memory.events" for d in cgroup_dirs("memory", root)]
    sources += [d / "memory.oom_control" for d in cgroup_dirs("memory", root)]
    sources.append(Path(root) / "proc/vmstat")
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == "oom_kill" and fields[1].isdigit():
                total, known = total + int(fields[1]), True
    return total if known else None


class Gate:
    """Questions hold the gate shared while they run side by side; ``alone()`` waits
    until no other question runs and keeps new ones from starting. Each shared holder
    learns whether another question ran beside it (``crowded``)."""

    class Slot:
        crowded = False

    def __init__(self):
        self.cond = threading.Condition()
        self.slots: set = set()
        self.alone_waiting = 0
        self.alone_running = False

    @contextmanager
    def shared(self):
        slot = Gate.Slot()
        with self.cond:
            while self.alone_waiting or self.alone_running:
                self.cond.wait()
            self.slots.add(slot)
            if len(self.slots) > 1:
                for s in self.slots:
                    s.crowded = True
        try:
            yield slot
        finally:
            with self.cond:
                self.slots.discard(slot)
                self.cond.notify_all()

    @contextmanager
    def alone(self, deadline: float):
        """Run alone; gives up waiting at ``deadline`` (``time.monotonic()``) and then
        yields False."""
        with self.cond:
            self.alone_waiting += 1
            try:
                while (self.slots or self.alone_running) and time.monotonic() < deadline:
                    self.cond.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                ok = not self.slots and not self.alone_running
                if ok:
                    self.alone_running = True
            finally:
                self.alone_waiting -= 1
        try:
            yield ok
        finally:
            with self.cond:
                if ok:
                    self.alone_running = False
                self.cond.notify_all()


GATE = Gate()
