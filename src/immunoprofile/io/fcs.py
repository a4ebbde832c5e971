"""Reading FCS tubes with FlowKit, and turning reader failures into clear errors.

FlowKit (through FlowIO) does the parsing: HEADER, TEXT, DATA, gain and log scaling. What
this module adds is the judgement a user needs: whether the bytes are FCS at all, whether
the file is complete, and which markers and scatter channels the tube carries.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import flowkit as fk

from ..errors import FCSReadError
from ..panels import marker_channels, scatter_channels

_FCS_VERSIONS = ("FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")


@dataclass
class Tube:
    """One FCS file, read and described.

    Attributes
    ----------
    path : Path
    sample : flowkit.Sample
        The events as FlowKit holds them (gain and log amplification undone).
    markers : dict
        ``{canonical marker: $PnN channel}`` found in ``$PnS``.
    scatter : dict
        ``{template scatter channel: $PnN channel}`` (``FSC-A``, ``FSC-H``, ``SSC-A``).
    event_count : int
        Events in the file, events.
    """

    path: Path
    sample: fk.Sample
    markers: dict[str, str]
    scatter: dict[str, str]
    event_count: int

    @property
    def has_spillover(self) -> bool:
        """Whether the file carries a spillover matrix (``$SPILLOVER`` or ``$SPILL``)."""
        meta = self.sample.metadata
        return "spillover" in meta or "spill" in meta


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(58)
    except OSError as exc:
        raise FCSReadError(f"{path.name}: cannot be opened ({exc.strerror})") from None
    if len(head) == 0:
        raise FCSReadError(f"{path.name}: empty file (0 bytes) — not an FCS file")
    version = head[:6].decode("ascii", errors="replace")
    if version not in _FCS_VERSIONS:
        shown = head[:12].decode("ascii", errors="replace").encode("unicode_escape").decode()
        raise FCSReadError(
            f"{path.name}: not an FCS file (it starts with {shown!r}, an FCS file starts "
            "with 'FCS2.0', 'FCS3.0' or 'FCS3.1')"
        )
    if len(head) < 58:
        raise FCSReadError(f"{path.name}: truncated — the file ends inside its FCS header "
                           f"({len(head)} bytes)")


def read_tube(path: str | Path) -> Tube:
    """Read one FCS 2.0/3.0/3.1 tube with FlowKit.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Tube

    Raises
    ------
    FCSReadError
        Not an FCS file, truncated, or malformed; the message names the file and the
        problem.
    """
    path = Path(path)
    _check_header(path)
    size = path.stat().st_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = fk.Sample(str(path), sample_id=path.name)
    except EOFError:
        raise FCSReadError(
            f"{path.name}: truncated — the file ends inside its TEXT segment ({size} bytes)"
        ) from None
    except Exception as exc:  # FlowIO raises many types for malformed files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "greater than file size" in reason:
            reason = f"truncated — the DATA segment runs past the end of the file ({size} bytes)"
        raise FCSReadError(f"{path.name}: cannot be read as FCS: {reason}") from None
    # FlowKit takes event_count from $TOT; the decoded matrix says what the DATA holds.
    decoded = int(sample.get_events(source="raw").shape[0])
    declared = str(sample.metadata.get("tot", "")).strip()
    if not declared.isdigit() or int(declared) != decoded:
        raise FCSReadError(
            f"{path.name}: its DATA segment decodes to {decoded} events but $TOT says "
            f"{declared or 'nothing'} — the file is damaged ($PAR, $DATATYPE or $PnB wrong) "
            "or truncated"
        )
    pns = [label or "" for label in sample.pns_labels]
    scatter = scatter_channels(sample.pnn_labels)
    _classify_scatter(sample, scatter.values())
    return Tube(
        path=path,
        sample=sample,
        markers=marker_channels(sample.pnn_labels, pns),
        scatter=scatter,
        event_count=decoded,
    )


def _classify_scatter(sample: fk.Sample, scatter_names) -> None:
    """Count scatter channels named without an ``FSC-``/``SSC-`` prefix as scatter.

    FlowIO recognises scatter only by those prefixes, so a Beckman Coulter ``FS INT`` is
    taken for a fluorescence channel and FlowKit's ``FCS`` compensation then fails: the
    spillover matrix does not name it. The scatter channels found by
    :func:`immunoprofile.panels.scatter_channels` are moved to ``scatter_indices``.
    """
    indices = {sample.pnn_labels.index(name) for name in scatter_names}
    moved = indices & set(sample.fluoro_indices)
    if moved:
        sample.fluoro_indices = [i for i in sample.fluoro_indices if i not in moved]
        sample.scatter_indices = sorted(set(sample.scatter_indices) | moved)
