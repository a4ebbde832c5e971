"""Shared fixtures: simulated tubes written to temporary folders, and ../shared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from immunoprofile.simulate import cohort_specs, write_cohort

REPO = Path(__file__).resolve().parents[1]

# Compiled programs of this test run go to a private folder, not the user's cache.
os.environ["IMMUNOPROFILE_CACHE"] = tempfile.mkdtemp(prefix="immunoprofile-programs-")
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: tests using ../shared run only in a checkout with the "
                    "shared data beside it (as in CI)")
    return path


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """Two simulated patients × three tubes (10k events each) with manifest.csv."""
    folder = tmp_path_factory.mktemp("small_cohort")
    write_cohort(folder, cohort_specs()[:2], events=10_000, seed=7)
    return folder
