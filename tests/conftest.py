"""Shared fixtures: simulated tubes written to temporary folders, and ../shared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from immunoprofile.datasets.cohort import cohort_specs, write_cohort

REPO = Path(__file__).resolve().parents[1]

# Compiled programs of this test run go to a private folder, not the user's cache; the
# pytest-xdist workers of one run share the folder their controller made (the cache is
# built for concurrent processes: a file lock per build, atomic writes), so a kernel is
# compiled once per run, not once per worker.
if not (os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("IMMUNOPROFILE_TEST_CACHE")):
    os.environ["IMMUNOPROFILE_TEST_CACHE"] = tempfile.mkdtemp(prefix="immunoprofile-programs-")
os.environ["IMMUNOPROFILE_CACHE"] = os.environ["IMMUNOPROFILE_TEST_CACHE"]
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


#: The files that take longest (measured serially on the 2-core CI machine, 2026-12), run
#: first, so that with one file per worker (``--dist loadfile``) no long file starts last
#: and keeps one worker busy while the other is done. Order only; every test still runs.
LONGEST_FILES = ("test_engine.py", "test_workflow.py", "test_predict.py", "test_report.py",
                 "test_gatingml_compliance.py",
                 "test_adaptive_envelope.py", "test_aot.py", "test_engine_generated.py",
                 "test_accuracy.py", "test_fcs_fuzz.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _compiled_module_builds_stay_per_test():
    """A command run in-process (click's CliRunner) allows builds of compiled modules for
    the rest of the process (``_compile.aot.allow_builds``, as the command line does): put
    the setting back after each test, so that a later test in the same worker sees what a
    library caller gets."""
    from immunoprofile._compile import aot

    saved = dict(aot._BUILDS)
    yield
    aot._BUILDS.clear()
    aot._BUILDS.update(saved)
