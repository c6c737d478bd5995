"""The student's export (``from hw10kit import export; export()``, ``python -m
hw10kit.export``): it reads the saved notebooks, says what is unsaved, failing, unfinished
or unanswered, and writes the zip the grader expects and a printout of the notebooks.

Student folders are built from the repository's built notebooks: ``release/hw10`` (blank)
and ``solutions/hw10`` (filled in). Running public checks costs a child process (torch
imported) per notebook, so the tests that need them share one export (``mid_homework``),
and the printout tests share one printout (``printout``)."""
from __future__ import annotations

import base64
import contextlib
import html.parser
import io
import json
import linecache
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import types
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import REPO
from hw10grader import submission
from hw10kit import export, manifest

RELEASE = REPO / "release" / "hw10"
SOLUTIONS = REPO / "solutions" / "hw10"
NAMES = [p.notebook for p in manifest.PROBLEMS]
PROMPTING, VAE, GAN = (manifest.BY_KEY[k] for k in ("prompting", "vae", "gan"))
SAVE = "save it (Ctrl-S / File > Save) and run export() again"


# --------------------------------------------------------------------- helpers
def folder_with(base: Path, source: Path = SOLUTIONS, names=NAMES, **renamed) -> Path:
    """``base/hw10`` holding ``names`` copied from ``source``; ``renamed`` maps a release
    name to the name its copy gets."""
    folder = base / "hw10"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / name, folder / renamed.get(name, name))
    return folder


def edit_notebook(path: Path, change) -> None:
    """Apply ``change`` to the notebook's cells (a list of dicts) and save it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    change(nb["cells"])
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def cell_of(cells: list, grade_id: str) -> dict:
    return next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def edit_cell(path: Path, grade_id: str, text: str) -> None:
    """Replace the source of the cell whose nbgrader grade id is ``grade_id``."""
    edit_notebook(path, lambda cells: cell_of(cells, grade_id).update(source=text))


def cell_source(path: Path, grade_id: str) -> str:
    return "".join(cell_of(json.loads(path.read_text(encoding="utf-8"))["cells"], grade_id)["source"])


def kernel(*cells: str) -> dict:
    """A namespace as an IPython kernel leaves it: each cell compiled under a file name
    of its own that ``linecache`` knows, so ``inspect.getsource`` finds its functions."""
    ns = {"__name__": "__main__"}
    for i, src in enumerate(cells):
        name = f"/tmp/ipykernel_0/fake_cell_{i}_{id(ns)}.py"
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        exec(compile(src, name, "exec"), ns)
    return ns


#: Stands in for ``import torch.nn as nn`` in a fake kernel: only the definitions matter.
FAKE_NN = "import types\nnn = types.SimpleNamespace(Module=object)\n"


def quiet_export(folder: Path, **kwargs) -> export.Report:
    return export(folder, **{"checks": False, "printout": False, "quiet": True, **kwargs})


def png() -> bytes:
    """A 1x1 PNG image."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


