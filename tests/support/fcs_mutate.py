"""Moving one statement of where an FCS file's DATA lies: the HEADER's DATA offsets or
TEXT's ``$BEGINDATA``/``$ENDDATA``, by a few bytes, leaving everything else as it is.

This is how real files go wrong (an Accuri C6 and a Cyan file whose TEXT offsets were a
few bytes off, FlowKit's examples whose HEADER is): a reader that trusts the wrong pair
returns every event shifted by a few bytes.
"""

from __future__ import annotations

import re

import numpy as np


def data_sets(raw: bytes) -> list[int]:
    """Where each data set of the file begins (following ``$NEXTDATA``), bytes."""
    bases, base = [], 0
    while base not in bases and 0 <= base <= len(raw) - 58 and raw[base:base + 3] == b"FCS":
        bases.append(base)
        match = _keyword(raw, base, "$NEXTDATA")
        following = int(match.group(2).strip() or 0) if match else 0
        if following <= 0:
            break
        base += following
    return bases


def _text_span(raw: bytes, base: int) -> tuple[int, int]:
    start, stop = int(raw[base + 10:base + 18]), int(raw[base + 18:base + 26])
    return base + start, base + stop


def _keyword(raw: bytes, base: int, key: str):
    start, stop = _text_span(raw, base)
    text = raw[start:stop + 1].decode("latin-1")
    delimiter = re.escape(text[0])
    pattern = (f"({delimiter}{re.escape(key)}{delimiter})([^{delimiter}]*)")
    match = re.search(pattern, text, flags=re.IGNORECASE)
    if match is None:
        return None
    return _Shifted(match, start)


class _Shifted:
    """A regex match over TEXT, with positions in the file."""

    def __init__(self, match, offset):
        self._match, self.offset = match, offset

    def group(self, n):
        return self._match.group(n)

    def span(self, n):
        a, b = self._match.span(n)
        return a + self.offset, b + self.offset


def _moved_number(field: str, delta: int) -> str | None:
    """The number in ``field`` moved by ``delta``, written in the same width (leading
    zeros where it shrinks); None where it cannot be (it would grow or go negative)."""
    match = re.search(r"\d+", field)
    if match is None:
        return None
    digits = match.group(0)
    value = int(digits) + delta
    if value < 0:
        return None
    padding = field[:match.start()] + field[match.end():]
    new = str(value)
    if len(new) > len(digits):  # take the room from padding spaces, if any
        spare = len(new) - len(digits)
        if field[:match.start()].count(" ") >= spare and field[:spare] == " " * spare:
            return field[spare:match.start()] + new + field[match.end():]
        if field[match.end():].endswith(" " * spare):
            return field[:match.start()] + new + field[match.end():len(field) - spare]
        return None
    del padding
    return field[:match.start()] + new.rjust(len(digits), "0") + field[match.end():]


def move_data_offsets(raw: bytes, source: str, delta: int, base: int = 0,
                      ends: tuple[bool, bool] = (True, True)) -> bytes | None:
    """``raw`` with one data set's DATA offsets in ``source`` (``"HEADER"`` or ``"TEXT"``)
    moved by ``delta`` bytes (``ends``: the start, the end, or both); None where that
    source states none (HEADER 0/0, no ``$BEGINDATA``) or the numbers cannot be rewritten
    in place."""
    out = bytearray(raw)
    if source == "HEADER":
        fields = [raw[base + a:base + a + 8].decode("latin-1") for a in (26, 34)]
        if not all(f.strip().isdigit() for f in fields) or \
                all(int(f) == 0 for f in fields):
            return None
        for a, field, moved in zip((26, 34), fields, ends, strict=True):
            value = int(field) + (delta if moved else 0)
            if value < 0 or len(str(value)) > 8:
                return None
            out[base + a:base + a + 8] = f"{value:>8}".encode()
        return bytes(out)
    for key, moved in zip(("$BEGINDATA", "$ENDDATA"), ends, strict=True):
        match = _keyword(raw, base, key)
        if match is None:
            return None
        new = _moved_number(match.group(2), delta if moved else 0)
        if new is None or len(new) != len(match.group(2)):
            return None
        a, b = match.span(2)
        out[a:b] = new.encode("latin-1")
    return bytes(out)


def mutations(raw: bytes, deltas=(*range(-8, 0), *range(1, 9))):
    """Every (label, bytes) of ``raw`` with one data set's HEADER or TEXT DATA offsets
    moved by each of ``deltas``."""
    for base in data_sets(raw):
        for source in ("HEADER", "TEXT"):
            for delta in deltas:
                moved = move_data_offsets(raw, source, delta, base)
                if moved is not None:
                    yield f"data set at {base}: {source} {delta:+d}", moved


def decoded(events) -> np.ndarray:
    """The values the gating kernel computes from an ``EventData`` (float64)."""
    return events.decoded()


def stated_offsets(raw: bytes, base: int = 0) -> tuple[tuple[int, int] | None,
                                                     tuple[int, int] | None]:
    """(HEADER's DATA offsets, TEXT's ``$BEGINDATA``/``$ENDDATA``) of the data set at
    ``base``, relative to it; None where not stated (HEADER 0/0 or blank, no keywords)."""
    fields = [raw[base + a:base + a + 8].strip() for a in (26, 34)]
    header = (tuple(int(f) for f in fields)
              if all(f.isdigit() for f in fields) and any(int(f) for f in fields) else None)
    matches = [_keyword(raw, base, key) for key in ("$BEGINDATA", "$ENDDATA")]
    digits = [m.group(2).strip() if m else "" for m in matches]
    text = tuple(int(d) for d in digits) if all(d.isdigit() for d in digits) else None
    return header, text
