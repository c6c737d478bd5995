"""How a student's answer is read out of a notebook (shared by the grader and
experiment.py): definitions kept, work skipped, IPython syntax understood."""
import json

import nbformat
import pytest
from hw10kit import notebook


def answer_of(*cells, tags=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    if tags:
        for i, t in tags.items():
            nb.cells[i].metadata["tags"] = t
    return notebook.read_answer(json.loads(nbformat.writes(nb)))


def run(*cells, **kw):
    ns = {}
    failures = notebook.exec_chunks(answer_of(*cells, **kw).chunks, ns)
    assert not failures, failures
    return ns


def test_imports_functions_classes_and_constants_are_kept():
    ns = run("import math\nfrom os import path as p", "def f(x):\n    return x + 1",
             "class A:\n    k = 3", "SCALE = 2.5\nNAMES = ['a', 'b']")
    assert {"math", "p", "f", "A", "SCALE", "NAMES"} <= set(ns)


def test_calls_loops_and_prints_are_skipped():
    ns = run("x = 1\nprint('hi')\nfor i in range(10**12):\n    pass\nwhile True:\n    pass\ny = 2")
    assert ns["x"] == 1 and ns["y"] == 2


def test_an_assignment_that_calls_the_students_own_code_runs_tentatively():
    (chunk,) = answer_of("def make():\n    return 3\nK = make()").chunks
    assert chunk.tentative == [3]
    ns = {}
    assert notebook.exec_chunks([chunk], ns) == [] and ns["K"] == 3


def test_a_tentative_statement_that_fails_costs_only_its_own_name():
    ns = {}
    failures = notebook.exec_chunks(answer_of("def train():\n    raise SystemExit('trained!')",
                                              "model = train()\nAFTER = 1").chunks, ns)
    assert [(f.cell, f.line, f.tentative) for f in failures] == [(2, 1, True)]
    assert "model" not in ns and ns["AFTER"] == 1


def test_a_slow_tentative_statement_is_stopped_and_later_statements_still_run():
    import time
    ns = {}
    started = time.monotonic()
    failures = notebook.exec_chunks(answer_of("import time\ndef train():\n    while True:\n        pass",
                                              "model = train()\nAFTER = 1").chunks, ns, tentative_s=0.5)
    assert time.monotonic() - started < 5
    assert isinstance(failures[0].error, notebook.StatementTimeout) and ns["AFTER"] == 1


def test_tentative_statements_share_one_time_budget():
    cells = ["def slow():\n    while True:\n        pass"] + [f"X{i} = slow()" for i in range(5)]
    failures = notebook.exec_chunks(answer_of(*cells).chunks, {}, tentative_s=0.3, tentative_total_s=0.5)
    assert len(failures) == 5 and "skipped" in str(failures[-1].error)


def test_a_module_level_object_built_from_an_imported_class_is_kept():
    (chunk,) = answer_of("from torch.distributions import Normal\nSTD_NORMAL = Normal(0.0, 1.0)").chunks
    assert chunk.tentative == []
    ns = {}
    notebook.exec_chunks([chunk], ns)
    assert float(ns["STD_NORMAL"].scale) == 1.0


def test_a_failing_import_costs_only_the_names_it_would_define():
    ns = {}
    failures = notebook.exec_chunks(answer_of("import numpy as np\nimport not_a_module as plt\n"
                                              "import math\ndef f():\n    return math.pi").chunks, ns)
    assert [(f.line, type(f.error).__name__) for f in failures] == [(2, "ModuleNotFoundError")]
    assert "not_a_module" in str(failures[0].error)
    assert {"np", "math", "f"} <= set(ns) and "plt" not in ns


@pytest.mark.parametrize("char", ["\u2028", "\u0085", "\x0c"], ids=["U+2028", "U+0085", "form-feed"])
def test_characters_that_splitlines_treats_as_line_breaks_do_not_break_a_cell(char):
    ns = run(f"# a comment{char}with a break\nX = 'a{char}b'\ndef f():\n    return 2  # ok{char}\n")
    assert ns["f"]() == 2 and ns["X"] == f"a{char}b"


def test_a_long_line_ending_in_a_question_mark_is_refused_quickly():
    import time
    started = time.monotonic()
    ans = answer_of("x = " + "a." * 8000 + "a?", "def f():\n    return 1")
    assert time.monotonic() - started < 2
    assert [c.cell for c in ans.chunks] == [2] and "help request" in ans.problems[0][1]


def test_an_absurdly_long_line_is_refused_with_a_reason():
    ans = answer_of("X = " + "1 + " * 10000 + "1")
    assert ans.chunks == [] and "characters" in ans.problems[0][1]


def test_device_selection_is_kept():
    ns = run("import torch\nif torch.cuda.is_available():\n    device = torch.device('cuda')\n"
             "else:\n    device = torch.device('cpu')")
    assert str(ns["device"]) in ("cpu", "cuda")


def test_line_and_shell_magics_are_understood_and_skipped():
    ns = run("%matplotlib inline\n!pip install nothing\nimport math\nx = math.pi")
    assert "x" in ns


def test_time_cell_magic_body_is_read():
    ns = run("%%time\ndef f():\n    return 4")
    assert ns["f"]() == 4


def test_non_python_cell_magic_is_skipped():
    assert answer_of("%%bash\nrm -rf /").chunks == []


def test_cells_tagged_training_are_skipped():
    ns = run("def f():\n    return 1", "def f():\n    return 2", tags={1: ["training"]})
    assert ns["f"]() == 1


def test_nbgrader_check_cells_are_skipped():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from somewhere_hidden import run_hidden")]
    nb.cells[0].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True}
    assert notebook.read_answer(json.loads(nbformat.writes(nb))).chunks == []


