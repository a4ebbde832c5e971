"""Where a data set's DATA segment lies when HEADER and TEXT disagree: decided by content.

An FCS 3 file states the DATA offsets twice, in HEADER and in TEXT (``$BEGINDATA``/
``$ENDDATA``); FCS 2.0 files state them in HEADER and sometimes in TEXT too. When the two
agree nothing is to be decided. When they do not, one of them is wrong, and which one is
not a matter of preference: real files are wrong either way (an Accuri C6 and a Cyan file
whose TEXT was a few bytes off, FlowKit's examples whose HEADER is). Reading at the wrong
start shifts every value by a few bytes: every channel garbage, silently.

So each offset pair is tried on the bytes themselves (:func:`locate_data`):

1. it must be possible: inside the file, not over the HEADER or TEXT segment, and
   spanning the ``$TOT`` × ``$PnB`` bytes the layout needs (or one byte more, a common
   writer's mistake);
2. if both are possible, their events are decoded and compared on what a shift breaks:
   integer values with bits set above ``$PnR``, float values that are not finite,
   denormal or far beyond ``$PnR``, a time channel that goes backwards. A candidate is
   chosen only when it is clearly cleaner than the other on some measure and worse on
   none;
3. otherwise the file is refused, naming both pairs: a refusal is better than a guess.

Where the two starts agree the values are the same whichever end is right, and that start
is used.

A pair stated once (an FCS 2.0 HEADER whose TEXT has no ``$BEGINDATA``; a large file's
TEXT beside HEADER's zeros) has no second statement to be checked against, and moving it
by a few bytes moves everything there is. Its own events catch some shifts (a time channel
going backwards), but a shift by whole values of integer data without a time channel only
rotates the channels, which looks plausible. So the stated region is compared with the
regions of the same length a few bytes either way (:func:`_unconfirmed`), on the same
signs in their events and on where their ends lie: a DATA segment written by an
instrument starts right after the TEXT (or another segment), or after padding (spaces,
NULs), and ends at the end of the file, before the next segment, before padding or before
an 8-character CRC. A shifted region has data bytes right outside one of its ends. The
file is refused, naming the stated offsets and the neighbour, when a neighbour is clearly
better on some sign, or when the stated region itself shows a sign and a neighbour is no
worse on any; a clean stated region is read even where a neighbour looks clean too (data
ending in a zero value looks like padding). A lone pair of the wrong size is judged by the
``$TOT`` × ``$PnB`` bytes from its start, which is what is decoded.

Offsets here are absolute file positions; ``base`` is where the data set begins (not 0
for the second data set of a file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FCSReadError

#: A measure decides only when the worse candidate has at least this fraction of its
#: values wrong, and the better one at most :data:`_CLEARLY_BETTER` times as many.
_DECISIVE_FRACTION = 0.01
_CLEARLY_BETTER = 0.2

#: Events decoded per candidate to compare them (a shift breaks every event alike).
_EVENTS_COMPARED = 20_000

#: A lone statement is compared with the regions shifted by up to this many bytes each
#: way (real files' offsets are off by a few bytes; two 64-bit values).
_NEIGHBOURS = 16
#: Events decoded per region to compare a lone statement with its neighbours (the stated
#: region on the same sample; a shift breaks every event alike).
_NEIGHBOUR_EVENTS = 2_000
#: Bytes just outside a region's ends that are looked at for data, bytes.
_EDGE = 16
#: Bytes writers pad segments with.
_PADDING = frozenset(b"\x00 \t\r\n\x1a")  # ^Z: the DOS end of file some writers add
#: FCS 3.1's CRC after DATA: 8 characters ("00000000" where none is computed).
_CRC = re.compile(rb"[0-9A-Fa-f]{8}")


@dataclass(frozen=True)
class Layout:
    """A list-mode DATA layout as TEXT declares it: enough to decode events with numpy.

    Attributes
    ----------
    tot : int
        ``$TOT``, events.
    widths : tuple of int
        Bytes per value of each channel (``$PnB`` / 8).
    datatype : str
        ``"I"``, ``"F"`` or ``"D"``.
    order : str
        numpy byte order, ``"<"`` or ``">"``.
    ranges : tuple of float
        ``$PnR`` of each channel (0 where unreadable).
    names : tuple of str
        ``$PnN`` of each channel.
    """

    tot: int
    widths: tuple[int, ...]
    datatype: str
    order: str
    ranges: tuple[float, ...]
    names: tuple[str, ...]

    @property
    def event_bytes(self) -> int:
        """Bytes per event."""
        return sum(self.widths)

    @property
    def needed(self) -> int:
        """Bytes the DATA segment must hold: ``$TOT`` × bytes per event."""
        return self.tot * self.event_bytes

    @classmethod
    def from_text(cls, text: dict) -> Layout | None:
        """The layout of TEXT keywords (lower case, no ``$``), or None where it is not a
        list-mode integer/float layout of whole bytes that numpy can decode."""
        try:
            tot, par = int(text["tot"]), int(text["par"])
            bits = [int(text[f"p{n}b"]) for n in range(1, par + 1)]
        except (KeyError, ValueError):
            return None
        datatype = str(text.get("datatype", "")).strip().upper()
        order = {"1,2,3,4": "<", "1,2": "<", "4,3,2,1": ">", "2,1": ">"}.get(
            str(text.get("byteord", "")).replace(" ", ""))
        if (str(text.get("mode", "L")).strip().upper() != "L" or order is None or tot < 0
                or par < 1 or datatype not in ("I", "F", "D")
                or not all(b > 0 and b % 8 == 0 for b in bits)):
            return None
        widths = tuple(b // 8 for b in bits)
        if datatype != "I" and set(widths) != {4 if datatype == "F" else 8}:
            return None
        ranges = []
        for n in range(1, par + 1):
            try:
                value_range = float(text.get(f"p{n}r", 0) or 0)
            except ValueError:
                value_range = 0.0
            if not np.isfinite(value_range) or value_range < 0:
                return None  # a $PnR no decoder can use
            ranges.append(value_range)
        names = tuple(str(text.get(f"p{n}n") or "").strip() for n in range(1, par + 1))
        return cls(tot, widths, datatype, order, tuple(ranges), names)

    def decode(self, raw: bytes | np.ndarray, start: int, events: int | None = None
               ) -> np.ndarray:
        """Stored values (integers unmasked, no scaling) of the first ``events`` events
        from byte ``start`` of ``raw``, float64 (events × channels)."""
        count = self.tot if events is None else min(events, self.tot)
        block = np.frombuffer(raw, dtype=np.uint8, count=count * self.event_bytes,
                              offset=start).reshape(count, self.event_bytes)
        values = np.empty((count, len(self.widths)), dtype=np.float64)
        offset = 0
        for i, width in enumerate(self.widths):
            chunk = block[:, offset:offset + width]
            offset += width
            if self.datatype != "I":
                kind = self.order + ("f4" if width == 4 else "f8")
                with np.errstate(invalid="ignore"):  # a shifted float may be a NaN
                    values[:, i] = chunk.copy().view(kind)[:, 0]
                continue
            ints = np.zeros(count, dtype=np.uint64)
            for k in range(width):  # assemble the integer byte by byte
                shift = 8 * (k if self.order == "<" else width - 1 - k)
                ints |= chunk[:, k].astype(np.uint64) << np.uint64(shift)
            values[:, i] = ints
        return values


@dataclass(frozen=True)
class Candidate:
    """One statement of where DATA lies.

    Attributes
    ----------
    source : str
        ``"HEADER"`` or ``"TEXT"``.
    start, stop : int
        First and last byte, absolute positions in the file.
    written : tuple of int
        The offsets as the file writes them (relative to the data set).
    """

    source: str
    start: int
    stop: int
    written: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.source} {self.written[0]}–{self.written[1]}"


def candidates(header: dict, text: dict, base: int = 0) -> list[Candidate]:
    """The DATA offset pairs a data set states: TEXT's ``$BEGINDATA``/``$ENDDATA`` and
    HEADER's (HEADER's 0/0 of files over 100 MB is no statement)."""
    found = []
    for source, start, stop in (("TEXT", text.get("begindata"), text.get("enddata")),
                                ("HEADER", header.get("data_start"),
                                 header.get("data_stop"))):
        try:
            start, stop = int(str(start).strip()), int(str(stop).strip())
        except (TypeError, ValueError):
            continue
        if start == 0 and stop == 0:  # HEADER's of a file over 100 MB; TEXT's: none
            continue
        found.append(Candidate(source, base + start, base + stop, (start, stop)))
    return found


def locate_data(path: Path, raw: bytes | np.ndarray, header: dict, text: dict,
                layout: Layout, base: int = 0) -> tuple[Candidate, list[str]]:
    """The offset pair that holds this data set's events, and what was noticed.

    Parameters
    ----------
    path : Path
        The file (for messages).
    raw : bytes or numpy.ndarray
        The whole file's bytes (a memory map will do).
    header : dict
        FlowIO's parsed HEADER of the data set (``data_start``, ``data_stop``,
        ``text_start``, ``text_stop``), offsets relative to ``base``.
    text : dict
        The data set's TEXT keywords (lower case, no ``$``).
    layout : Layout
    base : int
        Byte where the data set begins, bytes.

    Returns
    -------
    (Candidate, list of str)
        The pair to read by, and warnings (empty where HEADER and TEXT agree).

    Raises
    ------
    FCSReadError
        No pair is stated, or HEADER and TEXT disagree and the content cannot tell which
        is right; the message names the file and both pairs.
    """
    found = candidates(header, text, base)
    if not found:
        raise FCSReadError(f"{path.name}: neither HEADER nor TEXT says where its DATA "
                           "segment is")
    if len({c.start for c in found}) == 1:
        # The same first byte: the same values whichever end is right. Prefer a pair
        # whose size matches the layout (the caller checks the size of the one returned).
        fitting = [c for c in found if _size_fits(c, layout)] or found
        chosen = fitting[0]
        if len(found) == 1:
            _check_lone_statement(path, raw, header, text, layout, chosen, base)
        notes = []
        if len({c.stop for c in found}) > 1:
            notes.append(f"HEADER and TEXT give different DATA end offsets ({found[0]}, "
                         f"{found[1]}); both start at the same byte and {chosen.source}'s, "
                         "which match $TOT, were used")
        return chosen, notes
    text_pair, header_pair = found
    both = f"HEADER and TEXT give different DATA offsets ({header_pair}, {text_pair})"
    problems = {c.source: _impossible(c, header, layout, len(raw), base) for c in found}
    possible = [c for c in found if not problems[c.source]]
    if not possible:
        raise FCSReadError(
            f"{path.name}: {both} and neither can hold its data "
            f"({header_pair.source}: {problems['HEADER']}; {text_pair.source}: "
            f"{problems['TEXT']}) — the file is damaged")
    if len(possible) == 1:
        chosen = possible[0]
        other = next(c for c in found if c is not chosen)
        return chosen, [f"{both}; {chosen.source}'s were used ({other.source}'s "
                        f"{problems[other.source]})"]
    verdict = _compare_content(raw, layout, text_pair, header_pair)
    if verdict is None:
        raise FCSReadError(
            f"{path.name}: {both}, both possible, and its events do not show which is "
            "right — the file is damaged; ask the instrument's software for a fresh export")
    chosen, reason = verdict
    return chosen, [f"{both}; {chosen.source}'s were used: {reason}"]


def _check_lone_statement(path: Path, raw, header: dict, text: dict, layout: Layout,
                          chosen: Candidate, base: int) -> None:
    """One statement of where DATA lies (FCS 2.0's HEADER, a large file's TEXT) has
    nothing to be checked against: refuse it where it is impossible, where its events
    show what no correctly placed DATA segment does (a time channel going backwards, float
    values that are not finite or are denormal), or where a region a few bytes away fits
    the file as well (:func:`_unconfirmed`). (Integer bits above ``$PnR`` are no such
    sign on their own, some instruments set them; nor are float values beyond ``$PnR``,
    which some writers state wrongly: they count only against a neighbour.)

    A pair of the wrong size is decoded from its start all the same (FlowIO reads
    ``$TOT`` events from there: an end offset wrong, the start right), so the ``$TOT`` ×
    ``$PnB`` bytes from its start are checked alike, and the pair is refused, naming its
    size, where they cannot be right or confirmed (a start offset moved makes the span
    the wrong size too)."""
    fits = _size_fits(chosen, layout)
    region = chosen if fits else Candidate(chosen.source, chosen.start,
                                           chosen.start + layout.needed - 1, chosen.written)
    problem = _impossible(region, header, layout, len(raw), base)
    doubt = ""
    if not problem:
        measures = _wrongness(layout.decode(raw, region.start, _EVENTS_COMPARED), layout)
        wrong = {m: v for m, v in measures.items()
                 if m in (_NOT_NUMBERS, _TIME_BACKWARDS) and v >= _DECISIVE_FRACTION}
        problem = "; ".join(f"{m} in {100 * v:.3g} % of its values" for m, v in wrong.items())
    if not problem:
        doubt = _unconfirmed(raw, header, text, layout, region, base)
    if not (problem or doubt):
        return
    verdict = f"cannot be right: {problem}" if problem else f"cannot be confirmed: {doubt}"
    if not fits:
        verdict = (f"span {chosen.stop - chosen.start + 1} bytes where $TOT × $PnB need "
                   f"{layout.needed}, and the {layout.needed} from its start {verdict}")
    raise FCSReadError(
        f"{path.name}: its DATA offsets ({chosen}, the only ones it states) {verdict} — the "
        "offsets or the file are damaged; ask the instrument's software for a fresh export")


def _unconfirmed(raw, header: dict, text: dict, layout: Layout, region: Candidate,
                 base: int) -> str:
    """Why a lone statement's region is not confirmed by its neighbours ("" where it is).

    The regions of the same length shifted by 1 to :data:`_NEIGHBOURS` bytes each way are
    the places the data would be if the statement were a few bytes off. Each possible one
    is compared with the stated region on its ends (:func:`_edge_measures`) and, where
    that does not already show it worse, on its events (:func:`_wrongness` of the first
    :data:`_NEIGHBOUR_EVENTS` events of each). The statement falls to a neighbour
    clearly better on some sign, or, where the stated region shows a sign itself, to one
    no worse on any; where the stated region is clean on every sign, as real files are,
    only neighbours whose ends look as right are decoded.

    Parameters
    ----------
    raw : bytes or numpy.ndarray
        The whole file's bytes.
    header, text : dict
        FlowIO's HEADER and TEXT keywords (lower case, no ``$``) of the data set.
    layout : Layout
    region : Candidate
        The stated region, ``$TOT`` × ``$PnB`` bytes long, already found possible.
    base : int
        Byte where the data set begins, bytes.

    Returns
    -------
    str
        "" where the statement stands; else which neighbour fits as well or better, and
        why, in words.
    """
    segments = _segments(raw, header, text, base)
    stated = {**_edge_measures(raw, region.start, region.start + layout.needed, segments),
              **_wrongness(layout.decode(raw, region.start, _NEIGHBOUR_EVENTS), layout)}
    beatable = any(v >= _DECISIVE_FRACTION for v in stated.values())
    rivals = []
    for shift in (*range(-_NEIGHBOURS, 0), *range(1, _NEIGHBOURS + 1)):
        first = region.written[0] + shift
        other = Candidate(region.source, region.start + shift,
                          region.start + shift + layout.needed - 1,
                          (first, first + layout.needed - 1))
        if _impossible(other, header, layout, len(raw), base):
            continue
        evidence = _edge_measures(raw, other.start, other.start + layout.needed, segments)
        # Its events are needed unless its ends already show it worse and the stated
        # region's events are clean on every sign (then no neighbour's can be better).
        if beatable or not _clearly_worse_on(evidence, stated):
            evidence.update(_wrongness(layout.decode(raw, other.start, _NEIGHBOUR_EVENTS),
                                       layout))
        better = _clearly_worse_on(stated, evidence)
        worse = _clearly_worse_on(evidence, stated)
        # A neighbour that fits as well counts only against a stated region with a sign
        # against it: a clean statement is not refused because a region beside it, ending
        # in bytes that look like padding (a last value of 0, 10, 32…), is clean too.
        if better or (beatable and not worse):  # named first: better and worse nowhere
            rank = 0 if better and not worse else 1 if not worse else 2
            rivals.append((rank, -len(better), abs(shift), shift, other, better))
    if not rivals:
        return ""
    *_, shift, other, better = min(rivals, key=lambda r: r[:4])
    where = f"{abs(shift)} byte{'s' if abs(shift) > 1 else ''} " + (
        "later" if shift > 0 else "earlier")
    if better:
        fit = "fits the file better (" + "; ".join(
            _described(m, stated[m]) for m in better) + ")"
    else:
        fit = "fits the file as well (its ends and its events show nothing to tell them apart)"
    return f"the same span {where} ({other.written[0]}–{other.written[1]}) {fit}"


def _clearly_worse_on(measures: dict[str, float], other: dict[str, float]) -> list[str]:
    """The measures on which ``measures`` are clearly worse than ``other``'s."""
    return [m for m, bad in measures.items()
            if bad >= _DECISIVE_FRACTION and other.get(m, 0.0) <= _CLEARLY_BETTER * bad]


