"""The old import paths of modules moved when the package was layered, for one release.

``import immunoprofile.stats`` (now :mod:`immunoprofile.study.statistics`) and the like keep
working, with a :class:`DeprecationWarning` naming the new path; the next release drops
them. Each old path is a small module that forwards every attribute to the new one (not
the new module itself under a second name: the import system would rewrite that module's
``__spec__``). Nothing inside the package imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module path → where it lives now (the first of these that has a name gives it).
MOVED_MODULES: dict[str, str | tuple[str, ...]] = {
    "immunoprofile.panels": "immunoprofile.gating.panels",
    "immunoprofile.cohort": "immunoprofile.study.cohort",
    "immunoprofile.cohort_stats": ("immunoprofile.study.cohort_stats",
                                   "immunoprofile.report.cohort_stats_files"),
    "immunoprofile.cohort_reference": "immunoprofile.study.reference_cohort",
    "immunoprofile.stats": "immunoprofile.study.statistics",
    "immunoprofile.cohort_figures": "immunoprofile.report.cohort_figures",
    "immunoprofile.simulate": ("immunoprofile.datasets.simulate",
                               "immunoprofile.datasets.tube_files",
                               "immunoprofile.datasets.cohort",
                               "immunoprofile.datasets.envelope"),
    "immunoprofile.gating.evaluation": "immunoprofile.datasets.evaluation",
    "immunoprofile.engine.compiler": ("immunoprofile.engine.program",
                                      "immunoprofile.engine.lower",
                                      "immunoprofile.engine.bind",
                                      "immunoprofile.engine.pack"),
}


class _MovedModuleFinder:
    """Finds an old path (after every other finder has not) and forwards it: a meta path
    finder and its loader (the protocol, not ``importlib.abc``, whose import costs 40 ms
    of every command's start-up)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # a plain new module

    def exec_module(self, module: ModuleType) -> None:
        moved = MOVED_MODULES[module.__name__]
        names = (moved,) if isinstance(moved, str) else moved
        warnings.warn(f"{module.__name__} is now {' and '.join(names)}; the old name goes in "
                      "the next release", DeprecationWarning, stacklevel=2)
        targets = [importlib.import_module(name) for name in names]

        def forward(name: str):
            if not name.startswith("__"):  # its own __file__, __path__… are not forwarded
                for target in targets:
                    if hasattr(target, name):
                        return getattr(target, name)
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        module.__dict__["__getattr__"] = forward
        module.__dict__["__dir__"] = lambda: sorted({n for t in targets for n in dir(t)})
        module.__dict__["__all__"] = public_names(targets)  # ``from old.path import *``
        module.__doc__ = f"Moved: see {' and '.join(names)}."


def public_names(modules) -> list[str]:
    """What ``from module import *`` gives of each module (its ``__all__``, else its names
    without a leading underscore), in order, once each."""
    names: dict[str, None] = {}
    for module in modules:
        listed = getattr(module, "__all__", None)
        names.update(dict.fromkeys(listed if listed is not None else
                                   [n for n in vars(module) if not n.startswith("_")]))
    return list(names)


def forwarding_getattr(package: str, modules: tuple[str, ...], *, deprecated: bool = False):
    """A package's ``__getattr__`` (PEP 562) that finds a name in the first of its
    ``modules`` that has it, importing each only when asked: the package then offers the
    names of a module it replaced (``immunoprofile.pipeline.gate_batch``, with
    ``deprecated``: a :class:`DeprecationWarning` naming the module to import from) or the
    public names of its modules in one namespace (``immunoprofile.predict.train``).
    ``__all__`` lists them all (``from package import *``)."""

    def __getattr__(name: str):
        if name == "__all__":
            return public_names(importlib.import_module(f"{package}.{m}") for m in modules)
        if not name.startswith("__"):
            for module in modules:
                found = importlib.import_module(f"{package}.{module}")
                if hasattr(found, name):
                    if deprecated:
                        warnings.warn(f"{package}.{name} is now {package}.{module}.{name}; "
                                      "the old name goes in the next release",
                                      DeprecationWarning, stacklevel=2)
                    return getattr(found, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def install_moved_module_aliases() -> None:
    """Let the old paths of :data:`MOVED_MODULES` be imported (once per process)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
