"""The README's commands for the TFR model and the study's statistics run as written, on
the shipped (SIMULATED) sample data and example cohort."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _readme_commands(section: str) -> list[str]:
    """The ``immunoprofile …`` lines of the bash blocks in one README section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```bash\n(.*?)```", text[start:end if end > 0 else None], re.S)
    return [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()
            if line.startswith("immunoprofile ")]


@pytest.mark.slow
def test_readme_tfr_and_cohort_commands_run_as_written(tmp_path):
    for folder in ("sample_data", "examples"):
        (tmp_path / folder).symlink_to(REPO / folder)
    commands = _readme_commands("TFR risk and the study's statistics")
    names = [c.split()[1] for c in commands]
    assert {"gate", "predict", "train", "cohort-stats"} <= set(names), commands
    for command in commands:
        args = shlex.split(command)[1:]
        result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", *args],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert (tmp_path / "my_model.json").is_file() and (tmp_path / "predictions.csv").is_file()
    assert (tmp_path / "stats" / "table2.csv").is_file()