# --------------------------------------------------------------------- the zip
def test_the_zip_holds_exactly_the_five_release_names_and_the_grader_finds_each(tmp_path):
    folder = folder_with(tmp_path)
    (folder / "notes.ipynb").write_text("{}")  # another notebook in the folder stays out
    report = quiet_export(folder)
    assert report.zip_path == folder / export.ZIP_NAME
    with zipfile.ZipFile(report.zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(NAMES)
        assert all(zf.read(name) == (folder / name).read_bytes() for name in NAMES)
    root = submission.prepare(report.zip_path, tmp_path / "grader")
    for p in manifest.PROBLEMS:
        found = submission.find_notebook(root, p.notebook, p.keyword)
        assert found.note == f"graded {p.notebook}"


def test_a_renamed_copy_is_stored_under_its_release_name(tmp_path):
    folder = folder_with(tmp_path, **{VAE.notebook: "Copy of hw10_vae (1).ipynb"})
    report = quiet_export(folder)
    with zipfile.ZipFile(report.zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(NAMES)
        assert zf.read(VAE.notebook) == (folder / "Copy of hw10_vae (1).ipynb").read_bytes()
    assert report.ok and report.found[VAE.notebook].name == "Copy of hw10_vae (1).ipynb"
    assert any("Copy of hw10_vae (1).ipynb" in note for note in report.notes)


def test_a_newer_renamed_copy_beside_the_release_name_is_pointed_out(tmp_path):
    folder = folder_with(tmp_path)
    copy = folder / "Copy of hw10_vae.ipynb"
    shutil.copy(folder / VAE.notebook, copy)
    later = time.time() + 60
    os.utime(copy, (later, later))
    report = quiet_export(folder)
    assert report.found[VAE.notebook] == folder / VAE.notebook
    assert any("Copy of hw10_vae.ipynb is newer than hw10_vae.ipynb" in p and "rename it" in p
               for p in report.problems)


def test_a_missing_notebook_is_named_and_the_others_are_still_zipped(tmp_path, capsys):
    folder = folder_with(tmp_path, names=[n for n in NAMES if n != GAN.notebook])
    report = quiet_export(folder, quiet=False)
    assert report.missing == [GAN.notebook] and not report.ok
    assert report.problems == [f"{GAN.notebook} is missing: put it in {folder}"]
    assert f"{GAN.notebook}: not found" in capsys.readouterr().out
    with zipfile.ZipFile(report.zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(n for n in NAMES if n != GAN.notebook)


def test_a_file_that_is_not_a_notebook_is_named_with_what_to_do(tmp_path):
    folder = folder_with(tmp_path)
    (folder / GAN.notebook).write_text('{"cells": [', encoding="utf-8")  # a download cut short
    problems = quiet_export(folder).problems
    assert len(problems) == 1 and problems[0].startswith(f"{GAN.notebook} is not a readable notebook: "
                                                         "the notebook is not valid JSON")
    assert "File > Save" in problems[0]


def test_a_notebook_larger_than_the_grader_takes_is_named(tmp_path, monkeypatch):
    folder = folder_with(tmp_path)
    monkeypatch.setattr(export, "MAX_NOTEBOOK_BYTES", (folder / VAE.notebook).stat().st_size - 1)
    problems = quiet_export(folder).problems
    assert any(p.startswith(f"{VAE.notebook} is ") and "grader refuses" in p and "delete the outputs" in p
               for p in problems), problems


def test_the_rules_for_names_and_sizes_are_the_graders():
    assert submission.normalized is export.normalized
    assert export.normalized("Copy of hw10_vae (2).ipynb") == "hw10_vae"
    assert export.MAX_NOTEBOOK_BYTES == submission.MAX_NOTEBOOK_BYTES


def test_the_grader_imports_the_export_without_heavy_modules():
    heavy = ("torch", "numpy", "nbconvert", "nbformat", "IPython", "matplotlib")
    proc = subprocess.run([sys.executable, "-c", "import sys, hw10kit.export\n"
                           f"print([m for m in {heavy!r} if m in sys.modules])"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_the_export_needs_nothing_newer_than_python_3_10():
    """Gradescope's image runs the grader, which imports it, on Python 3.10."""
    vermin = Path(sys.executable).parent / "vermin"
    proc = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.10-", "hw10kit/export.py"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------- public checks
@pytest.fixture(scope="module")
def mid_homework(tmp_path_factory):
    """One export, public checks run, of a folder as a student leaves it midway:
    hw10_prompting.ipynb solved, except that the saved ``parse_answer`` is wrong and is
    followed by a line that fails, while the kernel holds the right one, and that
    ``choice_probabilities`` sits in a cell tagged ``training``; hw10_vae.ipynb as
    released (blank); the other notebooks missing."""
    folder = folder_with(tmp_path_factory.mktemp("mid"), names=[PROMPTING.notebook])
    shutil.copy(RELEASE / VAE.notebook, folder / VAE.notebook)
    path = folder / PROMPTING.notebook
    ns = kernel(cell_source(path, "parse_answer"))  # the right one
    edit_cell(path, "parse_answer", "def parse_answer(text):\n    return None\n\nLIMIT = undefined_name\n")
    edit_notebook(path, lambda cells: cell_of(cells, "choice_probabilities")["metadata"].update(tags=["training"]))
    before = dict(ns)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = export(folder, namespace=ns, printout=False)
    return types.SimpleNamespace(report=report, output=out.getvalue(), ns=ns, before=before,
                                 results={r.notebook: r for r in report.checks})


def test_a_wrong_function_on_disk_fails_even_when_the_kernel_holds_a_right_one(mid_homework):
    parse = next(f for f in mid_homework.results[PROMPTING.notebook].functions if f.target == "parse_answer")
    assert parse.total > 0 and parse.passed < parse.total and parse.message
    assert any(p.startswith(f"parse_answer ({PROMPTING.notebook}): {parse.passed}/{parse.total} public "
                            "checks pass: ") for p in mid_homework.report.problems)


def test_the_functions_saved_right_pass_their_public_checks(mid_homework):
    result = mid_homework.results[PROMPTING.notebook]
    assert [f.target for f in result.functions] == [q.target for q in PROMPTING.questions]
    assert all(f.ok for f in result.functions if f.target not in ("parse_answer", "choice_probabilities"))
    assert f"\u2714 {result.functions[0].total}/{result.functions[0].total} build_prompt" in mid_homework.output


def test_a_function_defined_in_a_cell_the_grader_skips_fails_and_says_why(mid_homework):
    probs = next(f for f in mid_homework.results[PROMPTING.notebook].functions if f.target == "choice_probabilities")
    assert probs.total > 0 and probs.passed == 0
    assert re.fullmatch(r"`choice_probabilities` is defined only in code cell \d+, tagged `training`, which the "
                        r"grader skips: move the definition to a cell of its own above it, without that tag",
                        probs.message), probs.message


def test_a_saved_line_that_fails_is_named_by_its_cell(mid_homework):
    [error] = mid_homework.results[PROMPTING.notebook].errors
    assert error.startswith("code cell ") and "`def parse_answer(text):`" in error
    assert "line 4" in error and "NameError" in error and "undefined_name" in error


def test_the_checks_leave_the_kernel_untouched(mid_homework):
    assert mid_homework.ns.keys() == mid_homework.before.keys()
    assert all(mid_homework.ns[k] is v for k, v in mid_homework.before.items())


def test_a_blank_notebook_is_reported_unfinished(mid_homework):
    result = mid_homework.results[VAE.notebook]
    assert not result.errors
    assert [(f.target, f.passed, export.brief(f.message)) for f in result.functions] == \
        [(q.target, 0, "not implemented yet") for q in VAE.questions]
    assert "0/4 sample_gaussian: not implemented yet" in mid_homework.output
    assert f"sample_gaussian ({VAE.notebook}): 0/4 public checks pass: not implemented yet" \
        in mid_homework.report.problems


@pytest.mark.slow
def test_a_check_that_never_returns_is_stopped(tmp_path):
    folder = folder_with(tmp_path, names=[VAE.notebook])
    edit_cell(folder / VAE.notebook, "sample_gaussian", "def sample_gaussian(m, v):\n    while True:\n        pass\n")
    result = export.check_notebook(folder / VAE.notebook, VAE, timeout_s=20)
    assert "did not finish within 20 s" in result.functions[0].message
    assert result.functions[1].message.startswith("not checked")


@pytest.mark.slow
def test_every_solution_notebook_passes_every_public_check(tmp_path):
    report = export(folder_with(tmp_path), printout=False, quiet=True)
    assert report.ok, report.problems
    assert len(report.checks) == len(NAMES)


# --------------------------------------------------------------------- unsaved work
def test_a_graded_function_that_differs_from_the_kernel_is_reported(tmp_path):
    folder = folder_with(tmp_path)
    ns = kernel("def sample_gaussian(m, v):\n    return m\n")
    report = quiet_export(folder, namespace=ns)
    assert report.unsaved == [f"sample_gaussian in {VAE.notebook} on disk differs from the one in your kernel, "
                              f"and the grader reads the file: {SAVE} (if you changed the cell after running "
                              "it, run it first)"]
    assert report.unsaved[0] in report.problems


def test_a_kernel_that_matches_the_saved_notebooks_has_nothing_unsaved(tmp_path):
    folder = folder_with(tmp_path)
    saved_vae = cell_source(folder / VAE.notebook, "negative_elbo_bound")
    ns = kernel(FAKE_NN, cell_source(folder / VAE.notebook, "sample_gaussian"),
                # the saved class (a method graded), reformatted and commented: the same code
                saved_vae.replace("    def negative_elbo_bound", "    # my notes\n\n    def negative_elbo_bound"),
                "def not_graded():\n    return 1\n")
    assert quiet_export(folder, namespace=ns).unsaved == []


def test_a_kernel_holding_an_earlier_definition_than_the_graded_one_is_told(tmp_path):
    folder = folder_with(tmp_path, names=[VAE.notebook])
    earlier = "def sample_gaussian(m, v):\n    return m  # a first try\n"
    edit_notebook(folder / VAE.notebook,
                  lambda cells: cell_of(cells, "helpers").update(source=cell_source(
                      folder / VAE.notebook, "helpers") + "\n\n" + earlier))
    [message] = quiet_export(folder, namespace=kernel(earlier)).unsaved
    assert message.startswith("sample_gaussian: your kernel holds the definition from an earlier cell")
    assert "the grader uses the last one (code cell" in message


def test_a_kernel_function_the_grader_cannot_see_on_disk_is_reported(tmp_path):
    folder = folder_with(tmp_path, names=[VAE.notebook])
    edit_notebook(folder / VAE.notebook,
                  lambda cells: cell_of(cells, "sample_gaussian")["metadata"].update(tags=["training"]))
    ns = kernel(cell_source(folder / VAE.notebook, "sample_gaussian"))
    [message] = quiet_export(folder, namespace=ns).unsaved
    assert message.startswith(f"sample_gaussian: your kernel defines it, but {VAE.notebook} on disk has no "
                              "definition of it that the grader reads")


def test_a_notebook_saved_before_the_last_cell_ran_is_named(tmp_path):
    path = folder_with(tmp_path, names=[VAE.notebook]) / VAE.notebook
    nb = {"cells": [{"cell_type": "code", "execution_count": n, "source": ""} for n in (1, 2, 3)]}
    assert export.stale_note(path, nb, last_run=5, kernel_start=None) == \
        f"{VAE.notebook} on disk was saved before In [5], the last cell you ran, so it lacks that cell's work: {SAVE}"
    assert export.stale_note(path, nb, last_run=3, kernel_start=None) is None


def test_a_notebook_saved_before_the_kernel_started_is_named(tmp_path):
    path = folder_with(tmp_path, names=[VAE.notebook]) / VAE.notebook
    nb = {"cells": [{"cell_type": "code", "execution_count": 3, "source": ""}]}  # from an earlier session
    started = path.stat().st_mtime + 60
    assert "was last saved before this kernel started" in export.stale_note(path, nb, 3, kernel_start=started)
    assert export.stale_note(path, nb, 0, kernel_start=started) is None  # nothing ran yet


def test_running_the_export_again_needs_no_saving_in_between():
    inputs = ["", "x = 1", "def f():\n    pass", "from hw10kit import export\nexport()", "export()"]
    assert export.last_run_cell(inputs, current=4) == 2


# --------------------------------------------------------------------- written answers
def test_written_answers_still_at_the_stub_are_listed_and_filled_ones_are_not(tmp_path):
    folder = folder_with(tmp_path, RELEASE)
    edit_cell(folder / VAE.notebook, "q2c_written", "NELBO 98.6 ± 0.1 over three seeds.")
    report = quiet_export(folder)
    vae = report.unanswered[VAE.notebook]
    assert not any("q2c_written" in item for item in vae)
    assert "Q2(d) Samples (3 points, written) [q2d_written]" in vae
    assert len(vae) == len(VAE.written) - 1
    assert set(report.unanswered) == set(NAMES)
    assert f"{VAE.notebook}: written answer not answered yet: Q2(d) Samples (3 points, written) " \
           "[q2d_written]" in report.problems


def test_the_solutions_leave_no_written_answer_unanswered(tmp_path):
    assert not quiet_export(folder_with(tmp_path)).unanswered


# --------------------------------------------------------------------- the printout
ANSWER = "Seeds 0, 1 and 2 give NELBO 98.6 with standard error 0.1, mostly reconstruction."


@pytest.fixture(scope="module")
def printout(tmp_path_factory):
    """The printout of a folder where no PDF engine is installed: the blank release but
    hw10_gan.ipynb, which is missing; in hw10_vae.ipynb, Q2(c) answered with a figure
    file and a pasted image, and a code cell showing a figure and a printed line."""
    folder = folder_with(tmp_path_factory.mktemp("printout"), RELEASE, [n for n in NAMES if n != GAN.notebook])
    (folder / "figure.png").write_bytes(png())
    image = base64.b64encode(png()).decode()

    def answer_and_run(cells):
        cell_of(cells, "q2c_written").update(source=ANSWER + "\n\n![my figure](figure.png)\n\n"
                                             "![pasted](attachment:pasted.png)\n",
                                             attachments={"pasted.png": {"image/png": image}})
        cell_of(cells, "helpers")["outputs"] = [
            {"output_type": "stream", "name": "stdout", "text": "NELBO 98.61\n"},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": image, "text/plain": "<Figure size 100x100>"}}]
    edit_notebook(folder / VAE.notebook, answer_and_run)
    before = set(os.listdir(folder))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "weasyprint", None)  # no PDF engine, whatever this machine has
        report = quiet_export(folder, printout=True)
    page = Page()
    page.feed(report.printout_path.read_text(encoding="utf-8"))
    return types.SimpleNamespace(folder=folder, report=report, new=set(os.listdir(folder)) - before,
                                 html=report.printout_path.read_text(encoding="utf-8"), page=page,
                                 image=image)


class Page(html.parser.HTMLParser):
    """What a printout page holds: its tags' attributes, script and style bodies, text."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self.styles, self.text, self._in = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        {"script": self.scripts, "style": self.styles}.get(self._in, self.text).append(data)


def test_the_printout_is_one_html_page_where_no_pdf_engine_is_installed(printout):
    assert printout.report.printout_path == printout.folder / export.PRINTOUT_HTML
    assert printout.new == {export.ZIP_NAME, export.PRINTOUT_HTML}


def test_the_printout_loads_nothing_from_the_network(printout):
    loaded = [(tag, a, v) for tag, attrs in printout.page.tags for a, v in attrs.items()
              if a in ("src", "href", "data", "srcset", "poster") and not (tag == "a" and a == "href")]
    assert all(v.startswith(("data:", "#")) for _, _, v in loaded), loaded
    assert not any("http:" in s or "https:" in s for s in printout.page.scripts)
    assert not any("url(http" in s.replace(" ", "") for s in printout.page.styles)


def test_the_printout_embeds_every_figure(printout):
    images = [attrs for tag, attrs in printout.page.tags if tag == "img"]
    assert {a.get("alt") for a in images} >= {"my figure", "pasted"}  # and the output's
    assert len(images) == 3
    assert all(a["src"] == f"data:image/png;base64,{printout.image}" for a in images), images


def test_the_printout_shows_code_outputs_and_written_answers(printout):
    text = "".join(printout.page.text)
    assert "def gaussian_parameters(h, dim=-1):" in text and "NELBO 98.61" in text
    assert f"Written answer: Q2(c) Variation over seeds (4 points, written) [q2c_written]" in text
    assert ANSWER in text
    assert r"\mathbb{R}" in printout.html  # LaTeX stays readable as its source


def test_the_printout_flags_each_unanswered_written_answer_and_links_it(printout):
    assert 'id="hw10-vae-q2d_written"' in printout.html and 'href="#hw10-vae-q2d_written"' in printout.html
    assert "NOT ANSWERED: Q2(d) Samples (3 points, written) [q2d_written]" in "".join(printout.page.text)


def test_the_printout_flags_a_missing_notebook(printout):
    assert f"{GAN.notebook}: missing from the folder" in "".join(printout.page.text)


def test_the_printout_keeps_the_homework_order(printout):
    html = printout.html
    assert html.index('id="hw10-prompting"') < html.index('id="hw10-vae"') < html.index('id="hw10-diffusion"') \
        < html.index('id="hw10-continual"')


def test_the_printout_is_a_pdf_where_a_pdf_engine_is_installed(tmp_path, monkeypatch):
    class HTML:  # WeasyPrint's interface
        def __init__(self, string, base_url=None):
            self.string = string

        def write_pdf(self, target):
            Path(target).write_bytes(b"%PDF-1.7 " + self.string.encode())

    monkeypatch.setitem(sys.modules, "weasyprint", types.SimpleNamespace(HTML=HTML))
    monkeypatch.setattr(export, "render_html", lambda nb, folder: "<p>the page</p>")
    folder = folder_with(tmp_path, names=[VAE.notebook])
    (folder / export.PRINTOUT_HTML).write_text("an earlier export's page")
    path = export.write_printout(folder, export.locate(folder))
    assert path == folder / export.PRINTOUT_PDF and path.read_bytes() == b"%PDF-1.7 <p>the page</p>"
    assert not (folder / export.PRINTOUT_HTML).exists()  # no stale printout left to upload


def test_without_nbconvert_the_zip_is_still_written_and_the_fix_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbconvert", None)  # not installed
    folder = folder_with(tmp_path)
    report = quiet_export(folder, printout=True)
    assert report.zip_path.is_file() and report.printout_path is None
    assert report.problems == ["the printout needs nbconvert, which is not installed: run `pip install "
                               "nbconvert` and then export() again"]


# --------------------------------------------------------------------- the command line
def test_the_command_line_exports_the_folder_it_runs_in(tmp_path):
    folder = folder_with(tmp_path, names=[VAE.notebook])
    (folder / "hw10kit").symlink_to(REPO / "hw10kit", target_is_directory=True)  # as released: side by side
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "hw10kit.export", "--no-checks"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    with zipfile.ZipFile(folder / export.ZIP_NAME) as zf:
        assert zf.namelist() == [VAE.notebook]
    assert (folder / export.PRINTOUT_HTML).is_file()
    assert f"{GAN.notebook}: not found" in proc.stdout and "4 thing(s) to fix" in proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_the_command_line_exits_0_when_nothing_is_left_to_fix(tmp_path):
    folder = folder_with(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "hw10kit.export", "--folder", str(folder), "--no-checks",
                           "--no-printout"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("\u2714 Nothing left to fix.")
    assert "public checks" not in proc.stdout.lower() and (folder / export.ZIP_NAME).is_file()


# --------------------------------------------------------------------- in a Jupyter kernel
def test_the_export_cell_in_a_jupyter_kernel_reads_the_saved_notebook(tmp_path):
    """The release's last cell, run in a real kernel after a cell that redefines a graded
    function without saving: the checks pass on the saved (right) one, and the export
    says the kernel differs and the file was saved before the kernel ran cells."""
    import nbformat
    from nbclient import NotebookClient

    folder = folder_with(tmp_path, names=[PROMPTING.notebook])
    (folder / "hw10kit").symlink_to(REPO / "hw10kit", target_is_directory=True)
    release = nbformat.read(RELEASE / PROMPTING.notebook, as_version=4)
    [export_cell] = [c for c in release.cells if "export" in c.metadata.get("tags", [])]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def parse_answer(text):\n    return 'A'\n"),
                                         export_cell])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the kit comes from the folder
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    out = "".join(o.get("text", "") for o in nb.cells[1].outputs if o.output_type == "stream")
    assert [o.output_type for o in nb.cells[1].outputs] == ["stream"] * len(nb.cells[1].outputs)  # no Report dump
    assert f"parse_answer in {PROMPTING.notebook} on disk differs from the one in your kernel (In [1])" in out
    assert f"{PROMPTING.notebook} was last saved before this kernel started" in out
    assert re.search(r"\u2714 (\d+)/\1 parse_answer\n", out), out
    assert (folder / export.ZIP_NAME).is_file() and (folder / export.PRINTOUT_HTML).is_file()