def _described(measure: str, value: float) -> str:
    """The stated region's ``value`` of ``measure``, in words."""
    if measure in _EDGES:
        return f"the stated one has {measure}"
    return f"{measure} in {100 * value:.3g} % of the stated one's values"


def _segments(raw, header: dict, text: dict, base: int) -> list[tuple[int, int]]:
    """The data set's segments other than DATA, [first, last + 1) in the file: its
    HEADER, TEXT, supplemental TEXT, ANALYSIS and the next data set's HEADER."""
    found = [(base, base + 58)]
    try:
        text_start = base + int(header["text_start"])
        text_stop = base + int(header["text_stop"])
    except (KeyError, TypeError, ValueError):
        text_start = text_stop = -1
    if 0 <= text_start < text_stop < len(raw):
        delimiter = raw[text_start]
        # TEXT's last byte is often written one past its final delimiter
        one_past = raw[text_stop] != delimiter and raw[text_stop - 1] == delimiter
        found.append((text_start, text_stop + (0 if one_past else 1)))
    pairs = [(header.get("analysis_start"), header.get("analysis_stop"))] + [
        (text.get(f"begin{name}"), text.get(f"end{name}")) for name in ("stext", "analysis")]
    for first, last in pairs:
        try:
            first, last = int(str(first).strip()), int(str(last).strip())
        except (TypeError, ValueError):
            continue
        if 0 < first <= last:
            found.append((base + first, base + last + 1))
    try:
        following = int(str(text.get("nextdata", "0")).strip() or 0)
    except ValueError:
        following = 0
    if following > 0:
        found.append((base + following, base + following + 58))
    return found


