"""``read_fcs``: one FCS file's events, channels, markers and keywords — or a clear refusal.

FlowIO parses HEADER, TEXT and DATA and applies the standard's value conversions (gain,
log amplification, time step). Files that bend the standard are retried with FlowIO's own
options, and each retry that succeeds leaves a warning saying what was assumed:

- an end offset one byte past the DATA segment (common in Miltenyi and LMD files):
  ``ignore_offset_error``;
- HEADER and TEXT disagreeing on the DATA offsets: TEXT's offsets, then HEADER's, whichever
  gives exactly ``$TOT`` × ``$PAR`` values;
- a file holding several data sets: the first is read (``nextdata_offset=0``);
- HEADER DATA offsets left blank (files over 100 MB): TEXT's ``$BEGINDATA``/``$ENDDATA``.

What FlowIO cannot decode at all — 24-bit integer channels, a ``$TIMESTEP`` that is not a
number, offsets its options do not cover — is decoded here from FlowIO's TEXT (see
``_read_with_own_decoder``), with a warning. Anything else is refused with a one-line
reason that names the file.
"""

from __future__ import annotations

import io
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


def _flowio_options():
    """FlowIO options to try in turn: each of :data:`_ATTEMPTS`, then each again for the
    first of several data sets. Yields (options, what it assumes, several data sets)."""
    for several_data_sets in (False, True):
        for options, note in _ATTEMPTS:
            if several_data_sets:
                options = {**options, "nextdata_offset": 0}
            yield options, note, several_data_sets


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
        head = handle.read(58)
    if not head.startswith(b"FCS"):
        raise FCSReadError(f"{path.name}: not an FCS file (it does not start with 'FCS')")
    patched: bytes | None = None
    blank_offsets = _blank_data_offsets(head)
    if blank_offsets:
        # Files over 100 MB cannot write DATA offsets in the 8-digit HEADER fields; the
        # standard then has them 0 and gives $BEGINDATA/$ENDDATA in TEXT. Some writers
        # leave the fields blank, which FlowIO cannot parse: hand it the bytes with zeros.
        fixed = bytearray(path.read_bytes())
        fixed[26:42] = b"       0       0"
        patched = bytes(fixed)
    first_error: Exception | None = None
    for options, note, several_data_sets in _flowio_options():
        if several_data_sets and not isinstance(first_error,
                                                flowio.exceptions.MultipleDataSetsError):
            break  # a single data set: the nextdata retries cannot help
        # FlowIO closes a handle it is given: a fresh one for every attempt.
        source = str(path) if patched is None else io.BytesIO(patched)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flow = flowio.FlowData(source, **options)
                events = np.asarray(flow.as_array(preprocess=True), dtype=np.float64)
        except Exception as exc:  # FlowIO raises many types for malformed files
            first_error = first_error or exc
            continue
        notes = [n for n in (note,) if n]
        if blank_offsets:
            notes = ["HEADER leaves the DATA offsets blank (as for files over 100 MB); "
                     "TEXT's $BEGINDATA/$ENDDATA were used"]
        if several_data_sets:
            notes.append("the file holds more than one data set; the first was read")
        return _checked(path, flow, events, notes)
    try:
        decoded = _read_with_own_decoder(path)
    except (ValueError, OverflowError, ZeroDivisionError, KeyError):
        decoded = None  # keywords too broken to decode by: refused below, with FlowIO's
    if decoded is not None:
        return decoded
    raise FCSReadError(f"{path.name}: {_reason(path, first_error)}")


# --- beyond FlowIO ------------------------------------------------------------------------
# FlowIO 1.4 cannot decode integer channels whose width is not 8/16/32/64 bits (24-bit
# Cytek and FlowJo-collector files), fails on a $TIMESTEP that is not a number, and on
# files whose HEADER and TEXT disagree about DATA in a way its options do not cover. For
# those, FlowIO still parses HEADER and TEXT (only_text); DATA is then decoded here with
# numpy, exactly as the standard describes it, and the values converted as FlowIO would.

