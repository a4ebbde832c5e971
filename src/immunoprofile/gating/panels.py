"""Tube panels and marker recognition.

A tube is identified by the markers in its ``$PnS`` keywords, not by its file name. Marker
text from real cytometers varies (``CD3 FITC``, ``CD16+56 PE``, ``CD56/16``,
``CD45 PerCP-Cy5.5``, ``anti-CD4``), so each ``$PnS`` is reduced to canonical marker names
first. Scatter channels are recognised by their ``$PnN`` names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import PanelError

#: Canonical name of the NK-cell marker cocktail (CD16 and/or CD56 in one colour).
NK_MARKER = "CD16/56"

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

#: Scatter channels the templates use, with the ``$PnN`` spellings other instruments use.
SCATTER_ALIASES: dict[str, tuple[str, ...]] = {
    "FSC-A": ("fsc-a", "fs-a", "fsc", "fs int", "fs area", "fsc area", "fs lin"),
    "FSC-H": ("fsc-h", "fs-h", "fs peak", "fsc peak", "fsc height", "fs height"),
    "SSC-A": ("ssc-a", "ss-a", "ssc", "ss int", "ss area", "ssc area", "ss lin"),
}

_CD_RE = re.compile(r"cd\s*(\d+)([a-z]*)((?:\s*[+/]\s*(?:cd)?\s*\d+)*)", re.IGNORECASE)
_EXTRA_RE = re.compile(r"[+/]\s*(?:cd)?\s*(\d+)", re.IGNORECASE)
# Letters after a CD number that name another marker (CD45RA is not CD45); any other letters
# are a fluorochrome glued on ("CD3FITC") or a chain name ("CD8a") and are ignored.
_VARIANT_SUFFIXES = {"ra", "rb", "rc", "ro"}


def markers_in_label(label: str | None) -> list[str]:
    """Canonical markers named by one ``$PnS`` label.

    Parameters
    ----------
    label : str or None
        The marker text of a channel, e.g. ``"CD16+56 PE"`` or ``"CD45 PerCP-Cy5.5"``.

    Returns
    -------
    list of str
        Canonical marker names, e.g. ``["CD16/56"]`` or ``["CD45"]``; empty when the label
        names no CD marker. Variants such as ``CD45RA`` keep their suffix and are not
        mistaken for the parent marker.
    """
    if not label:
        return []
    found: list[str] = []
    for match in _CD_RE.finditer(label):
        number, suffix, extra = match.group(1), match.group(2).lower(), match.group(3)
        numbers = [number] + _EXTRA_RE.findall(extra or "")
        if suffix in _VARIANT_SUFFIXES:
            found.append(f"CD{number}{suffix.upper()}")
            continue
        if set(numbers) & {"16", "56"}:
            found.append(NK_MARKER)
            numbers = [n for n in numbers if n not in {"16", "56"}]
        found.extend(f"CD{n}" for n in numbers)
    return list(dict.fromkeys(found))


def marker_channels(pnn: Sequence[str], pns: Sequence[str | None]) -> dict[str, str]:
    """Map each canonical marker to the ``$PnN`` channel that carries it.

    Parameters
    ----------
    pnn, pns : sequence of str
        Channel names and marker labels, one per channel, in file order.

    Returns
    -------
    dict
        ``{marker: channel name}``; a marker found on several channels keeps the first.
    """
    mapping: dict[str, str] = {}
    for name, label in zip(pnn, pns, strict=True):
        for marker in markers_in_label(label):
            mapping.setdefault(marker, name)
    return mapping


def scatter_channels(pnn: Iterable[str]) -> dict[str, str]:
    """Map the templates' scatter channels (``FSC-A``, ``FSC-H``, ``SSC-A``) to the file's.

    Parameters
    ----------
    pnn : iterable of str
        The file's ``$PnN`` channel names.

    Returns
    -------
    dict
        ``{template channel: file channel}`` for those found.
    """
    names = list(pnn)
    lowered = {n.strip().lower(): n for n in names}
    mapping: dict[str, str] = {}
    for template_name, aliases in SCATTER_ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                mapping[template_name] = lowered[alias]
                break
    return mapping


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