def _edge_measures(raw, start: int, end: int, segments: list[tuple[int, int]]
                   ) -> dict[str, float]:
    """Signs (1.0 or 0.0) that the region [start, end) is not where a writer put DATA:
    anything but padding in the :data:`_EDGE` bytes before its start (back to the end of
    the segment before it), anything but padding or a CRC in those after its end (up to
    the next segment or the end of the file), a segment it overlaps."""
    before = max((e for s, e in segments if e <= start), default=0)
    after = min((s for s, e in segments if s >= end), default=len(raw))
    lead = bytes(raw[max(before, start - _EDGE):start])
    tail = bytes(raw[end:min(after, end + _EDGE)])
    crc = _CRC.match(tail)
    if crc is not None and (len(tail) == 8 or tail[8] in _PADDING):
        tail = tail[8:]
    return {
        _DATA_BEFORE: float(any(b not in _PADDING for b in lead)),
        _DATA_AFTER: float(any(b not in _PADDING for b in tail)),
        _OVERLAP: float(any(s < end and e > start for s, e in segments)),
    }


def _size_fits(candidate: Candidate, layout: Layout) -> bool:
    """The pair spans the bytes the layout needs, or one more (a common writer's error)."""
    return candidate.stop - candidate.start + 1 in (layout.needed, layout.needed + 1)


