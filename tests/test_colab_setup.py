"""Colab: the setup cell's fetch code (``pipeline/colab_setup.py``) and the build that embeds it.

The fetch code runs in a fresh interpreter, in an empty folder, against a real HTTP server on
loopback (``server``); nothing leaves the machine. ``url_course`` is one build with
``RELEASE_URL`` set, pointing at that server.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import compute_checksum

from conftest import REPO, copy_inputs, run_release
from pipeline import colab_setup
from pipeline.autograder_zip import write_zip
from pipeline.files import BuildError
from pipeline.layout import GRADER_ONLY, Layout
from pipeline.release import load_config, publish_kit

#: A minimal setup cell: the marker, then what the notebook does with the kit.
CELL = colab_setup.MARKER + "\nimport hw10kit\nprint('imported', hw10kit.__file__)"
#: A tiny kit, enough to tell whether it was fetched.
KIT = {"hw10kit/__init__.py": b"FETCHED = True\n", "data/README.md": b"data\n"}


@dataclass
class Server:
    root: Path
    url: str
    requests: list = field(default_factory=list)

    def publish(self, name: str, entries: dict) -> tuple[str, str]:
        """Serve a zip of ``entries`` as ``name``; return its URL and sha256."""
        path = write_zip(self.root / name, list(entries.items()))
        return f"{self.url}/{name}", sha256_of(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A static file server on 127.0.0.1 (a free port) that records the paths asked for."""
    root = tmp_path_factory.mktemp("www")
    requests: list = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # every request, answered or not
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    httpd.shutdown()
    httpd.server_close()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cell(source: str, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    """Run a cell's code in a fresh interpreter in ``cwd`` (whose folder is on sys.path, as
    in a kernel); hw10kit is importable only through ``pythonpath``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-c", source], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def setup_cell(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
    return cell.source


# --------------------------------------------------------------------------- the fetch code


def test_missing_kit_is_downloaded_checked_and_unpacked(server, tmp_path):
    url, sha256 = server.publish("kit.zip", KIT)
    proc = run_cell(colab_setup.expand(CELL, url, sha256), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"imported {tmp_path.resolve() / 'hw10kit' / '__init__.py'}" in proc.stdout
    assert (tmp_path / "data" / "README.md").read_bytes() == KIT["data/README.md"]
    assert "/kit.zip" in server.requests


def test_kit_with_another_sha256_is_refused(server, tmp_path):
    url, _ = server.publish("kit.zip", KIT)
    proc = run_cell(colab_setup.expand(CELL, url, "0" * 64), tmp_path)
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr and "sha256 differs" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_url_the_cell_says_what_to_upload(tmp_path):
    proc = run_cell(colab_setup.expand(CELL), tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: hw10kit/ was not found"), proc.stderr
    assert "upload the whole hw10/ folder" in last


def test_failed_download_says_what_to_upload(server, tmp_path):
    url = f"{server.url}/no-such-kit.zip"
    proc = run_cell(colab_setup.expand(CELL, url, "0" * 64), tmp_path)
    assert proc.returncode != 0
    assert "The download failed" in proc.stderr and "upload the whole hw10/ folder" in proc.stderr
    assert "/no-such-kit.zip" in server.requests


def test_zip_member_outside_the_folder_is_refused(server, tmp_path):
    url, sha256 = server.publish("slip.zip", {**KIT, "../escaped.py": b"x = 1\n"})
    work = tmp_path / "work"
    proc = run_cell(colab_setup.expand(CELL, url, sha256), work)
    assert proc.returncode != 0
    assert "holds paths outside" in proc.stderr and "Nothing was unpacked" in proc.stderr
    assert not (tmp_path / "escaped.py").exists() and list(work.iterdir()) == []


def test_importable_kit_fetches_nothing(server, tmp_path):
    url, sha256 = server.publish("kit.zip", KIT)
    before = len(server.requests)
    proc = run_cell(colab_setup.expand(CELL, url, sha256), tmp_path, pythonpath=str(REPO))
    assert proc.returncode == 0, proc.stderr
    assert f"imported {REPO / 'hw10kit' / '__init__.py'}" in proc.stdout
    assert len(server.requests) == before and list(tmp_path.iterdir()) == []


def test_the_marker_must_be_in_the_setup_cell_exactly_once():
    for source in ("import hw10kit", f"{colab_setup.MARKER}\n{colab_setup.MARKER}"):
        with pytest.raises(ValueError, match="exactly once"):
            colab_setup.expand(source)


def test_release_url_must_be_the_http_address_of_a_file():
    for url in ("ftp://example.edu/hw10_kit.zip", "https://example.edu/eecs182/", "hw10_kit.zip"):
        with pytest.raises(BuildError, match="RELEASE_URL"):
            colab_setup.check_url(url)


# --------------------------------------------------------------------------- the build


@pytest.fixture(scope="module")
def url_course(server, tmp_path_factory) -> Path:
    """The course built with ``RELEASE_URL`` pointing at ``server``, which serves the
    ``hw10_kit.zip`` that build wrote."""
    root = copy_inputs(tmp_path_factory.mktemp("url-course"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEASE_URL", f"{server.url}/course/{colab_setup.KIT_ZIP_NAME}")
        proc, _ = run_release(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kit = root / "release" / colab_setup.KIT_ZIP_NAME
    (server.root / "course").mkdir()
    shutil.copyfile(kit, server.root / "course" / kit.name)
    return root


def test_every_setup_cell_holds_the_url_and_sha256_of_the_kit_zip(url_course, server):
    url = f"{server.url}/course/{colab_setup.KIT_ZIP_NAME}"
    sha256 = sha256_of(url_course / "release" / colab_setup.KIT_ZIP_NAME)
    notebooks = sorted((url_course / "release" / "hw10").glob("*.ipynb"))
    notebooks += sorted((url_course / "solutions" / "hw10").glob("*.ipynb"))
    assert len(notebooks) == 2 * len(list((REPO / "source" / "hw10").glob("*.ipynb")))
    for path in notebooks:
        source = setup_cell(path)
        assert f"KIT_URL = {url!r}" in source and f"KIT_SHA256 = {sha256!r}" in source, path
        assert colab_setup.MARKER not in source, path


def test_release_checksums_still_validate_with_a_url(url_course):
    for path in sorted((url_course / "release" / "hw10").glob("*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells
                 if "checksum" in c.metadata.get("nbgrader", {})]
        assert cells, path
        for cell in cells:
            assert compute_checksum(cell) == cell.metadata.nbgrader.checksum, (path.name, cell.id)


def test_kit_zip_holds_the_student_folder_without_notebooks(url_course):
    release = url_course / "release" / "hw10"
    names = zipfile.ZipFile(release.parent / colab_setup.KIT_ZIP_NAME).namelist()
    want = sorted(p.relative_to(release).as_posix() for p in release.rglob("*")
                  if p.is_file() and p.suffix != ".ipynb")
    assert sorted(names) == want
    assert {n.split("/")[0] for n in names} == {"hw10kit", "data", "experiment.py"}
    assert not any(n.endswith(".ipynb") for n in names)
    assert not any(n == f"hw10kit/{g}" for n in names for g in GRADER_ONLY)


def test_kit_zip_is_reproducible(url_course, tmp_path):
    release = url_course / "release" / "hw10"
    copy = tmp_path / "release" / "hw10"
    shutil.copytree(release, copy, copy_function=shutil.copyfile)  # new times and modes
    sha256 = colab_setup.write_kit_zip(Layout.at(tmp_path))
    assert sha256 == sha256_of(release.parent / colab_setup.KIT_ZIP_NAME)


def test_released_setup_cell_fetches_the_built_kit(url_course, tmp_path):
    source = setup_cell(url_course / "release" / "hw10" / "hw10_diffusion.ipynb")
    proc = run_cell(source + "\nfrom hw10kit import data\nprint('data at', data.find_root())", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"data at {tmp_path.resolve() / 'data'}" in proc.stdout
    assert (tmp_path / "hw10kit" / "checks").is_dir()


def test_build_without_url_only_says_what_to_upload(built_course):
    assert not (built_course.root / "release" / colab_setup.KIT_ZIP_NAME).exists()
    for path in sorted(built_course.release.glob("*.ipynb")):
        source = setup_cell(path)
        assert "KIT_URL = None" in source and colab_setup.MARKER not in source, path


def test_build_without_url_removes_a_stale_kit_zip(tmp_path):
    layout = Layout.at(tmp_path)
    stale = colab_setup.kit_zip_path(layout)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    assert publish_kit(layout, load_config(layout), None) is None
    assert not stale.exists()
