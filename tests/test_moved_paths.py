"""The old import paths of moved modules keep working for one release (src/immunoprofile/
_moved.py): each imports with a DeprecationWarning naming the new path, forwards the very
same objects, and ``from old.path import *`` still gives its names."""

from __future__ import annotations

import importlib
import sys

import pytest

from immunoprofile._moved import MOVED_MODULES


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_path_warns_and_forwards(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="the old name goes in the next release"):
        module = importlib.import_module(old)
    new = MOVED_MODULES[old]
    targets = [importlib.import_module(n) for n in ((new,) if isinstance(new, str) else new)]
    names = [n for t in targets for n in vars(t) if not n.startswith("_")]
    assert names and set(module.__all__) == set(names)
    for name in names:
        owner = next(t for t in targets if hasattr(t, name))
        assert getattr(module, name) is getattr(owner, name)
    assert not hasattr(module, "__file__")  # its own dunders are not the new module's


def test_old_names_of_moved_functions():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from immunoprofile.cohort_stats import table2, write_cohort_stats
        from immunoprofile.simulate import cohort_specs, envelope_cases, write_tube

        from immunoprofile.pipeline import gate_batch, load_tube_result
    from immunoprofile.datasets.cohort import cohort_specs as new_specs
    from immunoprofile.pipeline.batch import gate_batch as new_gate_batch

    assert cohort_specs is new_specs and gate_batch is new_gate_batch
    assert all(callable(f) for f in (table2, write_cohort_stats, load_tube_result,
                                     envelope_cases, write_tube))


def test_the_predict_namespace_does_not_warn():
    import warnings

    import immunoprofile.predict as predict

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert callable(predict.train) and callable(predict.load_model)
        assert "train" in predict.__all__ and "forwarding_getattr" not in predict.__all__
