"""Finding the student's notebook in what they uploaded, and unpacking it safely."""
import zipfile

import pytest
from hw10grader import submission


def make_tree(root, names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    return root


@pytest.mark.parametrize("name", ["hw10_vae (1).ipynb", "Copy of hw10_vae.ipynb", "hw10_vae(2).ipynb"])
def test_browser_and_colab_renames_are_found(tmp_path, name):
    found = submission.find_notebook(make_tree(tmp_path, [name]), "hw10_vae.ipynb", "vae")
    assert found.path.name == name


def test_exact_name_wins_over_renamed_copies(tmp_path):
    make_tree(tmp_path, ["hw10_vae (1).ipynb", "sub/hw10_vae.ipynb"])
    found = submission.find_notebook(tmp_path, "hw10_vae.ipynb", "vae")
    assert found.path.relative_to(tmp_path).as_posix() == "sub/hw10_vae.ipynb"
    assert "also found and ignored: hw10_vae (1).ipynb" in found.note


def test_debris_is_ignored(tmp_path):
    make_tree(tmp_path, ["__MACOSX/._hw10_vae.ipynb", "._hw10_vae.ipynb",
                         ".ipynb_checkpoints/hw10_vae-checkpoint.ipynb"])
    assert submission.find_notebook(tmp_path, "hw10_vae.ipynb", "vae").path is None


def test_the_only_notebook_with_the_keyword_is_used_when_renamed_freely(tmp_path):
    make_tree(tmp_path, ["My VAE homework.ipynb", "notes.ipynb"])
    found = submission.find_notebook(tmp_path, "hw10_vae.ipynb", "vae")
    assert found.path.name == "My VAE homework.ipynb" and "no file is named" in found.note


def test_missing_notebook_lists_what_was_found(tmp_path):
    found = submission.find_notebook(make_tree(tmp_path, ["hw9.ipynb"]), "hw10_vae.ipynb", "vae")
    assert found.path is None and "hw9.ipynb" in found.note


def test_zip_with_path_escapes_and_links_extracts_only_safe_entries(tmp_path):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../escape.txt", "x")
        zf.writestr("/abs.txt", "x")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("ok/hw10_vae.ipynb", "{}")
    dest = tmp_path / "out"
    dest.mkdir()
    submission.unpack_zip(z, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["ok/hw10_vae.ipynb"]
    assert not (tmp_path / "escape.txt").exists()


def test_zip_bomb_is_refused_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "MAX_BYTES", 1000)
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.ipynb", "0" * 100_000)
    with pytest.raises(submission.SubmissionError, match="unpacks to more than"):
        submission.unpack_zip(z, tmp_path)


def test_too_many_entries_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "MAX_ENTRIES", 3)
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(5):
            zf.writestr(f"f{i}", "")
    with pytest.raises(submission.SubmissionError, match="entries"):
        submission.unpack_zip(z, tmp_path)


def test_a_folder_holding_only_a_zip_is_unpacked(tmp_path):
    inner = tmp_path / "sub"
    inner.mkdir()
    with zipfile.ZipFile(inner / "hw.zip", "w") as zf:
        zf.writestr("hw10/hw10_vae.ipynb", "{}")
    root = submission.prepare(inner, tmp_path / "work")
    assert submission.find_notebook(root, "hw10_vae.ipynb", "vae").path is not None


def test_a_file_that_is_not_a_zip_is_refused_clearly(tmp_path):
    bad = tmp_path / "s.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(submission.SubmissionError):
        submission.unpack_zip(bad, tmp_path)


def test_an_entry_that_cannot_be_extracted_is_skipped_and_the_rest_is_graded(tmp_path):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a", "file")
        zf.writestr("a/b.ipynb", "{}")       # a folder where a file already is
        zf.writestr("x" * 300 + ".txt", "")  # a name too long for the file system
        zf.writestr("hw10/hw10_vae.ipynb", "{}")
    dest = tmp_path / "out"
    dest.mkdir()
    notes = submission.unpack_zip(z, dest)
    assert len(notes) == 2 and all(n.startswith("skipped") for n in notes)
    assert (dest / "hw10" / "hw10_vae.ipynb").exists()


def test_a_notebook_several_folders_deep_is_found(tmp_path):
    make_tree(tmp_path, ["a/b/c/d/e/f/g/hw10_vae.ipynb"])
    assert submission.find_notebook(tmp_path, "hw10_vae.ipynb", "vae").path is not None


def test_feedback_names_the_notebook_without_internal_folders(tmp_path):
    sub = tmp_path / "submission"
    sub.mkdir()
    with zipfile.ZipFile(sub / "hw10.zip", "w") as zf:
        zf.writestr("hw10_vae.ipynb", "{}")
    root = submission.prepare(sub, tmp_path / "work")
    note = submission.find_notebook(root, "hw10_vae.ipynb", "vae").note
    assert note == "graded hw10.zip/hw10_vae.ipynb"


def test_a_notebook_at_the_top_is_named_by_its_file_name_alone(tmp_path):
    (tmp_path / "hw10_vae.ipynb").write_text("{}")
    assert submission.find_notebook(tmp_path, "hw10_vae.ipynb", "vae").note == "graded hw10_vae.ipynb"
