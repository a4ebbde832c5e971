import os

import pytest

from immunoprofile.io.atomic import atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "profiles.csv"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["profiles.csv"]


def test_failed_write_keeps_previous_results(tmp_path, monkeypatch):
    target = tmp_path / "profiles.csv"
    atomic_write_text(target, "results of the last run\n")

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "half a new tab")
    assert target.read_text() == "results of the last run\n"
    assert [p.name for p in tmp_path.iterdir()] == ["profiles.csv"]
