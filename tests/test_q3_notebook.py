"""The GAN master notebook as a student meets it (issue 29, item 9): the demo models the
stable form, the figures match the benchmark, and it follows the VAE notebook's style."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "source" / "hw10" / "hw10_gan.ipynb"


@pytest.fixture(scope="module")
def cells():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return {c["id"]: "".join(c["source"]) for c in nb["cells"]}


def test_the_demo_of_the_minimax_gradient_uses_the_stable_form(cells):
    demo = cells["q3a-demo"]
    assert "torch.log1p(-torch.sigmoid" not in demo and "torch.log(1 - torch.sigmoid" not in demo
    assert "F.logsigmoid(-logits)" in demo


def test_the_real_digit_score_quoted_is_the_benchmarked_one(cells):
    floor = json.loads((ROOT / "bench" / "gan.json").read_text())["floor"]["is_real_test"]
    quoted = {float(x) for x in re.findall(r"real digits score (\d+\.\d+)", "\n".join(cells.values()))}
    assert quoted and all(abs(q - floor) < 0.05 for q in quoted), (quoted, floor)


def test_the_first_cell_has_the_parts_and_points_table(cells):
    title = cells["title"]
    assert "| Part | What | Graded by |" in title
    for part, points in (("3(a)", "3 pts"), ("3(b)", "5 pts"), ("3(c)", "3 + 2 + 2 pts"), ("3(d)", "3 pts")):
        row = next(line for line in title.splitlines() if line.startswith(f"| {part} "))
        assert points in row, row


def test_it_says_public_checks_are_necessary_but_not_sufficient(cells):
    assert "necessary but not sufficient" in cells["how-to-work"]


def test_iter_max_says_how_long_it_takes(cells):
    line = next(line for line in cells["train"].splitlines() if line.startswith("ITER_MAX"))
    assert "min" in line and "1000" in line


def test_the_written_answers_report_the_students_own_numbers(cells):
    assert "your written answers must report your own numbers" in cells["end"]


def test_the_training_section_leaves_implementation_detail_to_the_code_and_readme(cells):
    text = cells["train-md"]
    assert "channels-last" not in text and "channels_last" not in text
    assert "Step order" not in text and "retain_graph" not in text
