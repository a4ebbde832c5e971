"""``read_fcs``: one FCS file's events, channels, markers and keywords — or a clear refusal.

FlowIO parses HEADER and TEXT; where DATA lies is decided here
(:func:`immunoprofile.io.data_offsets.locate_data`): when HEADER and TEXT disagree on the
DATA offsets, by the events each pair gives — never by a fixed preference, since real
files are wrong either way — and the file is refused, naming both pairs, when the content
cannot tell; a pair stated once is refused where a region a few bytes away fits the file
better, or as well when the stated one shows a sign against it (its events, where its
ends lie). FlowIO then decodes DATA at the chosen offsets
and applies the standard's value conversions (gain, log amplification, time step). What
bends the standard is read with a warning saying what was assumed:

- an end offset one byte past the DATA segment (common in Miltenyi and LMD files);
- HEADER and TEXT disagreeing on the DATA offsets (see above);
- a Beckman Coulter LMD file (an FCS 2.0 data set followed by an FCS 3.0 one of the same
  events): the FCS 3.0 data set, with the markers of the FCS 2.0 set's ``$PnS``;
- any other file holding several data sets: the first is read;
- HEADER DATA offsets left blank (files over 100 MB): TEXT's ``$BEGINDATA``/``$ENDDATA``.

What FlowIO cannot decode at all — 24-bit integer channels, a ``$TIMESTEP`` that is not a
number, offsets its options do not cover (TEXT's of an FCS 2.0 file) — is decoded here
with numpy (``_decode_here``), with a warning. Anything else is refused with a one-line
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
from .data_offsets import Candidate, Layout, candidates, locate_data


@dataclass
class FCSData:
    """One FCS file, read.

    Attributes
    ----------
    path : Path
    version : str
        FCS version (``"2.0"``, ``"3.0"``, ``"3.1"``) of the data set read.
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


