"""The code that fetches ``hw10kit/`` and ``data/`` into a notebook's folder when they are
missing (Colab, or a notebook downloaded on its own): its one home.

Every master notebook's setup cell (nbgrader grade id ``setup``) holds :data:`MARKER`, the
line ``import hw10kit  # ...``, where it first needs the kit. The build
(:class:`pipeline.preprocessors.InjectKitFetch`, in ``nbgrader_config.py``'s
GenerateAssignment preprocessors and in the solutions' preprocessors) replaces that line
with :data:`TEMPLATE`, which uses only the standard library (nothing else is there before
the kit is):

* the kit is importable: nothing happens;
* no URL was set at build time: it raises ``ModuleNotFoundError`` saying what to upload;
* ``make release RELEASE_URL=https://.../hw10_kit.zip``: it downloads that file with
  urllib, refuses it unless its sha256 is the one the build embedded, unpacks it into the
  working directory (the notebook's folder in Jupyter, ``/content`` on Colab), refusing a
  member that would land outside it, puts that folder first on ``sys.path`` and goes on;
  a failed download says what to upload, as above.

The file to host is the one the same build writes, ``release/hw10_kit.zip``
(:func:`write_kit_zip`): the student folder ``release/hw10`` without its notebooks
(``hw10kit/``, ``data/``, ``experiment.py``), built reproducibly. It cannot hold the
notebooks, since they carry its hash; and it should not: a student's notebook lives in
Colab's Drive, not beside the kit, and a blank copy unpacked there would be mistaken for
theirs. Any change to the kit or the data changes the hash, so upload the file again after
every build with a URL.
"""
from __future__ import annotations

import hashlib
import string
from pathlib import Path
from urllib.parse import urlparse

from .files import BuildError, iter_files
from .layout import Layout

#: The line of a master's setup cell that the build replaces with the fetch code.
MARKER = "import hw10kit  # make release puts the fetch code of pipeline/colab_setup.py here"

#: The fetch code (``$url``, ``$sha256``: Python literals, ``None`` when no URL was set).
TEMPLATE = string.Template('''\
import importlib.util
if importlib.util.find_spec("hw10kit") is None:  # no hw10kit/ beside this notebook (Colab, say)
    import hashlib, io, pathlib, sys, urllib.request, zipfile
    # where the course staff put hw10kit/ and data/ (zipped), and that file's sha256
    KIT_URL = $url
    KIT_SHA256 = $sha256
    HELP = ("hw10kit/ was not found next to this notebook. Keep the homework folder together: "
            "this notebook, hw10kit/ and data/ side by side, and open the notebook from there. "
            "On Colab, upload the whole hw10/ folder (or its zip, then unzip it) and run "
            "%cd hw10 before this cell.")
    if not KIT_URL:
        raise ModuleNotFoundError(HELP)
    print(f"hw10kit/ is missing: downloading it and data/ from {KIT_URL}")
    try:
        payload = urllib.request.urlopen(KIT_URL, timeout=60).read()
    except Exception as error:
        raise ModuleNotFoundError(f"The download failed ({error}). {HELP}") from None
    if hashlib.sha256(payload).hexdigest() != KIT_SHA256:
        raise ModuleNotFoundError(f"{KIT_URL} is not the file this notebook was built for (its "
                                  f"sha256 differs), so it was not unpacked. {HELP}")
    here = pathlib.Path.cwd().resolve()  # this notebook's folder (on Colab, /content)
    archive = zipfile.ZipFile(io.BytesIO(payload))
    if any(not (here / name).resolve().is_relative_to(here) for name in archive.namelist()):
        raise ModuleNotFoundError(f"{KIT_URL} holds paths outside {here}. Nothing was unpacked.")
    archive.extractall(here)
    sys.path.insert(0, str(here))
    importlib.invalidate_caches()
    print(f"hw10kit/ and data/ are now in {here}")''')

#: The file the build writes beside the student folder when a URL is set.
KIT_ZIP_NAME = "hw10_kit.zip"


def render(url: str | None = None, sha256: str | None = None) -> str:
    """The fetch code for ``url`` and ``sha256`` (both None: it only says what to upload)."""
    if (url is None) != (sha256 is None):
        raise ValueError("the fetch code needs both the URL and the sha256 of its file, or neither")
    return TEMPLATE.substitute(url=repr(url), sha256=repr(sha256))


def expand(source: str, url: str | None = None, sha256: str | None = None) -> str:
    """``source`` (a setup cell) with its :data:`MARKER` line replaced by the fetch code.
    Raises ValueError unless the marker is there exactly once."""
    lines = source.split("\n")
    found = [i for i, line in enumerate(lines) if line.strip() == MARKER]
    if len(found) != 1:
        raise ValueError(f"the setup cell must hold the line {MARKER!r} exactly once "
                         f"(where it first imports hw10kit); it holds it {len(found)} times")
    (i,) = found
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    block = [indent + line if line else line for line in render(url, sha256).split("\n")]
    return "\n".join(lines[:i] + block + lines[i + 1:])


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL ending in a file name, else a BuildError."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path.endswith("/"):
        raise BuildError(f"RELEASE_URL must be the http(s) address of the file {KIT_ZIP_NAME} "
                         f"(e.g. https://example.edu/eecs182/{KIT_ZIP_NAME}), not {url!r}")
    return url


def kit_zip_path(layout: Layout) -> Path:
    return layout.release.parent / KIT_ZIP_NAME


def kit_entries(layout: Layout) -> list[tuple[str, Path]]:
    """``(name in zip, file)``: the built student folder without its notebooks."""
    return [(f.relative_to(layout.release).as_posix(), f) for f in iter_files(layout.release)
            if f.suffix != ".ipynb"]


def write_kit_zip(layout: Layout) -> str:
    """Write ``release/hw10_kit.zip`` (reproducibly, see :mod:`pipeline.autograder_zip`)
    from the built student folder; return its sha256."""
    from .autograder_zip import write_zip

    entries = kit_entries(layout)
    if not any(name.startswith("hw10kit/") for name, _ in entries):
        raise BuildError(f"{layout.release} holds no hw10kit/ to zip")
    path = write_zip(kit_zip_path(layout), [(name, f.read_bytes()) for name, f in entries])
    return hashlib.sha256(path.read_bytes()).hexdigest()
