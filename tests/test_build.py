"""``make release``: the build from master sources to release, solutions and autograder zip.

The build runs once per session into a temporary copy of the repository (see
``built_course`` in conftest.py); one behaviour per test.
"""
from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, run_release
from hw10kit import manifest
from pipeline.files import BuildError
from pipeline.autograder_zip import STUDENT_ONLY
from pipeline.layout import DATA_FOLDERS, GRADER_ONLY, Layout
from pipeline.release import check_masters

SOLUTION_SENTINEL = b"SOLUTION-SENTINEL-7f3a"
HIDDEN_SENTINEL = b"HIDDEN-TEST-SENTINEL-c41d"
NOTEBOOK = "hw10_vae.ipynb"
NOTEBOOKS = tuple(p.notebook for p in manifest.PROBLEMS)  # every notebook of the manifest
MNIST = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DEF_LINE = re.compile(r"^\s*(?:async\s+def|def|class)\s+\w+")


def files_under(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*") if p.is_file())


def hashes(root: Path) -> dict[str, str]:
    paths = files_under(root / "release") + files_under(root / "solutions")
    paths.append(root / "autograder" / "autograder.zip")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def first_def_line(source: str) -> str | None:
    return next((line.rstrip() for line in source.splitlines() if DEF_LINE.match(line)), None)


def solution_code_cells(nb) -> dict[str, str]:
    return {cell.id: cell.source for cell in nb.cells
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")}


def read_nb(path: Path):
    return nbformat.read(path, as_version=4)


# --------------------------------------------------------------------------- build


def test_release_builds(built_course):
    assert (built_course.release / NOTEBOOK).is_file()
    assert (built_course.solutions / NOTEBOOK).is_file()
    assert built_course.zip.is_file()


def test_release_prints_summary_with_zip_size(built_course):
    out = built_course.stdout
    assert "release/hw10" in out
    assert "solutions/hw10/" + NOTEBOOK in out
    assert re.search(r"autograder/autograder\.zip: \d+ entries, [\d,]+ bytes", out)


def test_release_build_is_fast(built_course):
    # typically ~2 s, nearly all of it importing nbgrader
    assert built_course.seconds < 60, built_course.stdout


def test_build_leaves_no_gradebook_or_log(built_course):
    assert not (built_course.root / "gradebook.db").exists()
    assert not (built_course.root / ".nbgrader.log").exists()


def test_second_build_is_byte_identical(built_course):
    before = hashes(built_course.root)
    proc, _ = run_release(built_course.root)
    assert proc.returncode == 0, proc.stderr
    assert hashes(built_course.root) == before


# --------------------------------------------------------------------------- release


def test_release_has_no_solution_sentinel(built_course):
    leaks = [str(p) for p in files_under(built_course.release) if SOLUTION_SENTINEL in p.read_bytes()]
    assert leaks == []


def test_release_has_no_hidden_test_sentinel(built_course):
    leaks = [str(p) for p in files_under(built_course.release) if HIDDEN_SENTINEL in p.read_bytes()]
    assert leaks == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_release_notebook_outputs_are_empty(built_course, notebook):
    nb = read_nb(built_course.release / notebook)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], cell.id
            assert cell.execution_count is None, cell.id


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_release_solution_cells_hold_stubs(built_course, notebook):
    nb = read_nb(built_course.release / notebook)
    cells = solution_code_cells(nb)
    assert cells
    for cell_id, source in cells.items():
        assert "raise NotImplementedError()" in source, cell_id


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_release_keeps_nbgrader_metadata(built_course, notebook):
    master = read_nb(REPO / "source" / "hw10" / notebook)
    release = read_nb(built_course.release / notebook)
    want = {c.id: c.metadata["nbgrader"]["grade_id"] for c in master.cells if "nbgrader" in c.metadata}
    got = {c.id: c.metadata["nbgrader"]["grade_id"] for c in release.cells if "nbgrader" in c.metadata}
    assert got == want
    graded = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert graded and all("checksum" in c.metadata["nbgrader"] for c in graded)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_release_keeps_cell_ids_and_order(built_course, notebook):
    master = read_nb(REPO / "source" / "hw10" / notebook)
    release = read_nb(built_course.release / notebook)
    assert [c.id for c in release.cells] == [c.id for c in master.cells]


def test_release_contains_hw10kit(built_course):
    kit = REPO / "hw10kit"
    want = sorted(str(p.relative_to(kit)) for p in files_under(kit)
                  if "__pycache__" not in p.parts and p.suffix != ".pyc"
                  and p.relative_to(kit).as_posix() not in GRADER_ONLY)
    got = sorted(str(p.relative_to(built_course.release / "hw10kit"))
                 for p in files_under(built_course.release / "hw10kit"))
    assert got == want
    for rel in want:
        assert (built_course.release / "hw10kit" / rel).read_bytes() == (kit / rel).read_bytes()


def test_release_contains_source_folder_files(built_course):
    source = REPO / "source" / "hw10"
    others = [p for p in files_under(source) if p.suffix != ".ipynb"
              and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    for path in others:
        rel = path.relative_to(source)
        assert (built_course.release / rel).read_bytes() == path.read_bytes(), rel


def test_release_contains_mnist_gz_only(built_course):
    raw = built_course.release / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(MNIST)
    for name in MNIST:
        assert (raw / name).read_bytes() == (REPO / "data" / "MNIST" / "raw" / name).read_bytes()


def test_release_data_readme_keeps_attribution(built_course):
    readme = built_course.release / "data" / "README.md"
    assert readme.read_bytes() == (REPO / "data" / "README.md").read_bytes()
    assert "LeCun" in readme.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- solutions


def test_solutions_keep_the_solution_code_but_not_the_build_sentinels(built_course):
    text = (built_course.solutions / NOTEBOOK).read_bytes()
    assert b"z = m + torch.sqrt(v) * eps" in text and b"SENTINEL" not in text


def test_solutions_drop_hidden_test_sentinel(built_course):
    leaks = [str(p) for p in files_under(built_course.solutions) if HIDDEN_SENTINEL in p.read_bytes()]
    assert leaks == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_solutions_drop_solution_and_hidden_test_markers(built_course, notebook):
    text = "\n".join(c.source for c in read_nb(built_course.solutions / notebook).cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_solutions_outputs_are_empty(built_course, notebook):
    for cell in read_nb(built_course.solutions / notebook).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_solution_cell_signatures_match_release(built_course, notebook):
    solution = solution_code_cells(read_nb(built_course.solutions / notebook))
    release = solution_code_cells(read_nb(built_course.release / notebook))
    assert set(release) == set(solution)
    compared = 0
    for cell_id, source in solution.items():
        want = first_def_line(source)
        if want is None:
            continue
        assert first_def_line(release[cell_id]) == want, cell_id
        compared += 1
    assert compared > 0


# --------------------------------------------------------------------------- autograder zip


def zip_infos(built_course) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(built_course.zip) as zf:
        return zf.infolist()


def test_zip_scripts_are_executable_at_root(built_course):
    modes = {i.filename: (i.external_attr >> 16) & 0o7777 for i in zip_infos(built_course)}
    assert modes["setup.sh"] == 0o755
    assert modes["run_autograder"] == 0o755
    assert modes["requirements-grader.txt"] == 0o644


def test_zip_holds_exactly_grader_kit_and_scripts(built_course):
    names = [i.filename for i in zip_infos(built_course)]
    want = ["requirements-grader.txt", "run_autograder", "setup.sh", "hw10grader/settings.json"]
    for package, top in (("hw10grader", REPO / "autograder" / "hw10grader"), ("hw10kit", REPO / "hw10kit")):
        want += [f"{package}/{p.relative_to(top).as_posix()}" for p in files_under(top)
                 if "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name != "settings.json"
                 and not (package == "hw10kit" and p.relative_to(top).as_posix().startswith(STUDENT_ONLY))]
    assert sorted(names) == sorted(set(want))


def test_release_ships_every_data_folder_whole(built_course):
    for folder in DATA_FOLDERS:
        want = sorted(p.relative_to(REPO / "data").as_posix() for p in files_under(REPO / "data" / folder))
        got = sorted(p.relative_to(built_course.release / "data").as_posix()
                     for p in files_under(built_course.release / "data" / folder))
        assert got == want and want


def test_zip_entries_are_sorted_and_timestamped_1980(built_course):
    infos = zip_infos(built_course)
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    assert all(stat.S_ISREG(i.external_attr >> 16) for i in infos)


# --------------------------------------------------------------------------- guards


def test_master_without_cell_ids_is_rejected(tmp_path):
    source = tmp_path / "source" / "hw10"
    source.mkdir(parents=True)
    raw = json.loads((REPO / "source" / "hw10" / NOTEBOOK).read_text(encoding="utf-8"))
    del raw["cells"][0]["id"]
    (source / NOTEBOOK).write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BuildError, match="has no 'id'"):
        check_masters(Layout.at(tmp_path))


@pytest.mark.parametrize("problem", manifest.PROBLEMS, ids=lambda p: p.key)
def test_every_release_notebook_agrees_with_the_manifest(built_course, problem):
    """Points in the headings and check cells, the check calls and the graded functions."""
    nb = json.loads((built_course.release / problem.notebook).read_text(encoding="utf-8"))
    assert manifest.notebook_problems(problem, nb, release=True) == []


@pytest.mark.parametrize("problem", manifest.PROBLEMS, ids=lambda p: p.key)
def test_every_master_notebook_agrees_with_the_manifest(problem):
    nb = json.loads((REPO / "source" / "hw10" / problem.notebook).read_text(encoding="utf-8"))
    assert manifest.notebook_problems(problem, nb) == []


def test_the_committed_release_solutions_and_zip_match_a_fresh_build(built_course):
    """release/, solutions/ and the zip in the repository are what `make release` makes
    from the sources now (run `make release` and commit after changing a source)."""
    for built, committed in ((built_course.release, REPO / "release" / "hw10"),
                             (built_course.solutions, REPO / "solutions" / "hw10")):
        names = lambda top: sorted(p.relative_to(top).as_posix() for p in files_under(top)  # noqa: E731
                                   if not p.name.endswith("-ubyte") and "executed" not in p.parts
                                   and "__pycache__" not in p.parts)
        assert names(built) == names(committed)
        stale = [n for n in names(built) if (built / n).read_bytes() != (committed / n).read_bytes()]
        assert stale == [], f"stale in {committed}: {stale[:5]}; run make release"
    assert built_course.zip.read_bytes() == (REPO / "autograder" / "autograder.zip").read_bytes()