def _impossible(candidate: Candidate, header: dict, layout: Layout, size: int,
                base: int) -> str:
    """Why this pair cannot be where the data are ("" where it can)."""
    start, end = candidate.start, candidate.start + layout.needed  # end: exclusive
    if not _size_fits(candidate, layout):
        return (f"spans {candidate.stop - candidate.start + 1} bytes where $TOT × $PnB "
                f"need {layout.needed}")
    if start < base + 58 or end > size:
        return f"runs outside the file ({size} bytes)"
    try:
        text_start = base + int(header["text_start"])
        text_stop = base + int(header["text_stop"])
    except (KeyError, TypeError, ValueError):
        return ""
    # TEXT's last byte is often written one past its final delimiter: one byte of grace.
    if start < text_stop and end > text_start:
        return "overlaps the TEXT segment"
    return ""


def _compare_content(raw, layout: Layout, first: Candidate, second: Candidate):
    """(the candidate whose events are clearly cleaner, why), or None."""
    events = {c.source: layout.decode(raw, c.start, _EVENTS_COMPARED)
              for c in (first, second)}
    if np.array_equal(events[first.source], events[second.source], equal_nan=True):
        return first, "both give the same events"
    measures = {c.source: _wrongness(events[c.source], layout) for c in (first, second)}
    better: dict[str, list[str]] = {first.source: [], second.source: []}
    for measure in measures[first.source]:
        a, b = measures[first.source][measure], measures[second.source][measure]
        for winner, good, bad in ((first.source, a, b), (second.source, b, a)):
            if bad >= _DECISIVE_FRACTION and good <= _CLEARLY_BETTER * bad:
                better[winner].append(
                    f"{measure}: {100 * good:.3g} % of its values against "
                    f"{100 * bad:.3g} % at the other offset")
    winners = [c for c in (first, second) if better[c.source]]
    if len(winners) != 1:
        return None
    return winners[0], "; ".join(better[winners[0].source])


