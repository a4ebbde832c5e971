"""Tube panels and marker recognition.

A tube is identified by the markers in its ``$PnS`` keywords, not by its file name: each
``$PnS`` is first reduced to canonical marker names (:mod:`immunoprofile.io.channels`,
where a file's channels are read), then matched against the panels here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import PanelError

# SCATTER_ALIASES and the three functions moved to io.channels (where a file's channels
# are read); imported here so that their old path works for one release.
from ..io.channels import NK_MARKER
from ..io.channels import SCATTER_ALIASES as SCATTER_ALIASES
from ..io.channels import marker_channels as marker_channels
from ..io.channels import markers_in_label as markers_in_label
from ..io.channels import scatter_channels as scatter_channels

#: Gate IDs the counts are made from, in every tube's template (see ``gating/README.md``):
#: bead events, lymphocyte events (the denominator of every percentage and the dual-platform
#: count) and CD3+ T cells.
BEAD_GATE = "Beads"
LYMPHOCYTE_GATE = "Lymphocytes"
CD3_GATE = "CD3pos"


def within_gate(gate_id: str, parents: Mapping[str, str | None],
                ancestor: str = LYMPHOCYTE_GATE) -> bool:
    """Whether a gate is ``ancestor`` or lies within it.

    Parameters
    ----------
    gate_id : str
    parents : mapping
        ``{gate ID: parent gate ID or None}`` of a template; a parent not in it, or a
        cycle of parents, ends the walk.
    ancestor : str
        The lymphocyte gate by default.

    Examples
    --------
    >>> within_gate("CD4pos", {"Lymphocytes": None, "CD3pos": "Lymphocytes",
    ...                        "CD4pos": "CD3pos"})
    True
    """
    seen: set[str] = set()
    node: str | None = gate_id
    while node is not None and node != ancestor and node not in seen:
        seen.add(node)
        node = parents.get(node)
    return node == ancestor


@dataclass(frozen=True)
class Panel:
    """One tube of the immune profile.

    Attributes
    ----------
    tube : str
        Short name used in manifests and outputs (``nk``, ``cd4``, ``cd8``).
    markers : tuple of str
        Canonical markers the tube must carry.
    population : str
        Gate ID of the population this tube is for (``NK``, ``CD4pos``, ``CD8pos``).
    """

    tube: str
    markers: tuple[str, ...]
    population: str

    @property
    def gate_ids(self) -> tuple[str, ...]:
        """Gate IDs the tube's template must define: the tables read each of them."""
        return (BEAD_GATE, LYMPHOCYTE_GATE, CD3_GATE, self.population)

    @property
    def within_lymphocytes(self) -> tuple[str, ...]:
        """Gate IDs that must lie within the lymphocyte gate (absolute counts and % of
        lymphocytes are given only for the gates there)."""
        return (CD3_GATE, self.population)

    @property
    def description(self) -> str:
        """Markers joined as a lab writes a panel, e.g. ``CD3/CD8/CD45``."""
        return "/".join(self.markers)


PANELS: dict[str, Panel] = {
    "nk": Panel("nk", ("CD3", NK_MARKER, "CD45"), "NK"),
    "cd4": Panel("cd4", ("CD3", "CD4", "CD45"), "CD4pos"),
    "cd8": Panel("cd8", ("CD3", "CD8", "CD45"), "CD8pos"),
}



def detect_panel(markers: Iterable[str], *, expected: str | None = None, source: str = "") -> Panel:
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

    Returns
    -------
    Panel

    Raises
    ------
    PanelError
        The markers form no known panel, several, or not the one the manifest names. The
        message lists the markers found and what is missing.
    """
    found = set(markers)
    found_text = ", ".join(sorted(found)) or "none"
    prefix = f"{source}: " if source else ""
    if expected:
        key = expected.strip().lower()
        if key not in PANELS:
            raise PanelError(
                f"{prefix}unknown tube {expected!r} in the manifest — use one of "
                f"{', '.join(PANELS)} or leave it blank to detect it from the markers"
            )
        panel = PANELS[key]
        missing = [m for m in panel.markers if m not in found]
        if missing:
            raise PanelError(
                f"{prefix}no {', '.join(missing)} channel (markers found: {found_text}) — "
                f"the manifest says this is the {panel.description} tube"
            )
        return panel
    complete = [p for p in PANELS.values() if set(p.markers) <= found]
    if len(complete) == 1:
        return complete[0]
    if len(complete) > 1:
        names = " and ".join(p.description for p in complete)
        raise PanelError(
            f"{prefix}markers fit several panels ({names}; found: {found_text}) — "
            "name the tube in the manifest's 'tube' column"
        )
    # Nearest panel: the one whose tube-specific marker is present.
    for panel in PANELS.values():
        specific = panel.markers[1]
        if specific in found:
            missing = [m for m in panel.markers if m not in found]
            raise PanelError(
                f"{prefix}no {', '.join(missing)} channel (markers found: {found_text}) — "
                f"is this a {panel.description} tube?"
            )
    known = "; ".join(p.description for p in PANELS.values())
    raise PanelError(
        f"{prefix}unknown panel (markers found: {found_text}) — immunoprofile reads the "
        f"tubes {known}"
    )