def test_try_and_if_blocks_keep_only_definitions():
    ns = run("try:\n    import numpy as np\n    print('x')\nexcept ImportError:\n    np = None")
    assert ns["np"] is not None


def test_later_definitions_override_earlier_ones():
    assert run("def f():\n    return 1", "def f():\n    return 2")["f"]() == 2


def test_kept_code_keeps_the_students_line_numbers():
    (chunk,) = answer_of("print(1)\nprint(2)\ndef f():\n    raise ValueError('x')").chunks
    ns = {}
    notebook.exec_chunks([chunk], ns)
    with pytest.raises(ValueError) as info:
        ns["f"]()
    tb = info.value.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename == "<code cell 1>" and tb.tb_lineno == 4


def test_syntax_error_is_reported_with_its_cell_and_other_cells_still_read():
    ans = answer_of("def ok():\n    return 1", "def bad(:\n    pass")
    assert [c.cell for c in ans.chunks] == [1]
    assert ans.problems and "cell 2" in ans.problems[0][1]


def test_a_cell_that_raises_does_not_stop_later_cells():
    failures = notebook.exec_chunks(answer_of("import not_a_real_module", "def f():\n    return 1").chunks,
                                    ns := {})
    assert failures[0].cell == 1 and ns["f"]() == 1


def test_invalid_json_gets_a_student_friendly_error():
    with pytest.raises(notebook.NotebookError, match="not valid JSON"):
        notebook.load(b'{"cells": [')


def test_json_without_cells_is_not_a_notebook():
    with pytest.raises(notebook.NotebookError, match="not a Jupyter notebook"):
        notebook.load(b'{"hello": 1}')


def test_statements_sharing_a_line_are_filtered_one_by_one():
    ns = run("import math; print('side effect'); K = 3")
    assert ns["K"] == 3 and "math" in ns


def test_a_function_defined_as_a_lambda_is_kept():
    ns = run("sample = lambda m, v: m + v.sqrt() * torch.randn_like(m)\nimport torch")
    assert callable(ns["sample"])


def test_constants_built_by_torch_calls_are_kept():
    ns = run("import torch\nHALF = torch.tensor(0.5).float()\n"
             "std_normal = torch.distributions.Normal(0., 1.)\ngen = torch.Generator().manual_seed(0)")
    assert float(ns["HALF"]) == 0.5 and "std_normal" in ns and "gen" in ns


def test_definitions_inside_a_with_block_are_kept_and_work_inside_is_not():
    ns = run("import torch\nwith torch.no_grad():\n    def f():\n        return 3\n    print('work')")
    assert ns["f"]() == 3


def test_elif_on_a_torch_query_keeps_the_else_branch():
    ns = run("import torch\nif torch.cuda.is_available():\n    device = 'cuda'\n"
             "elif torch.backends.mps.is_built():\n    device = 'mps'\nelse:\n    device = 'cpu'")
    assert ns["device"] in ("cuda", "mps", "cpu")


def test_shared_lines_are_filtered_inside_blocks_too():
    ns = run("import time; import os\ntry:\n    while True: pass\nexcept Exception: pass\nK = 1")
    assert ns["K"] == 1


def test_a_cell_with_too_many_shell_lines_is_skipped_with_a_reason():
    ans = answer_of("\n".join(f"!echo {i}" for i in range(notebook.MAX_MAGIC_LINES + 1)), "X = 1")
    assert [c.cell for c in ans.chunks] == [2]
    assert "magic or shell lines" in ans.problems[0][1]


def test_an_nbformat_3_notebook_is_read():
    nb3 = {"nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code", "input": "def f():\n    return 5"}]}]}
    ans = notebook.read_answer(notebook.load(json.dumps(nb3).encode()))
    ns = {}
    notebook.exec_chunks(ans.chunks, ns)
    assert ns["f"]() == 5


def test_a_utf16_notebook_is_read():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("ANSWER = 'é'")]
    raw = nbformat.writes(nb).encode("utf-16")
    assert notebook.read_answer(notebook.load(raw)).chunks


def test_deeply_nested_json_is_not_a_notebook():
    with pytest.raises(notebook.NotebookError, match="nested too deeply"):
        notebook.load(b"[" * 100000 + b"]" * 100000)


def test_dropped_statements_are_recorded_with_their_line():
    (chunk,) = answer_of("import torch\nfor epoch in range(10):\n    model = step()").chunks
    assert chunk.dropped == [{"line": 2, "text": "for epoch in range(10):", "names": ["epoch", "model"]}]


def test_cells_are_numbered_among_code_cells_and_labelled_by_first_line_and_heading():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## (a) Sampling"), nbformat.v4.new_code_cell("import os"),
                nbformat.v4.new_markdown_cell("text"), nbformat.v4.new_code_cell("def f():\n    return 1")]
    chunks = notebook.read_answer(json.loads(nbformat.writes(nb))).chunks
    assert [c.cell for c in chunks] == [1, 2]
    assert chunks[1].label == 'code cell 2 (`def f():`) under "(a) Sampling"'