def _wrongness(values: np.ndarray, layout: Layout) -> dict[str, float]:
    """Fractions of values that a correctly placed DATA segment would not hold."""
    if values.shape[0] == 0:
        return {}
    measures: dict[str, float] = {}
    columns = [i for i, r in enumerate(layout.ranges) if r > 0]
    if layout.datatype == "I":
        masked = [i for i in columns
                  if 2 ** int(np.ceil(np.log2(layout.ranges[i]))) < 2 ** (8 * layout.widths[i])]
        if masked:
            limits = np.array([2.0 ** np.ceil(np.log2(layout.ranges[i])) for i in masked])
            measures["bits set above $PnR"] = float(np.mean(values[:, masked] >= limits))
    times = [i for i, name in enumerate(layout.names) if name.lower() == "time"]
    if layout.datatype != "I":
        with np.errstate(invalid="ignore", over="ignore"):
            size = np.abs(values)
            measures[_NOT_NUMBERS] = float(np.mean(~np.isfinite(values)
                                                   | ((size > 0) & (size < 1e-30))))
            ranged = [i for i in columns if i not in times]
            if ranged:
                limits = np.array([16.0 * layout.ranges[i] for i in ranged])
                measures["float values far beyond $PnR"] = float(
                    np.mean(size[:, ranged] > limits))
    if times and values.shape[0] > 1:
        steps = np.diff(values[:, times], axis=0)
        with np.errstate(invalid="ignore"):
            measures[_TIME_BACKWARDS] = float(np.mean(~(steps >= 0)))
    return measures


_NOT_NUMBERS = "float values not finite or denormal"
_TIME_BACKWARDS = "time going backwards"
_DATA_BEFORE = "data bytes right before its start"
_DATA_AFTER = "data bytes right after its end"
_OVERLAP = "an overlap with another segment"
_EDGES = (_DATA_BEFORE, _DATA_AFTER, _OVERLAP)