def _read_with_own_decoder(path: Path) -> FCSData | None:
    flow, notes = None, []
    for options, _, several_data_sets in _flowio_options():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flow = flowio.FlowData(str(path), only_text=True, **options)
        except Exception:  # FlowIO raises many types for malformed files
            continue
        if several_data_sets:
            notes.append("the file holds more than one data set; the first was read")
        break
    if flow is None:
        return None
    text = {str(k).lower(): str(v) for k, v in flow.text.items()}
    _refuse_mixed_datatypes(path, text)
    try:
        tot, par = int(text["tot"]), int(text["par"])
        widths = [int(text[f"p{n}b"]) for n in range(1, par + 1)]
    except (KeyError, ValueError):
        return None
    datatype = text.get("datatype", "").upper()
    order = {"1,2,3,4": "little", "1,2": "little", "4,3,2,1": "big", "2,1": "big"}.get(
        text.get("byteord", "").replace(" ", ""))
    layout_ok = (text.get("mode", "L").upper() == "L" and order is not None
                 and datatype in ("I", "F", "D") and all(w > 0 and w % 8 == 0 for w in widths))
    if not layout_ok:
        return None
    event_bytes = sum(widths) // 8
    needed = tot * event_bytes
    start = _data_start(path, flow, text, needed, notes)
    if start is None:
        return None
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8, count=needed,
                        offset=start).reshape(tot, event_bytes)
    values = np.empty((tot, par), dtype=np.float64)
    offset = 0
    for i, width in enumerate(widths):
        nbytes = width // 8
        chunk = raw[:, offset:offset + nbytes]
        offset += nbytes
        if datatype in ("F", "D"):
            kind = {4: "f4", 8: "f8"}.get(nbytes)
            if kind is None:
                return None
            values[:, i] = chunk.copy().view(("<" if order == "little" else ">") + kind)[:, 0]
            continue
        ints = np.zeros(tot, dtype=np.uint64)
        for k in range(nbytes):  # assemble the integer byte by byte
            shift = 8 * (k if order == "little" else nbytes - 1 - k)
            ints |= chunk[:, k].astype(np.uint64) << np.uint64(shift)
        value_range = float(text.get(f"p{i + 1}r", 0) or 0)
        if value_range > 0:  # bits beyond $PnR are not data: mask them
            bits = min(width, max(1, int(np.ceil(np.log2(value_range)))))
            ints &= np.uint64((1 << bits) - 1)
        values[:, i] = ints
    notes += _convert_values(values, text, par)
    notes.append("decoded by immunoprofile (FlowIO cannot decode this DATA layout)")
    channels = [text.get(f"p{n}n") or f"P{n}" for n in range(1, par + 1)]
    markers = [(text.get(f"p{n}s") or "").strip() for n in range(1, par + 1)]
    return FCSData(path=path, version=str(getattr(flow, "version", text.get("version", ""))),
                   events=values, channels=channels, markers=markers,
                   keywords=dict(flow.text), warnings=notes)


def _data_start(path: Path, flow, text: dict, needed: int, notes: list[str]) -> int | None:
    """The DATA offset whose segment holds exactly the bytes $TOT and $PnB need."""
    size = path.stat().st_size
    header = getattr(flow, "header", {}) or {}
    candidates = []
    for source, start, stop in (
            ("TEXT", text.get("begindata"), text.get("enddata")),
            ("HEADER", header.get("data_start"), header.get("data_stop"))):
        try:
            candidates.append((source, int(start), int(stop)))
        except (TypeError, ValueError):
            continue
    for source, start, stop in candidates:
        if start > 0 and stop - start + 1 in (needed, needed + 1) and start + needed <= size:
            if len({(a, b) for _, a, b in candidates}) > 1:
                notes.append(f"HEADER and TEXT give different DATA offsets; {source}'s "
                             "match $TOT")
            if stop - start + 1 == needed + 1:
                notes.append("a DATA offset is off by one byte; read with the corrected "
                             "offset")
            return start
    return None


def _convert_values(values: np.ndarray, text: dict, par: int) -> list[str]:
    """The standard's conversions in place: time × $TIMESTEP, log amplification, gain."""
    notes = []
    timestep = text.get("timestep")
    for i in range(par):
        n = i + 1
        if (text.get(f"p{n}n") or "").strip().lower() == "time" and timestep is not None:
            try:
                values[:, i] *= float(timestep)
            except ValueError:
                notes.append(f"$TIMESTEP {timestep!r} is not a number; time left unscaled")
            continue
        try:
            f1, f2 = (float(v) for v in (text.get(f"p{n}e") or "0,0").split(","))
            gain = float(text.get(f"p{n}g") or 1)
        except ValueError:
            continue
        if f1 > 0:
            values[:, i] = (f2 or 1.0) * 10 ** (f1 * values[:, i] / float(text[f"p{n}r"]))
        elif gain not in (0.0, 1.0):
            values[:, i] /= gain
    return notes


def _blank_data_offsets(head: bytes) -> bool:
    """HEADER's DATA offset fields (bytes 26-41) blank while its TEXT offsets are numbers."""
    return (len(head) >= 42 and head[26:42].strip() == b""
            and head[10:18].strip().isdigit() and head[18:26].strip().isdigit())


def _refuse_mixed_datatypes(path: Path, text: dict) -> None:
    """FCS 3.2 lets channels differ in type ($PnDATATYPE); neither FlowIO 1.4 nor the
    decoder here reads that, and decoding them all as $DATATYPE would be silently wrong."""
    datatype = str(text.get("datatype", "")).strip().upper()
    mixed = sorted({str(v).strip().upper() for k, v in text.items()
                    if str(k).lower().startswith("p") and str(k).lower().endswith("datatype")
                    and str(v).strip().upper() != datatype})
    if mixed:
        raise FCSReadError(f"{path.name}: channels of another data type ($PnDATATYPE "
                           f"{', '.join(mixed)} beside $DATATYPE {datatype}, FCS 3.2) are "
                           "not supported")


def _checked(path: Path, flow, events: np.ndarray, notes: list[str]) -> FCSData:
    _refuse_mixed_datatypes(path, {str(k).lower(): v for k, v in flow.text.items()})
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
    if "invalid literal for int" in text or "could not convert" in text:
        with open(path, "rb") as handle:
            header = handle.read(58)
        fields = [header[a:a + 8].strip() for a in range(10, 58, 8)]
        if len(header) < 58 or not all(f.isdigit() for f in fields[:4]):
            return "damaged HEADER: its segment offsets are not numbers"
        return f"a TEXT keyword that must be a number is not ({text})"
    if "cannot reshape array" in text:
        return ("its integer DATA layout cannot be decoded (channel widths such as 24-bit "
                "$PnB are not supported yet)")
    if "Timestep" in text:
        return "$TIMESTEP is not a number, so the time channel cannot be scaled"
    return f"cannot be read as FCS: {text}"
