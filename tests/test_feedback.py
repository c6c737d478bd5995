"""The summary at the top of results.json: the same situation reads the same way in
every problem."""
from __future__ import annotations

import re

import pytest
from grading_helpers import judge
from hw10kit import manifest


@pytest.fixture(scope="module")
def blank(tmp_path_factory, built_course):
    tmp = tmp_path_factory.mktemp("blank")
    return judge(built_course.release, tmp / "results.json")


@pytest.mark.parametrize("question", [q for p in manifest.PROBLEMS for q in p.questions],
                         ids=lambda q: q.target)
def test_an_unimplemented_function_reads_not_implemented_in_the_summary_of_every_problem(blank, question):
    line = next(l for l in blank["output"].splitlines() if l.startswith(f"{question.label} {question.target}:"))
    assert re.match(rf"{re.escape(question.label)} {question.target}: 0/{question.points:g}: "
                    rf"`{question.target}` is not implemented yet", line), line


def test_no_stochastic_note_is_added_to_a_check_that_did_not_run(blank):
    assert not [t for t in blank["tests"] if "stochastic check" in t["output"]]
    assert "hidden checks took" not in blank["output"]
