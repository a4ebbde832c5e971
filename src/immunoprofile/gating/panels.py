"""Which panel a tube is: recognised from its markers among the run's panels.

A tube is identified by the markers in its ``$PnS`` keywords, not by its file name: each
``$PnS`` is first reduced to canonical marker names (:mod:`immunoprofile.io.channels`,
where a file's channels are read), then matched against the panels: the shipped ones
(``gating/panels/``, read by :mod:`.panel_files`) and a lab's own (``--panels``). What a
panel is lives in :mod:`.panel_spec`; its names are imported here too, where they were
first defined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import PanelError
from ..io.channels import NK_MARKER as NK_MARKER
from ..io.channels import SCATTER_ALIASES as SCATTER_ALIASES

# SCATTER_ALIASES and the three functions moved to io.channels (where a file's channels
# are read); imported here so that their old path works for one release.
from ..io.channels import marker_channels as marker_channels
from ..io.channels import markers_in_label as markers_in_label
from ..io.channels import scatter_channels as scatter_channels
from .panel_files import default_panels as default_panels
from .panel_spec import BEAD_GATE as BEAD_GATE
from .panel_spec import CD3_GATE as CD3_GATE
from .panel_spec import DEFAULT_SCATTER as DEFAULT_SCATTER
from .panel_spec import LYMPHOCYTE_GATE as LYMPHOCYTE_GATE
from .panel_spec import Panel as Panel
from .panel_spec import PanelSet as PanelSet
from .panel_spec import within_gate as within_gate


def __getattr__(name: str):
    # PANELS is read from gating/panels/ when first used, not when this module is imported
    if name == "PANELS":
        return default_panels()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect_panel(markers: Iterable[str], *, expected: str | None = None, source: str = "",
                 panels: Mapping[str, Panel] | None = None) -> Panel:
    """Identify a tube's panel from the markers it carries.

    Parameters
    ----------
    markers : iterable of str
        Canonical markers found in the file (see :func:`markers_in_label`).
    expected : str, optional
        The tube named in the manifest (``nk``, ``cd4``, ``cd8``); when given the file must
        carry that panel's markers.
    source : str
        File name used in error messages.
    panels : mapping, optional
        The tubes to choose from (a :class:`PanelSet`); the shipped panels when None.

    Returns
    -------
    Panel

    Raises
    ------
    PanelError
        The markers form no known panel, several (none of which holds the others' markers:
        a tube with CD3, CD4, CD8 and CD45 is the 4-colour TBNK tube, not the study's CD4
        or CD8 tube), or not the one the manifest names. The message lists the markers
        found and what is missing.
    """
    known = panels if panels is not None else default_panels()
    found = set(markers)
    found_text = ", ".join(sorted(found)) or "none"
    prefix = f"{source}: " if source else ""
    if expected:
        key = expected.strip().lower()
        if key not in known:
            raise PanelError(
                f"{prefix}unknown tube {expected!r} in the manifest — use one of "
                f"{', '.join(known)} or leave it blank to detect it from the markers"
            )
        panel = known[key]
        missing = [m for m in panel.markers if m not in found]
        if missing:
            raise PanelError(
                f"{prefix}no {', '.join(missing)} channel (markers found: {found_text}) — "
                f"the manifest says this is the {panel.description} tube"
            )
        return panel
    complete = [p for p in known.values() if set(p.markers) <= found]
    # The panel whose markers hold every other complete panel's is the one: a six-colour
    # TBNK tube carries the markers of the study's CD4 tube too, but is not that tube.
    widest = [p for p in complete if all(set(q.markers) <= set(p.markers) for q in complete)]
    if len(widest) == 1:
        return widest[0]
    if len(complete) > 1:
        names = " and ".join(p.description for p in complete)
        raise PanelError(
            f"{prefix}markers fit several panels ({names}; found: {found_text}) — "
            "name the tube in the manifest's 'tube' column"
        )
    # Nearest panel: one with a marker of its own present (one that not every tube
    # carries: CD16/56, CD4 or CD8 of the study's tubes) and at least half of its markers;
    # the one with most markers present, then the largest share of its markers.
    common = set.intersection(*(set(p.markers) for p in known.values())) if known else set()
    near = [(len(found & set(p.markers)), len(found & set(p.markers)) / len(p.markers), -i, p)
            for i, p in enumerate(known.values())
            if any(m in found and m not in common for m in p.markers)]
    near = [n for n in near if n[1] >= 0.5]
    if near:
        panel = max(near, key=lambda n: n[:3])[3]
        missing = [m for m in panel.markers if m not in found]
        raise PanelError(
            f"{prefix}no {', '.join(missing)} channel (markers found: {found_text}) — "
            f"is this a {panel.description} tube?"
        )
    tubes = "; ".join(p.description for p in known.values())
    raise PanelError(
        f"{prefix}unknown panel (markers found: {found_text}) — immunoprofile reads the "
        f"tubes {tubes}"
    )
