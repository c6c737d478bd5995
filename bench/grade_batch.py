"""Batch grading throughput: ``python -m bench.grade_batch [--count 50] [--jobs N]``.

Generates ``--count`` submissions in a temporary folder, one per student, a mix of
- correct: the solutions (as a zip or a folder);
- wrong: the solutions with one graded function broken by a small, realistic mistake
  (its cell's code edited in the notebook's JSON);
- blank: the release notebooks;
- corrupt: a truncated zip, or a folder whose VAE notebook is not a notebook;
- hostile: an infinite loop inside a graded function, a function that tries to read the
  hidden checks, the submissions and the results of its own grading and of the gradings
  beside it (``/tmp/hw10-gradescope-*``), one that allocates huge memory, or one that
  prints fake results and ends its process;
grades them with ``pipeline.grade_batch`` (``make grade-batch``), and writes
``bench/grade_batch.json``: the date, the machine (CPU model, cores, memory, the load
average sampled during the run), the zip graded, the gradings run at once, wall seconds,
submissions per minute, the median seconds per submission (overall and per kind), per
kind the median score and the statuses, and whether any hostile read got through.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from pipeline import grade_batch

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "hw10"
RELEASE = ROOT / "release" / "hw10"
NOTEBOOKS = ("hw10_prompting.ipynb", "hw10_vae.ipynb", "hw10_gan.ipynb", "hw10_diffusion.ipynb",
             "hw10_continual.ipynb")
#: Share of each kind among the generated submissions (50 -> 14, 14, 6, 6, 10).
MIX = (("correct", 0.28), ("wrong", 0.28), ("blank", 0.12), ("corrupt", 0.12), ("hostile", 0.20))

#: (notebook, grade id of the solution cell, code as written, the mistake): one graded
#: function broken each, as students break them.
MISTAKES = [
    ("hw10_vae.ipynb", "sample_gaussian", "z = m + torch.sqrt(v) * eps", "z = m + v * eps"),
    ("hw10_vae.ipynb", "negative_elbo_bound", "self.dec.decode(z)).mean()", "self.dec.decode(z)).sum()"),
    ("hw10_gan.ipynb", "loss_nonsaturating_d", "F.softplus(d(x_fake)).mean()", "F.softplus(-d(x_fake)).mean()"),
    ("hw10_gan.ipynb", "loss_nonsaturating_d", "x_fake = g(z).detach()", "x_fake = g(z)"),
    ("hw10_gan.ipynb", "loss_minimax_g", "loss = -F.softplus(d(g(z))).mean()", "loss = F.softplus(d(g(z))).mean()"),
    ("hw10_diffusion.ipynb", "alpha_bar", "torch.cumprod(1 - betas, dim=0)", "torch.cumprod(betas, dim=0)"),
    ("hw10_diffusion.ipynb", "q_xt_given_x0", "mean = abar.sqrt() * x0", "mean = abar * x0"),
    ("hw10_diffusion.ipynb", "q_sample", "mean + var.sqrt() * noise", "mean + var * noise"),
    ("hw10_continual.ipynb", "ewc_penalty", "return lam / 2 * total", "return lam * total"),
    ("hw10_continual.ipynb", "mix_replay", "torch.cat([y_new, mem_y[idx]])",
     "torch.cat([y_new, mem_y[torch.randint(len(mem_y), (n_replay,))]])"),
    ("hw10_prompting.ipynb", "parse_answer", ", re.IGNORECASE)", ")"),
    ("hw10_prompting.ipynb", "choice_probabilities", "return torch.softmax(logps, 0)", "return torch.exp(logps)"),
    ("hw10_prompting.ipynb", "build_prompt", '"Answer:" if answer is None', '"Answer: " if answer is None'),
]

READ_SECRETS = '''def sample_gaussian(m, v):
    """Tries to read what the grader keeps from students, in its own grading and in the
    gradings beside it, and reports what it got."""
    import glob, os
    got = []
    paths = ["../../source/hw10grader/hidden/vae.py", "/autograder/source/hw10grader/hidden/vae.py",
             "../../submission", "/autograder/submission", "../../results/results.json",
             os.environ.get("AUTOGRADER_ROOT", "/nonexistent") + "/source/hw10grader/hidden/vae.py"]
    for top in glob.glob("/tmp/hw10-gradescope-*/autograder"):
        paths += [top + "/source/hw10grader/hidden", top + "/submission", top + "/results"]
    paths += glob.glob("/tmp/hw10-bench-batch-*") + glob.glob("/tmp/hw10-batch-*")
    for path in paths:
        try:
            seen = os.listdir(path) if os.path.isdir(path) else open(path).read(60)
            got.append(f"READ {path}: {seen!r}")
        except Exception as exc:
            got.append(f"DENIED {path}: {type(exc).__name__}")
    raise RuntimeError(" | ".join(got))
'''
EXIT_EARLY = '''def sample_gaussian(m, v):
    """Prints fake full marks and ends the process that runs it."""
    import os, sys
    print('{"score": 46, "tests": []}')
    sys.stdout.flush()
    os._exit(0)
'''
#: (what, notebook, grade id, code as written, the hostile replacement).
HOSTILE = [
    ("loop", "hw10_vae.ipynb", "sample_gaussian", "    eps = torch.randn_like(m)",
     "    while True:\n        pass\n    eps = torch.randn_like(m)"),
    ("loop", "hw10_diffusion.ipynb", "alpha_bar", "    return torch.cumprod(1 - betas, dim=0)",
     "    n = 0\n    while n >= 0:\n        n += 1\n    return torch.cumprod(1 - betas, dim=0)"),
    ("read", "hw10_vae.ipynb", "sample_gaussian", None, READ_SECRETS),
    ("memory", "hw10_vae.ipynb", "sample_gaussian", "    eps = torch.randn_like(m)",
     "    hog = bytearray(64 * 2**30)\n    eps = torch.randn_like(m)"),
    ("memory", "hw10_continual.ipynb", "mix_replay", "    if len(mem_x) == 0",
     "    hog = []\n    while True:\n        hog.append(bytearray(2**27))\n    if len(mem_x) == 0"),
    ("exit", "hw10_vae.ipynb", "sample_gaussian", None, EXIT_EARLY),
]


def _cells(nb: dict, grade_id: str) -> dict:
    (cell,) = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    return cell


def edited(notebook: str, grade_id: str, old: str | None, new: str) -> dict:
    """The solution notebook with one solution cell's code edited (``old`` -> ``new``;
    ``old`` None: the whole cell replaced)."""
    nb = json.loads((SOLUTIONS / notebook).read_text())
    cell = _cells(nb, grade_id)
    source = "".join(cell["source"])
    if old is not None and old not in source:
        raise SystemExit(f"bench: {notebook} {grade_id} no longer contains {old!r}; update MISTAKES")
    cell["source"] = new if old is None else source.replace(old, new, 1)
    return nb


def _solution_folder(dest: Path, replaced: dict | None = None) -> Path:
    """The five solution notebooks in ``dest``, some replaced ({name: bytes or notebook})."""
    dest.mkdir(parents=True)
    for name in NOTEBOOKS:
        data = (replaced or {}).get(name)
        if data is None:
            shutil.copy(SOLUTIONS / name, dest / name)
        elif isinstance(data, bytes):
            (dest / name).write_bytes(data)
        else:
            (dest / name).write_text(json.dumps(data, indent=1))
    return dest


def _zipped(folder: Path) -> Path:
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"hw10/{p.name}")
    shutil.rmtree(folder)
    return archive


def make_submission(kind: str, i: int, dest: Path) -> str:
    """Write the ``i``-th submission of ``kind`` (each kind cycles through its variants)
    into ``dest``, a folder of students, as ``<kind>-<i>``; returns what it is."""
    student = dest / f"{kind}-{i:02d}"
    if kind == "correct":
        folder = _solution_folder(student)
        if i % 2:
            _zipped(folder)
        return "the solutions" + (" (zip)" if i % 2 else "")
    if kind == "wrong":
        notebook, grade_id, old, new = MISTAKES[i % len(MISTAKES)]
        _solution_folder(student, {notebook: edited(notebook, grade_id, old, new)})
        return f"{grade_id}: {old!r} -> {new!r}"
    if kind == "blank":
        student.mkdir()
        for name in NOTEBOOKS:
            shutil.copy(RELEASE / name, student / name)
        return "the release notebooks"
    if kind == "corrupt":
        if i % 2 == 0:
            archive = _zipped(_solution_folder(student))
            data = archive.read_bytes()
            archive.write_bytes(data[: len(data) * 3 // 5])
            return "a zip of the solutions cut at 60%"
        _solution_folder(student, {"hw10_vae.ipynb": b"\x89PNG\r\n\x1a\n" + os.urandom(2000)})
        return "hw10_vae.ipynb is a PNG file"
    what, notebook, grade_id, old, new = HOSTILE[i % len(HOSTILE)]
    _solution_folder(student, {notebook: edited(notebook, grade_id, old, new)})
    return f"{what} in {grade_id}"


def plan(count: int) -> list:
    """The kind of each submission: ``MIX``'s shares of ``count`` (rounding goes to the
    first kinds), interleaved so that slow kinds spread over the run."""
    sizes = [int(count * share) for _, share in MIX]
    for k in range(count - sum(sizes)):
        sizes[k % len(sizes)] += 1
    queues = [[kind] * n for (kind, _), n in zip(MIX, sizes)]
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop())
    return order


def leaked(doc: dict) -> list:
    """What a read-secrets submission managed to read (the lines marked READ)."""
    return [part.strip() for t in doc.get("tests", []) for part in t.get("output", "").split(" | ")
            if part.strip().startswith("READ ") or " READ " in part]


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _machine() -> dict:
    grade_batch.grader()
    from hw10grader import resources

    return {"cpu_model": _cpu_model(), "cpus_online": os.cpu_count(), "cpus_usable": resources.cpus(),
            "memory_gb": round((resources.meminfo().get("MemTotal") or 0) / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version()}


class LoadSampler:
    """The 1-minute load average, sampled every ``every_s`` seconds while it runs."""

    def __init__(self, every_s: float = 5.0):
        self.samples, self.every_s = [os.getloadavg()[0]], every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.every_s):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"at_start": self.samples[0], "median": round(statistics.median(self.samples), 2),
                "max": max(self.samples), "at_end": os.getloadavg()[0], "samples": len(self.samples)}


def generate(count: int, dest: Path) -> tuple:
    """``count`` submissions in ``dest``: ({student: kind}, {student: what it is})."""
    kinds, what, made = {}, {}, {}
    for kind in plan(count):
        i = made[kind] = made.get(kind, -1) + 1
        student = f"{kind}-{i:02d}"
        what[student], kinds[student] = make_submission(kind, i, dest), kind
    return kinds, what


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=None, help="gradings at once (default: grade_batch's)")
    parser.add_argument("--zip", type=Path, default=grade_batch.ZIP, help="the autograder zip to grade with")
    parser.add_argument("--keep", type=Path, default=None, help="also copy OUT here (gradebook, report)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "grade_batch.json")
    args = parser.parse_args(argv)
    machine = _machine()
    with tempfile.TemporaryDirectory(prefix="hw10-bench-batch-") as tmp:
        subs, out = Path(tmp) / "submissions", Path(tmp) / "out"
        subs.mkdir()
        kinds, what = generate(args.count, subs)
        jobs = args.jobs or grade_batch.default_jobs()
        load = LoadSampler()
        start = time.monotonic()
        rows = grade_batch.run_batch(subs, out, jobs=jobs, zip_path=args.zip)
        wall = time.monotonic() - start
        machine["load_average"] = load.stop()
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)
        figures = _figures(rows, kinds, what, wall, jobs, machine)
    figures["zip"] = {"path": str(args.zip), "sha256": hashlib.sha256(args.zip.read_bytes()).hexdigest()}
    args.output.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "submissions"}, indent=1))
    return 0


def _seconds(rows) -> list:
    return [r["record"]["seconds"] for r in rows if isinstance(r["record"].get("seconds"), (int, float))]


def _per_kind(rows, kinds) -> dict:
    """Per kind of submission: count, median and max seconds, median score, statuses."""
    out = {}
    for kind, _ in MIX:
        mine = [r for r in rows if kinds.get(r["record"]["student"]) == kind]
        if not mine:
            continue
        scores = [grade_batch.totals(r["doc"])[0] for r in mine if r["doc"] is not None]
        seconds = _seconds(mine)
        statuses = {}
        for r in mine:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        out[kind] = {"count": len(mine),
                     "median_s": round(statistics.median(seconds), 2) if seconds else None,
                     "max_s": round(max(seconds), 2) if seconds else None,
                     "median_score": statistics.median(scores) if scores else None,
                     "statuses": statuses}
    return out


def _figures(rows, kinds, what, wall, jobs, machine) -> dict:
    seconds = _seconds(rows)
    reads = [r for r in rows if "read" in what.get(r["record"]["student"], "")]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "count": len(rows),
        "jobs": jobs,
        "judge_settings": grade_batch.grading_env(jobs, None),
        "wall_s": round(wall, 1),
        "submissions_per_minute": round(60 * len(rows) / wall, 2),
        "median_s_per_submission": round(statistics.median(seconds), 2) if seconds else None,
        "sum_s_of_gradings": round(sum(seconds), 1),
        "per_kind": _per_kind(rows, kinds),
        "hostile_reads_that_got_through": sorted({line for r in reads if r["doc"] for line in leaked(r["doc"])}),
        "possible": max((grade_batch.totals(r["doc"])[1] for r in rows if r["doc"] and r["doc"].get("tests")),
                        default=None),
        "submissions": [{"student": r["record"]["student"], "what": what.get(r["record"]["student"]),
                         "status": r["status"], "score": grade_batch.totals(r["doc"])[0],
                         "seconds": r["record"].get("seconds")} for r in rows],
    }


if __name__ == "__main__":
    sys.exit(main())
