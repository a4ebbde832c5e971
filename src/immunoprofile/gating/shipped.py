"""Where the shipped gating data lie: the Gating-ML templates (``gating/``, the adaptive
ones in ``gating/adaptive/``) and the panel files (``gating/panels/``)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import TemplateError


@lru_cache(maxsize=1)
def template_dir() -> Path:
    """Folder holding the Gating-ML templates.

    The repository's ``gating/`` folder in a source checkout or editable install; the copy
    shipped inside the package (``immunoprofile/_templates``) in a built wheel. Looked up
    once per process (where the package lies does not change; a failure is not kept).
    """
    shipped = resources.files("immunoprofile") / "_templates"
    if shipped.is_dir():
        return Path(str(shipped))
    checkout = Path(__file__).resolve().parents[3] / "gating"
    if checkout.is_dir():
        return checkout
    raise TemplateError("gating templates not found: reinstall immunoprofile")


def adaptive_template_dir() -> Path:
    """Folder of the shipped adaptive templates (``gating/adaptive/``): the same gates at
    seed positions, each declaring how it is placed from a tube's events."""
    return template_dir() / "adaptive"
