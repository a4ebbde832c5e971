"""A deliberately simple FCS 3.1 writer for test files with chosen oddities.

FlowIO's writer only writes well-formed float files; tests of the reader and the engine
need integer data, log amplification, gains, byte orders and broken keywords.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_fcs(path: Path, data: np.ndarray, names: list[str], **options) -> Path:
    """Write ``data`` (events × channels, already in the stored type) as list-mode FCS
    (3.1 unless ``version`` says otherwise); the options are :func:`fcs_bytes`'s."""
    Path(path).write_bytes(fcs_bytes(data, names, **options))
    return Path(path)


def fcs_bytes(data: np.ndarray, names: list[str], *, datatype: str = "F",
              bits: int = 32, byteord: str = "1,2,3,4", ranges=None, amplification=None,
              gains=None, extra: dict | None = None, drop: tuple[str, ...] = (),
              version: str = "3.1", gap: int = 0, trailing: bytes = b"",
              following: bytes | None = None) -> bytes:
    """One data set's bytes: HEADER, TEXT, ``gap`` spaces (as many writers leave), DATA,
    then ``trailing`` bytes.

    ``drop`` names keywords to leave out (for example ``"$P2N"``, or ``"$BEGINDATA"`` and
    ``"$ENDDATA"`` for an FCS 2.0 file that states its DATA offsets in HEADER only).
    ``following`` is another data set written after this one, ``$NEXTDATA`` pointing at
    it (as in a Beckman Coulter LMD file).
    """
    n, p = data.shape
    dtype = {"F": "f4", "D": "f8"}.get(datatype) or {8: "u1", 16: "u2", 32: "u4"}[bits]
    width = {"F": 32, "D": 64}.get(datatype, bits)
    order = "<" if byteord in ("1,2,3,4", "1,2") else ">"
    raw = np.ascontiguousarray(data.astype(np.dtype(dtype).newbyteorder(order))).tobytes()
    keywords = {"$BYTEORD": byteord, "$DATATYPE": datatype, "$MODE": "L", "$NEXTDATA": "0",
                "$PAR": str(p), "$TOT": str(n)}
    for i in range(p):
        keywords[f"$P{i + 1}N"] = names[i]
        keywords[f"$P{i + 1}B"] = str(width)
        keywords[f"$P{i + 1}R"] = str(ranges[i] if ranges is not None else 262144)
        keywords[f"$P{i + 1}E"] = amplification[i] if amplification is not None else "0,0"
        if gains is not None and gains[i] is not None:
            keywords[f"$P{i + 1}G"] = str(gains[i])
    keywords.update(extra or {})
    for key in drop:
        keywords.pop(key, None)

    def text(begin: int) -> bytes:
        end = begin + len(raw) - 1
        following_at = begin + len(raw) + len(trailing) if following is not None else 0
        items = {**keywords, "$BEGINDATA": str(begin), "$ENDDATA": str(end),
                 "$BEGINANALYSIS": "0", "$ENDANALYSIS": "0", "$BEGINSTEXT": "0",
                 "$ENDSTEXT": "0", "$NEXTDATA": str(following_at)}
        for key in drop:
            items.pop(key, None)
        return ("|" + "".join(f"{k}|{v}|" for k, v in items.items())).encode("latin-1")

    begin = 58
    for _ in range(5):  # the offsets are written in the TEXT they follow: iterate
        begin = 58 + len(text(begin)) + gap
    body = text(begin)
    assert 58 + len(body) + gap == begin
    header = f"FCS{version:<7}".encode() + "".join(
        f"{v:>8}" for v in (58, 57 + len(body), begin, begin + len(raw) - 1, 0, 0)).encode()
    return header + body + b" " * gap + raw + trailing + (following or b"")
