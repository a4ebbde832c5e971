"""Reading FCS tubes, and turning reader failures into clear errors.

FlowIO parses HEADER and TEXT and the DATA segment is memory-mapped
(:mod:`immunoprofile.io.events`); a FlowKit ``Sample`` of the same file is built only when
the FlowKit engine asks for one. What this module adds is the judgement a user needs:
whether the bytes are FCS at all, whether the file is complete, and which markers and
scatter channels the tube carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FCSReadError, first_line
from .channels import marker_channels, scatter_channels
from .events import EventData, quiet_flowio, read_events

if TYPE_CHECKING:  # FlowKit is imported only when a FlowKit Sample is asked for
    import flowkit as fk

_FCS_VERSIONS = ("FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")

#: TEXT keyword (value ``TRUE``) that immunoprofile's simulator writes into every file it
#: makes, so that results counted from such a file say they are SIMULATED.
SIMULATED_KEYWORD = "IMMUNOPROFILE_SIMULATED"


@dataclass
class Tube:
    """One FCS file, read and described.

    Attributes
    ----------
    path : Path
    events : EventData
        The events as the compiled engine reads them (memory-mapped).
    markers : dict
        ``{canonical marker: $PnN channel}`` found in ``$PnS``.
    scatter : dict
        ``{template scatter channel: $PnN channel}`` (``FSC-A``, ``FSC-H``, ``SSC-A``).
    event_count : int
        Events in the file, events.
    """

    path: Path
    events: EventData
    markers: dict[str, str]
    scatter: dict[str, str]
    event_count: int
    _sample: fk.Sample | None = field(default=None, repr=False)

    @property
    def metadata(self) -> dict:
        """TEXT keywords (lower case, without ``$``)."""
        return self.events.text

    @property
    def has_spillover(self) -> bool:
        """Whether the file carries a spillover matrix (``$SPILLOVER`` or ``$SPILL``)."""
        return "spillover" in self.metadata or "spill" in self.metadata

    @property
    def simulated(self) -> bool:
        """Whether immunoprofile's simulator wrote the file (:data:`SIMULATED_KEYWORD`)."""
        return str(self.metadata.get(SIMULATED_KEYWORD.lower(), "")).upper() == "TRUE"

    @property
    def sample(self) -> fk.Sample:
        """The tube as a FlowKit ``Sample`` (gain and log amplification undone), built on
        first use: only the FlowKit engine needs it."""
        if self._sample is None:
            import flowkit as fk

            try:
                with quiet_flowio():
                    sample = fk.Sample(str(self.path), sample_id=self.path.name)
            except Exception as exc:  # read_tube has vetted the file
                raise FCSReadError(f"{self.path.name}: FlowKit cannot read it: "
                                   f"{first_line(exc)}") from None
            # the same scatter reclassification as read_tube made for the engine
            moved = set(sample.fluoro_indices) - set(self.events.fluoro_indices)
            sample.fluoro_indices = [i for i in sample.fluoro_indices if i not in moved]
            sample.scatter_indices = sorted(set(sample.scatter_indices) | moved)
            self._sample = sample
        return self._sample


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
    """Read one FCS 2.0/3.0/3.1 tube.

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
    events = read_events(path)
    pns = [label or "" for label in events.pns]
    scatter = scatter_channels(events.pnn)
    _classify_scatter(events, scatter.values())
    return Tube(
        path=path,
        events=events,
        markers=marker_channels(events.pnn, pns),
        scatter=scatter,
        event_count=events.event_count,
    )


def _classify_scatter(events: EventData, scatter_names) -> None:
    """Count scatter channels named without an ``FSC-``/``SSC-`` prefix as scatter.

    FlowIO recognises scatter only by those prefixes, so a Beckman Coulter ``FS INT`` is
    taken for a fluorescence channel and ``FCS`` compensation then fails: the spillover
    matrix does not name it. The scatter channels found by
    :func:`immunoprofile.io.channels.scatter_channels` are removed from ``fluoro_indices``.
    """
    indices = {events.pnn.index(name) for name in scatter_names}
    events.fluoro_indices = [i for i in events.fluoro_indices if i not in indices]
