"""The solution notebook runs top to bottom in a real Jupyter kernel, the way a student
runs it (training shortened), with its public checks passing and its figures written."""
import re
import shutil

import nbformat
import pytest
from grading_helpers import REPO
from nbclient import NotebookClient

SHORTEN = {r"ITER_MAX = 10000": "ITER_MAX = 150", r"SEEDS = \[0, 1, 2\]": "SEEDS = [0, 1]"}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, built_course):
    folder = tmp_path_factory.mktemp("student") / "hw10"
    shutil.copytree(built_course.solutions, folder)
    shutil.copytree(REPO / "hw10kit", folder / "hw10kit", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "data").symlink_to(REPO / "data", target_is_directory=True)
    nb = nbformat.read(folder / "hw10_vae.ipynb", as_version=4)
    for cell in nb.cells:
        for pattern, repl in SHORTEN.items():
            cell.source = re.sub(pattern, repl, cell.source)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    return folder, nb


def outputs_of(nb, cell_id):
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_public_checks_pass_in_the_kernel(executed):
    _, nb = executed
    from hw10kit.checks import PUBLIC_CHECKS

    for cell_id, target in (("q2a-check", "sample_gaussian"), ("q2b-check", "negative_elbo_bound")):
        n = sum(c.target == target for c in PUBLIC_CHECKS)
        assert f"{target}: {n}/{n} public checks passed" in outputs_of(nb, cell_id)


def test_evaluation_prints_the_course_summary_and_the_iwae_bound(executed):
    _, nb = executed
    assert re.search(r"NELBO: [\d.]+\. KL: [\d.]+\. Rec: [\d.]+", outputs_of(nb, "evaluate"))
    assert "negative IWAE-100" in outputs_of(nb, "iwae")


def test_sample_grid_and_loss_curve_are_saved_as_png(executed):
    folder, _ = executed
    for name in ("vae_samples.png", "vae_loss.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"


def test_check_cells_print_their_report_without_echoing_a_bool(executed):
    _, nb = executed
    for cell_id in ("q2a-check", "q2b-check"):
        cell = next(c for c in nb.cells if c.get("id") == cell_id)
        assert not [o for o in cell.outputs if o.output_type == "execute_result"], cell_id


def run_in_kernel(nb, folder, allow_errors=True):
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def errors_of(nb):
    return [(c.get("id"), o.ename, o.evalue) for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


@pytest.fixture(scope="module")
def blank_run(tmp_path_factory, built_course):
    """The blank release run top to bottom (Run All), as a student first meets it."""
    folder = tmp_path_factory.mktemp("blank") / "hw10"
    shutil.copytree(built_course.release, folder)
    nb = nbformat.read(folder / "hw10_vae.ipynb", as_version=4)
    for cell in nb.cells:
        for pattern, repl in SHORTEN.items():
            cell.source = re.sub(pattern, repl, cell.source)
    return run_in_kernel(nb, folder)


def test_run_all_on_the_blank_notebook_fails_only_with_one_line_unfinished_messages(blank_run):
    errors = errors_of(blank_run)
    assert errors and {name for _, name, _ in errors} == {"Unfinished"}, errors
    for cell in blank_run.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                assert len(o.traceback) == 1 and "not implemented yet" in o.traceback[0]


def test_each_check_cell_of_the_blank_notebook_says_once_that_it_is_unfinished(blank_run):
    for cell_id in ("q2a-check", "q2b-check"):
        text = outputs_of(blank_run, cell_id)
        assert text.count("not implemented yet") == 1 and "Traceback" not in text, text


def test_the_notebook_opened_without_hw10kit_says_what_to_do(tmp_path, built_course):
    shutil.copy(built_course.release / "hw10_vae.ipynb", tmp_path / "hw10_vae.ipynb")
    nb = nbformat.read(tmp_path / "hw10_vae.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [first]
    run_in_kernel(nb, tmp_path)
    (error,) = [o for o in first.outputs if o.output_type == "error"]
    assert "hw10kit/ was not found next to this notebook" in error.evalue and "Colab" in error.evalue
