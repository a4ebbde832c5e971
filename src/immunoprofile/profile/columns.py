"""The immune profile's columns, once: name, label, unit, the tube each is counted from,
its adult reference interval and its floor under a logarithm.

Every stage that names these values reads them here — the profile tables
(:mod:`.tables`), the study's tables and figures (:mod:`immunoprofile.study`), the TFR
classifier's features (:mod:`immunoprofile.predict`) and the report's reference intervals
(:mod:`immunoprofile.report.html`) — so a column renamed, added or re-labelled is changed
in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImmuneColumn:
    """One value of a patient's immune profile (a ``profiles.csv`` column).

    Attributes
    ----------
    name : str
        The column (``cd4_per_ul``).
    label : str
        How a report or figure names it (``CD4+ T cells``).
    unit : str
        ``cells/µL``, or ``""`` for the CD4/CD8 ratio.
    tube : str or None
        The tube whose population gives it (``nk``, ``cd4``, ``cd8``); None when it is
        computed from other columns (the ratio).
    reference_low, reference_high : float
        Adult reference interval, in ``unit`` (the report marks values outside it).
    log_floor : float
        Floor applied before a logarithm (the classifier's features), so that an empty
        gate gives a finite value: counts at 1 cell/µL, the ratio at 0.01.
    """

    name: str
    label: str
    unit: str
    tube: str | None
    reference_low: float
    reference_high: float
    log_floor: float


#: The study's immune profile, in the order every table and figure lists it.
IMMUNE_PROFILE: tuple[ImmuneColumn, ...] = (
    ImmuneColumn("nk_per_ul", "NK cells", "cells/µL", "nk", 90.0, 600.0, 1.0),
    ImmuneColumn("cd4_per_ul", "CD4+ T cells", "cells/µL", "cd4", 400.0, 1500.0, 1.0),
    ImmuneColumn("cd8_per_ul", "CD8+ T cells", "cells/µL", "cd8", 200.0, 900.0, 1.0),
    ImmuneColumn("cd4_cd8_ratio", "CD4/CD8 ratio", "", None, 1.0, 3.6, 0.01),
)

#: The profile's column names, in order.
IMMUNE_COLUMNS: list[str] = [c.name for c in IMMUNE_PROFILE]

#: Tube → the profile column its population gives (``{"nk": "nk_per_ul", …}``).
TUBE_COLUMNS: dict[str, str] = {c.tube: c.name for c in IMMUNE_PROFILE if c.tube}
