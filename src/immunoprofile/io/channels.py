"""What a file's channels carry: canonical markers from ``$PnS``, scatter from ``$PnN``.

Marker text from real cytometers varies (``CD3 FITC``, ``CD16+56 PE``, ``CD56/16``,
``CD45 PerCP-Cy5.5``, ``anti-CD4``), so each ``$PnS`` is reduced to canonical marker names;
scatter channels are recognised by their ``$PnN`` names. This is the vocabulary of reading
a file (:mod:`.fcs` fills :class:`~.fcs.Tube` with it); which markers make which panel is
:mod:`immunoprofile.gating.panels`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: Canonical name of the NK-cell marker cocktail (CD16 and/or CD56 in one colour).
NK_MARKER = "CD16/56"

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