@dataclass
class _DataSet:
    """The data set to read: FlowIO's HEADER and TEXT of it, where it begins, and what
    was noticed choosing it."""

    flow: flowio.FlowData
    base: int
    notes: list[str]
    markers_from: flowio.FlowData | None = None  # LMD: the FCS 2.0 set's $PnS


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
        The file is missing, not FCS, truncated, holds data that cannot be decoded, or
        states DATA offsets whose right one cannot be told; the message names the file
        and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FCSReadError(f"{path.name}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(58)
    if not head.startswith(b"FCS"):
        raise FCSReadError(f"{path.name}: not an FCS file (it does not start with 'FCS')")
    raw = path.read_bytes()
    patched = False
    if _blank_data_offsets(head):
        # Files over 100 MB cannot write DATA offsets in the 8-digit HEADER fields; the
        # standard then has them 0 and gives $BEGINDATA/$ENDDATA in TEXT. Some writers
        # leave the fields blank, which FlowIO cannot parse: hand it the bytes with zeros.
        fixed = bytearray(raw)
        fixed[26:42] = b"       0       0"
        raw, patched = bytes(fixed), True
    data_set = _choose_data_set(path, raw, patched)
    flow, base, notes = data_set.flow, data_set.base, list(data_set.notes)
    if patched:
        notes.append("HEADER leaves the DATA offsets blank (as for files over 100 MB); "
                     "TEXT's $BEGINDATA/$ENDDATA were used")
    text = {str(k).lower(): str(v) for k, v in flow.text.items()}
    _refuse_mixed_datatypes(path, text)
    layout = Layout.from_text(text)
    if layout is None:  # not a layout the content can be checked in: FlowIO's offsets
        chosen = _agreed_offsets(path, flow, base)
    else:
        chosen, found = locate_data(path, raw, flow.header, text, layout, base)
        notes += found
        if chosen.stop - chosen.start + 1 == layout.needed + 1:
            notes.append("a DATA offset is off by one byte; read with the corrected offset")
    result = _decode_with_flowio(path, raw, patched, data_set, chosen, notes)
    if result is None and layout is not None:
        result = _decode_here(path, raw, data_set, layout, chosen, notes)
    if result is None:
        error = _flowio_error(path, raw, patched, data_set, chosen)
        raise FCSReadError(f"{path.name}: {_reason(path, error)}")
    return result


def _open(path: Path, raw: bytes, patched: bool, **options) -> flowio.FlowData:
    """FlowIO's FlowData of the file (of the patched bytes where HEADER was patched),
    its warnings silenced: what it notices is checked here."""
    # FlowIO closes a handle it is given: a fresh one for every call.
    source = io.BytesIO(raw) if patched else str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flowio.FlowData(source, **options)


def _parse_text(path: Path, raw: bytes, patched: bool, base: int) -> flowio.FlowData:
    """HEADER and TEXT of the data set at ``base`` (FlowIO, ``only_text``).

    FlowIO checks the DATA offsets of the pair it reads by (TEXT's, or HEADER's on
    request) against the file size; which pair is right is decided later, so either
    pair's passing is enough here.
    """
    first_error: Exception | None = None
    for options in ({"ignore_offset_discrepancy": True}, {"use_header_offsets": True}):
        try:
            return _open(path, raw, patched, only_text=True, nextdata_offset=base,
                         **options)
        except Exception as exc:  # FlowIO raises many types for malformed files
            first_error = first_error or exc
    raise FCSReadError(f"{path.name}: {_reason(path, first_error)}")


def _choose_data_set(path: Path, raw: bytes, patched: bool) -> _DataSet:
    """The first data set, or for a Beckman Coulter LMD file (an FCS 2.0 data set and an
    FCS 3.0 one of the same events) the FCS 3.0 one: it holds the full-resolution values
    (FlowJo reads it too), the FCS 2.0 set the markers."""
    first = _parse_text(path, raw, patched, 0)
    try:
        following = int(str(first.text.get("nextdata", "0")).strip() or 0)
    except ValueError:
        following = 0
    if following <= 0:
        return _DataSet(first, 0, [])
    several = "the file holds more than one data set"
    second = None
    if following + 58 <= len(raw) and raw[following:following + 4] == b"FCS3":
        try:
            second = _parse_text(path, raw, patched, following)
        except FCSReadError:
            second = None
    if (second is not None and str(first.version).startswith("2")
            and str(second.text.get("tot", "")).strip() == str(first.text.get("tot", ""))
            .strip()):
        return _DataSet(second, following, [
            f"{several}: an FCS 2.0 and an FCS 3.0 data set of the same "
            f"{int(str(first.text['tot']).strip())} events (a Beckman Coulter LMD file); the "
            "FCS 3.0 data set was read, with markers from the FCS 2.0 set's $PnS"],
            markers_from=first)
    return _DataSet(first, 0, [f"{several}; the first was read"])


def _agreed_offsets(path: Path, flow: flowio.FlowData, base: int) -> Candidate:
    """For layouts whose content cannot be checked (ASCII, ``$PnB`` of ``*``): the pair
    FlowIO reads by, refused where HEADER and TEXT disagree."""
    found = candidates(flow.header, {str(k).lower(): v for k, v in flow.text.items()}, base)
    if not found:
        raise FCSReadError(f"{path.name}: neither HEADER nor TEXT says where its DATA "
                           "segment is")
    if len({(c.start, c.stop) for c in found}) > 1:
        raise FCSReadError(f"{path.name}: HEADER and TEXT give different DATA offsets "
                           f"({found[-1]}, {found[0]}), and for this DATA layout the "
                           "events cannot show which is right")
    return found[0]


def _flowio_options(flow: flowio.FlowData, chosen: Candidate, base: int) -> dict | None:
    """FlowIO's options that make it read DATA at ``chosen``, or None where none do."""
    options: dict = {"nextdata_offset": base, "ignore_offset_error": True}
    if chosen.source == "HEADER":
        return {**options, "use_header_offsets": True}
    if str(flow.version) == "2.0":
        return None  # FlowIO reads an FCS 2.0 file by its HEADER only
    return {**options, "ignore_offset_discrepancy": True}


def _decode_with_flowio(path: Path, raw: bytes, patched: bool, data_set: _DataSet,
                        chosen: Candidate, notes: list[str]) -> FCSData | None:
    options = _flowio_options(data_set.flow, chosen, data_set.base)
    if options is None:
        return None
    try:
        flow = _open(path, raw, patched, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            events = np.asarray(flow.as_array(preprocess=True), dtype=np.float64)
    except Exception:  # FlowIO raises many types for malformed files
        return None
    return _checked(path, flow, events, notes, data_set)


def _flowio_error(path: Path, raw: bytes, patched: bool, data_set: _DataSet,
                  chosen: Candidate) -> Exception | None:
    """FlowIO's error decoding the file, for the reason a user is shown."""
    options = _flowio_options(data_set.flow, chosen, data_set.base) or {
        "nextdata_offset": data_set.base}
    try:
        _open(path, raw, patched, **options).as_array(preprocess=True)
    except Exception as exc:  # FlowIO raises many types for malformed files
        return exc
    return None


# --- beyond FlowIO ------------------------------------------------------------------------
# FlowIO 1.4 cannot decode integer channels whose width is not 8/16/32/64 bits (24-bit
# Cytek and FlowJo-collector files), fails on a $TIMESTEP that is not a number, and reads
# an FCS 2.0 file by its HEADER's offsets only. For those, DATA is decoded here with numpy
# at the chosen offsets, exactly as the standard describes it, and the values converted as
# FlowIO would.

def _decode_here(path: Path, raw: bytes, data_set: _DataSet, layout: Layout,
                 chosen: Candidate, notes: list[str]) -> FCSData | None:
    flow = data_set.flow
    text = {str(k).lower(): str(v) for k, v in flow.text.items()}
    if (chosen.stop - chosen.start + 1 not in (layout.needed, layout.needed + 1)
            or chosen.start + layout.needed > len(raw)):
        return None  # not the bytes $TOT and $PnB need: refused
    try:
        values = layout.decode(raw, chosen.start)
    except ValueError:
        return None
    par = len(layout.widths)
    if layout.datatype == "I":
        for i, width in enumerate(layout.widths):
            value_range = layout.ranges[i]
            if value_range > 0:  # bits beyond $PnR are not data: mask them
                bits = min(8 * width, max(1, int(np.ceil(np.log2(value_range)))))
                values[:, i] = values[:, i].astype(np.uint64) & np.uint64((1 << bits) - 1)
    try:
        notes = notes + _convert_values(values, text, par)
    except (ValueError, OverflowError, ZeroDivisionError, KeyError):
        return None  # keywords too broken to decode by: refused, with FlowIO's reason
    notes.append("decoded by immunoprofile (FlowIO cannot decode this DATA layout, or not "
                 "at these offsets)")
    channels = [text.get(f"p{n}n") or f"P{n}" for n in range(1, par + 1)]
    markers = _markers(data_set, channels,
                       [(text.get(f"p{n}s") or "").strip() for n in range(1, par + 1)])
    return FCSData(path=path, version=str(getattr(flow, "version", text.get("version", ""))),
                   events=values, channels=channels, markers=markers,
                   keywords=_keywords(data_set), warnings=notes)


def _markers(data_set: _DataSet, channels: list[str], markers: list[str]) -> list[str]:
    """``$PnS`` per channel; for an LMD file's FCS 3.0 data set (which has none), the
    FCS 2.0 set's ``$PnS`` of the channels on the same detector (``FL1 Log`` → ``FL1``),
    where they agree."""
    first = data_set.markers_from
    if first is None:
        return markers
    by_detector: dict[str, set[str]] = {}
    for info in first.channels.values():
        name = str(info.get("pnn") or "").strip()
        label = str(info.get("pns") or "").strip()
        if name and label and label != name:
            by_detector.setdefault(name.split()[0].lower(), set()).add(label)
    found = []
    for channel, marker in zip(channels, markers, strict=True):
        labels = by_detector.get(channel.strip().lower(), set())
        found.append(marker or (labels.pop() if len(labels) == 1 else ""))
    return found


def _keywords(data_set: _DataSet) -> dict:
    """The TEXT keywords of the data set read; an LMD file's FCS 3.0 set adds the FCS 2.0
    set's keywords it lacks that are not about channels or segments ($CYT, dates...)."""
    keywords = dict(data_set.flow.text)
    if data_set.markers_from is not None:
        for key, value in data_set.markers_from.text.items():
            name = str(key).lower()
            if (name not in keywords and not (name[:1] == "p" and name[1:2].isdigit())
                    and name not in ("nextdata", "begindata", "enddata")):
                keywords[key] = value
    return keywords


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


def _checked(path: Path, flow, events: np.ndarray, notes: list[str],
             data_set: _DataSet) -> FCSData:
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
                   markers=_markers(data_set, channels, markers),
                   keywords=_keywords(data_set), warnings=notes)


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
