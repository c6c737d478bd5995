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
    assert "sample_gaussian: 3/3 public checks passed" in outputs_of(nb, "q2a-check")
    assert "negative_elbo_bound: 2/2 public checks passed" in outputs_of(nb, "q2b-check")


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
