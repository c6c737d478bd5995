"""The grader's settings: one table, read from the environment, documented in docs/grading.md."""
import pytest
from conftest import REPO
from hw10grader import settings


def test_every_setting_is_documented_in_the_settings_table_of_docs_grading():
    text = (REPO / "docs" / "grading.md").read_text()
    table = text[text.index("## Settings"):]
    assert [name for name in settings.TABLE if f"| `{name}` |" not in table] == []


def test_a_setting_reads_the_environment_when_asked(monkeypatch):
    monkeypatch.setenv("HW10_PARALLEL", "3")
    assert settings.value("HW10_PARALLEL") == 3
    monkeypatch.delenv("HW10_PARALLEL")
    assert settings.value("HW10_PARALLEL") is None


def test_an_unparsable_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("HW10_BUDGET_S", "ten")
    with pytest.raises(settings.SettingError, match="HW10_BUDGET_S='ten'"):
        settings.value("HW10_BUDGET_S")


def test_the_build_and_the_judge_share_one_list_of_visibilities():
    from pipeline.autograder_zip import grader_settings

    assert grader_settings().HIDDEN_VISIBILITIES == settings.HIDDEN_VISIBILITIES
