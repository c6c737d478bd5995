"""The notebooks run top to bottom in a real Jupyter kernel, the way a student runs them
(training shortened): the solutions with their public checks passing and their figures
written; the blank release with one-line "not implemented yet" messages and nothing else."""
import re
import shutil

import nbformat
import pytest
from grading_helpers import REPO
from hw10kit import manifest
from nbclient import NotebookClient

SHORTEN = {r"ITER_MAX = \d+": "ITER_MAX = 150", r"SEEDS = \[0, 1, 2\]": "SEEDS = [0, 1]"}
#: Notebooks whose run is too long for make test (2 cores): make test-slow runs them. The
#: continual-learning notebook has no knob to shorten it (about 8 minutes solved, 3 blank);
#: the diffusion notebook's solved run samples and scores 1000 digits.
SLOW_SOLVED = {"hw10_continual.ipynb", "hw10_diffusion.ipynb"}
SLOW_BLANK = {"hw10_continual.ipynb"}


def notebooks(slow: set) -> tuple:
    """Every notebook of the manifest, those in ``slow`` marked slow."""
    return tuple(pytest.param(p.notebook, marks=pytest.mark.slow) if p.notebook in slow else p.notebook
                 for p in manifest.PROBLEMS)


NAMES = tuple(p.notebook for p in manifest.PROBLEMS)
#: the figures a solved notebook saves (a problem without figures has none listed)
FIGURES = {"hw10_vae.ipynb": ("vae_samples.png", "vae_loss.png"),
           "hw10_gan.ipynb": ("gan_samples.png", "gan_loss.png")}


def check_cells(nb) -> dict:
    """check cell id -> graded function, from the nbgrader grade ids ``<target>_check``."""
    targets = {f"{q.target}_check": q.target for p in manifest.PROBLEMS for q in p.questions}
    return {c.get("id"): targets[gid] for c in nb.cells
            if (gid := c.get("metadata", {}).get("nbgrader", {}).get("grade_id")) in targets}


def run_in_kernel(nb, folder, allow_errors=True):
    NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def shortened(path):
    """The notebook with training shortened and without its last cell, the export (which
    reads every notebook of the folder: tests/test_export.py runs it in a kernel once)."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "export" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        for pattern, repl in SHORTEN.items():
            cell.source = re.sub(pattern, repl, cell.source)
    return nb


def student_folder(tmp_path_factory, source, name):
    folder = tmp_path_factory.mktemp(name) / "hw10"
    shutil.copytree(source, folder)
    if not (folder / "hw10kit").exists():  # the solutions folder holds only the notebooks
        shutil.copytree(REPO / "hw10kit", folder / "hw10kit", ignore=shutil.ignore_patterns("__pycache__"))
        (folder / "data").symlink_to(REPO / "data", target_is_directory=True)
    return folder


@pytest.fixture(scope="module", params=notebooks(SLOW_SOLVED))
def executed(request, tmp_path_factory, built_course):
    folder = student_folder(tmp_path_factory, built_course.solutions, "solved")
    nb = shortened(folder / request.param)
    return request.param, folder, run_in_kernel(nb, folder, allow_errors=False)


@pytest.fixture(scope="module", params=notebooks(SLOW_BLANK))
def blank_run(request, tmp_path_factory, built_course):
    """The blank release run top to bottom (Run All), as a student first meets it."""
    folder = student_folder(tmp_path_factory, built_course.release, "blank")
    return request.param, run_in_kernel(shortened(folder / request.param), folder)


def outputs_of(nb, cell_id):
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def errors_of(nb):
    return [(c.get("id"), o.ename, o.evalue) for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


def test_public_checks_pass_in_the_kernel(executed):
    _, _, nb = executed
    cells = check_cells(nb)
    assert cells
    for cell_id, target in cells.items():
        n = sum(c.target == target for c in manifest.public_checks(manifest.problem_of(target)))
        assert f"{target}: {n}/{n} public checks passed" in outputs_of(nb, cell_id)


def test_sample_grid_and_loss_curve_are_saved_as_png(executed):
    name, folder, _ = executed
    for figure in FIGURES.get(name, ()):
        assert (folder / figure).read_bytes()[:4] == b"\x89PNG"


def test_check_cells_print_their_report_without_echoing_a_bool(executed):
    _, _, nb = executed
    for cell_id in check_cells(nb):
        cell = next(c for c in nb.cells if c.get("id") == cell_id)
        assert not [o for o in cell.outputs if o.output_type == "execute_result"], cell_id


def test_the_vae_evaluation_prints_the_course_summary_and_the_iwae_bound(executed):
    name, _, nb = executed
    if name != "hw10_vae.ipynb":
        pytest.skip("VAE only")
    assert re.search(r"NELBO: [\d.]+\. KL: [\d.]+\. Rec: [\d.]+", outputs_of(nb, "evaluate"))
    assert "negative IWAE-100" in outputs_of(nb, "iwae")


def test_the_gan_notebook_reports_both_sample_metrics(executed):
    name, _, nb = executed
    if name != "hw10_gan.ipynb":
        pytest.skip("GAN only")
    text = outputs_of(nb, "metrics")
    assert "Classifier Inception Score" in text and "Frechet distance" in text


def test_run_all_on_the_blank_notebook_fails_only_with_one_line_unfinished_messages(blank_run):
    _, nb = blank_run
    errors = errors_of(nb)
    assert errors and {ename for _, ename, _ in errors} == {"Unfinished"}, errors
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                assert len(o.traceback) == 1 and "not implemented yet" in o.traceback[0]


def test_each_check_cell_of_the_blank_notebook_says_once_that_it_is_unfinished(blank_run):
    _, nb = blank_run
    for cell_id in check_cells(nb):
        text = outputs_of(nb, cell_id)
        assert text.count("not implemented yet") == 1 and "Traceback" not in text, text


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_opened_without_hw10kit_says_what_to_do(tmp_path, built_course, name):
    shutil.copy(built_course.release / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [first]
    run_in_kernel(nb, tmp_path)
    (error,) = [o for o in first.outputs if o.output_type == "error"]
    assert "hw10kit/ was not found next to this notebook" in error.evalue and "Colab" in error.evalue
