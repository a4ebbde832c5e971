"""``read_fcs``: one FCS file's events, channels, markers and keywords — or a clear refusal.

FlowIO parses HEADER, TEXT and DATA and applies the standard's value conversions (gain,
log amplification, time step). Files that bend the standard are retried with FlowIO's own
options, and each retry that succeeds leaves a warning saying what was assumed:

- an end offset one byte past the DATA segment (common in Miltenyi and LMD files):
  ``ignore_offset_error``;
- HEADER and TEXT disagreeing on the DATA offsets: TEXT's offsets, then HEADER's, whichever
  gives exactly ``$TOT`` × ``$PAR`` values;
- a file holding several data sets: the first is read (``nextdata_offset=0``).

Anything else FlowIO cannot decode is refused with a one-line reason that names the file
(24-bit integer channels and unparsable ``$TIMESTEP`` values are among these for now).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import flowio
import numpy as np

from ..errors import FCSReadError, first_line

#: FlowIO options tried in turn, with what each assumes about the file.
_ATTEMPTS: tuple[tuple[dict, str | None], ...] = (
    ({}, None),
    ({"ignore_offset_error": True},
     "a DATA offset is off by one byte; read with the corrected offset"),
    ({"ignore_offset_discrepancy": True},
     "HEADER and TEXT give different DATA offsets; TEXT's were used"),
    ({"use_header_offsets": True},
     "HEADER and TEXT give different DATA offsets; HEADER's were used"),
    ({"ignore_offset_error": True, "ignore_offset_discrepancy": True},
     "DATA offsets are inconsistent; TEXT's, corrected by one byte, were used"),
)


@dataclass
class FCSData:
    """One FCS file, read.

    Attributes
    ----------
    path : Path
    version : str
        FCS version (``"2.0"``, ``"3.0"``, ``"3.1"``).
    events : numpy.ndarray
        float64, shape (events, channels): values as the standard defines them (gain and
        log amplification undone, time scaled by ``$TIMESTEP``).
    channels : list of str
        ``$PnN`` of each column.
    markers : list of str
        ``$PnS`` of each column ("" where absent).
    keywords : dict
        TEXT keywords as FlowIO gives them (lower case, without ``$``).
    warnings : list of str
        What was assumed to read a file that bends the standard.
    """

    path: Path
    version: str
    events: np.ndarray = field(repr=False)
    channels: list[str]
    markers: list[str]
    keywords: dict = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    @property
    def event_count(self) -> int:
        """Events in the file, events."""
        return int(self.events.shape[0])


def read_fcs(path: str | Path) -> FCSData:
    """Read an FCS 2.0/3.0/3.1 file, or refuse it with a one-line reason.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    FCSData

    Raises
    ------
    FCSReadError
        The file is missing, not FCS, truncated, or holds data FlowIO cannot decode; the
        message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FCSReadError(f"{path.name}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(10)
    if not head.startswith(b"FCS"):
        raise FCSReadError(f"{path.name}: not an FCS file (it does not start with 'FCS')")
    first_error: Exception | None = None
    for several_data_sets in (False, True):
        for options, note in _ATTEMPTS:
            if several_data_sets:
                options = {**options, "nextdata_offset": 0}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    flow = flowio.FlowData(str(path), **options)
                    events = np.asarray(flow.as_array(preprocess=True), dtype=np.float64)
            except Exception as exc:  # FlowIO raises many types for malformed files
                first_error = first_error or exc
                continue
            notes = [n for n in (note,) if n]
            if several_data_sets:
                notes.append("the file holds more than one data set; the first was read")
            return _checked(path, flow, events, notes)
        if not isinstance(first_error, flowio.exceptions.MultipleDataSetsError):
            break
    raise FCSReadError(f"{path.name}: {_reason(path, first_error)}")


def _checked(path: Path, flow, events: np.ndarray, notes: list[str]) -> FCSData:
    tot, par = int(flow.event_count), int(flow.channel_count)
    if events.shape != (tot, par):
        raise FCSReadError(f"{path.name}: DATA holds {events.shape[0]} events of "
                           f"{events.shape[1] if events.ndim == 2 else '?'} channels, but "
                           f"$TOT/$PAR say {tot} × {par}")
    channels, markers = [], []
    for number in range(1, par + 1):  # a channel without $PnN is still a column
        info = flow.channels.get(number) or flow.channels.get(str(number)) or {}
        channels.append(str(info.get("pnn") or f"P{number}"))
        markers.append(str(info.get("pns", "") or "").strip())
    if len(set(channels)) < len(channels):
        repeated = sorted({c for c in channels if channels.count(c) > 1})
        notes = [*notes, f"channel names repeat ({', '.join(repeated)}); columns are in "
                         "$Pn order"]
    return FCSData(path=path, version=str(flow.version), events=events, channels=channels,
                   markers=markers, keywords=dict(flow.text), warnings=notes)


def _reason(path: Path, exc: Exception | None) -> str:
    """A user's one-line reason for FlowIO's error."""
    text = first_line(exc) if exc is not None else "unreadable"
    size = path.stat().st_size
    if isinstance(exc, EOFError) or "greater than file size" in text:
        return f"truncated — the file ends before its DATA segment does ({size} bytes)"
    if "invalid literal for int" in text:
        return "damaged HEADER: its segment offsets are not numbers"
    if "cannot reshape array" in text:
        return ("its integer DATA layout cannot be decoded (channel widths such as 24-bit "
                "$PnB are not supported yet)")
    if "Timestep" in text:
        return "$TIMESTEP is not a number, so the time channel cannot be scaled"
    return f"cannot be read as FCS: {text}"
