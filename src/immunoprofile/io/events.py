"""A tube's events as the gating engine reads them: the file's DATA segment, mapped.

FlowIO reads the HEADER and TEXT (``only_text=True``) and checks the segment offsets. What
this module does beyond FlowIO, and why: FlowIO decodes DATA into a Python ``array`` and
then a float64 matrix with gain and log scaling applied — two full copies, eight bytes per
value. Here the DATA segment is memory-mapped in the file's own type (float32, float64 or
unsigned integers of one width) and the kernel applies FlowIO's preprocessing per value as
it goes (time step, ``$PnE`` log decoding, ``$PnG`` gain, the ``$PnR`` bit mask of integer
data). Big-endian files are byte-swapped once (Numba reads native order only). Layouts the
map cannot express (mixed integer widths, ASCII) are decoded by FlowIO itself.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import flowio
import numpy as np

from ..errors import FCSReadError, first_line
from .data_offsets import Layout, candidates, locate_data


@dataclass
class EventData:
    """The events of one tube plus what the kernel needs to decode them.

    Attributes
    ----------
    data : numpy.ndarray
        (events, channels) in the file's stored type, or float64 already decoded.
    pnn, pns : list of str
        ``$PnN`` and ``$PnS`` per channel (``""`` where ``$PnS`` is absent).
    mask : numpy.ndarray
        uint64 bit mask per channel (``NO_MASK``: none).
    scale, decades, log0, value_range, gain : numpy.ndarray
        float64 per channel: time step, ``$PnE`` decades and log(0) value, ``$PnR``,
        ``$PnG``; identity values where the data are already decoded.
    fluoro_indices : list of int
        Fluorescence channels (FlowIO's rule, adjustable as FlowKit's ``Sample`` is).
    spill : str or None
        The ``$SPILLOVER``/``$SPILL`` text.
    null_channels : list of str
    name : str
    text : dict
        TEXT keywords as FlowIO gives them (lower case, no ``$``).
    """

    data: np.ndarray
    pnn: list[str]
    pns: list[str]
    mask: np.ndarray
    scale: np.ndarray
    decades: np.ndarray
    log0: np.ndarray
    value_range: np.ndarray
    gain: np.ndarray
    fluoro_indices: list[int]
    spill: str | None = None
    null_channels: list[str] = field(default_factory=list)
    name: str = ""

    text: dict = field(default_factory=dict)

    @property
    def event_count(self) -> int:
        """Events in the tube, events."""
        return int(self.data.shape[0])

    def decoded(self, columns=None, rows=None) -> np.ndarray:
        """Untransformed values, decoded as the gating kernel decodes them (FlowIO's rules:
        the ``$PnR`` bit mask of integer data, time step, ``$PnE`` log amplification,
        ``$PnG`` gain), in numpy.

        Parameters
        ----------
        columns : sequence of int, optional
            Channel indices (all by default).
        rows : numpy.ndarray, optional
            Event indices (all by default).

        Returns
        -------
        numpy.ndarray
            float64, (rows, columns).
        """
        columns = range(self.data.shape[1]) if columns is None else columns
        data = self.data if rows is None else self.data[rows]
        out = np.empty((data.shape[0], len(columns)))
        for j, c in enumerate(columns):
            raw = data[:, c]
            if self.mask[c] != NO_MASK:
                x = (raw.astype(np.uint64) & np.uint64(self.mask[c])).astype(np.float64)
            else:
                x = raw.astype(np.float64)
            if self.scale[c] != 1.0:
                x = x * self.scale[c]
            if self.decades[c] > 0.0:
                x = (10.0 ** (self.decades[c] * x / self.value_range[c])) * self.log0[c]
            if self.gain[c] not in (1.0, 0.0):
                x = x / self.gain[c]
            out[:, j] = x
        return out

    @classmethod
    def from_sample(cls, sample) -> EventData:
        """Wrap a FlowKit ``Sample`` (its raw events are already decoded, float64)."""
        events = sample.get_events(source="raw")
        n = events.shape[1]
        meta = sample.metadata
        spill = meta.get("spillover", meta.get("spill"))
        return cls(
            data=events, pnn=list(sample.pnn_labels),
            pns=[p or "" for p in sample.pns_labels],
            mask=np.full(n, NO_MASK, dtype=np.uint64), scale=np.ones(n), decades=np.zeros(n),
            log0=np.zeros(n), value_range=np.ones(n), gain=np.ones(n),
            fluoro_indices=list(sample.fluoro_indices), spill=spill,
            null_channels=list(sample.null_channels or []), name=str(sample.id),
            text=dict(meta),
        )


#: ``mask`` value of a channel whose stored values are used as they are (float data, or
#: integers FlowIO does not mask); a mask of 0 is real (FlowIO clears every bit).
NO_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@contextlib.contextmanager
def quiet_flowio():
    """Silence FlowIO's and FlowKit's warnings while reading: what they notice becomes our
    errors, or is checked by us.

    ``warnings.catch_warnings`` swaps process-wide state and is not thread-safe, so in a
    worker thread nothing is changed here: the batch sets the same filters once, around
    its thread pool (:func:`immunoprofile.pipeline.batch.gate_batch`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="flowio")
        warnings.filterwarnings("ignore", module="flowkit")
        yield


def _next_power_of_2(x: int) -> int:
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def _integer_layout(text: dict, n_par: int, byteorder: str, mask: np.ndarray):
    """(dtype, masks) of integer DATA with one width of 8, 16 or 32 bits, else (None, …).

    Anything else (mixed widths, ``$PnB`` of ``*``, unreadable ``$PnR``) is left to FlowIO.
    """
    try:
        widths = {int(text.get(f"p{i}b", "0")) for i in range(1, n_par + 1)}
        ranges = [_next_power_of_2(int(float(text[f"p{i}r"]))) for i in range(1, n_par + 1)]
    except (KeyError, ValueError):
        return None, mask
    if len(widths) != 1 or not widths <= {8, 16, 32}:
        return None, mask
    bits = widths.pop()
    if any(2**bits > r for r in ranges):  # FlowIO masks every channel then
        mask = np.array([r - 1 for r in ranges], dtype=np.uint64)
    return np.dtype(byteorder + {8: "u1", 16: "u2", 32: "u4"}[bits]), mask


class _ForReadFcs(FCSReadError):
    """What this path leaves to :func:`read_fcs` to decide (which of two DATA offset pairs
    is right, which data set to read): where it refuses, its reason is the one shown."""


def _data_offsets(path: Path, flow: flowio.FlowData) -> tuple[int, int]:
    """The DATA offsets FlowIO reads by, where HEADER and TEXT agree on the first byte.

    Which of two different pairs is right is decided by the events they give
    (:func:`immunoprofile.io.data_offsets.locate_data`), which :func:`read_fcs` does: a
    disagreement here is handed to it. FlowIO itself refuses one in an FCS 3 file but reads
    an FCS 2.0 file by its HEADER whatever its TEXT says. A lone statement (FCS 2.0
    HEADER only) is checked as ``read_fcs`` checks it.
    """
    found = candidates(flow.header, flow.text)
    if len({c.start for c in found}) > 1:
        raise _ForReadFcs(f"{path.name}: HEADER and TEXT give different DATA offsets "
                          f"({found[-1]}, {found[0]})")
    layout = Layout.from_text(flow.text)
    if layout is not None and len(found) == 1:  # the lone statement's checks
        locate_data(path, np.memmap(path, dtype=np.uint8, mode="r"), flow.header,
                    flow.text, layout)
    header = flow.header
    if flow.version == "2.0":
        return header["data_start"], header["data_stop"]
    start, stop = int(flow.text["begindata"]), int(flow.text["enddata"])
    return start, stop


def read_events(path: str | Path) -> EventData:
    """Map one FCS file's events for the gating kernel.

    Files this fast path refuses (24-bit integers, offsets FlowIO needs options for or
    that HEADER and TEXT disagree on, several data sets, a broken ``$TIMESTEP``) are read by
    :func:`immunoprofile.io.fcs_reader.read_fcs` instead, already decoded; a file both
    refuse keeps this path's reason.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    EventData

    Raises
    ------
    FCSReadError
        Neither path can read the file.
    """
    path = Path(path)
    try:
        return _read_events_natively(path)
    except FCSReadError as native_error:
        from .fcs_reader import read_fcs

        try:
            fcs = read_fcs(path)
        except FCSReadError:
            if isinstance(native_error, _ForReadFcs):
                raise  # what read_fcs decides, it explains
            raise native_error from None
    n = len(fcs.channels)
    # FlowIO's rule for fluorescence channels (what FlowKit compensates).
    fluoro = [i for i, name in enumerate(fcs.channels)
              if name.lower()[:4] not in ("fsc-", "ssc-", "time")]
    keywords = {str(k).lower(): v for k, v in fcs.keywords.items()}
    return EventData(
        data=fcs.events, pnn=list(fcs.channels), pns=list(fcs.markers),
        mask=np.full(n, NO_MASK, dtype=np.uint64), scale=np.ones(n), decades=np.zeros(n),
        log0=np.zeros(n), value_range=np.ones(n), gain=np.ones(n), fluoro_indices=fluoro,
        spill=keywords.get("spillover", keywords.get("spill")), name=path.name,
        text=dict(fcs.keywords))


def _read_events_natively(path: Path) -> EventData:
    """FlowIO's TEXT, DATA memory-mapped in its stored type (see :func:`read_events`)."""
    size = path.stat().st_size
    try:
        with quiet_flowio():
            flow = flowio.FlowData(str(path), only_text=True)
        n_par = int(flow.channel_count)
        n_tot = int(flow.event_count)
    except EOFError:
        raise FCSReadError(
            f"{path.name}: truncated — the file ends inside its TEXT segment ({size} bytes)"
        ) from None
    except (flowio.exceptions.DataOffsetDiscrepancyError,
            flowio.exceptions.MultipleDataSetsError) as exc:
        raise _ForReadFcs(f"{path.name}: {first_line(exc)}") from None
    except Exception as exc:  # FlowIO raises many types for malformed files
        reason = first_line(exc)
        if "greater than file size" in reason:
            reason = f"truncated — the DATA segment runs past the end of the file ({size} bytes)"
        raise FCSReadError(f"{path.name}: cannot be read as FCS: {reason}") from None
    text = flow.text
    start, stop = _data_offsets(path, flow)
    byteorder = {"1,2,3,4": "<", "1,2": "<", "4,3,2,1": ">", "2,1": ">"}.get(
        text.get("byteord", ""), "=")
    datatype = text.get("datatype", "").lower()
    mask = np.full(n_par, NO_MASK, dtype=np.uint64)
    dtype = None
    if text.get("mode", "l").lower() == "l":
        if datatype == "f":
            dtype = np.dtype(byteorder + "f4")
        elif datatype == "d":
            dtype = np.dtype(byteorder + "f8")
        elif datatype == "i":
            dtype, mask = _integer_layout(text, n_par, byteorder, mask)
    if dtype is not None:
        declared = stop - start + 1
        needed = n_tot * n_par * dtype.itemsize
        if declared != needed:
            decoded = max(declared, 0) // (n_par * dtype.itemsize)
            if decoded == n_tot:  # whole events agree; a few bytes too many (off by one)
                raise FCSReadError(
                    f"{path.name}: its DATA segment is {declared} bytes but {n_tot} events × "
                    f"{n_par} channels × {dtype.itemsize} bytes make {needed} — inconsistent "
                    "data offsets")
            raise FCSReadError(
                f"{path.name}: its DATA segment decodes to {decoded} events but $TOT says "
                f"{n_tot} — the file is damaged ($PAR, $DATATYPE or $PnB wrong) or truncated")
        if start + needed > size:
            raise FCSReadError(f"{path.name}: cannot be read as FCS: truncated — the DATA "
                               f"segment runs past the end of the file ({size} bytes)")
        data = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=(n_tot, n_par))
        if not dtype.isnative:
            data = data.astype(dtype.newbyteorder("="))
    else:
        try:
            with quiet_flowio():
                full = flowio.FlowData(str(path))
            data = full.as_array(preprocess=False)
        except Exception as exc:
            raise FCSReadError(f"{path.name}: cannot be read as FCS: {first_line(exc)}") \
                from None
        if data.shape[0] != n_tot:
            raise FCSReadError(
                f"{path.name}: its DATA segment decodes to {data.shape[0]} events but $TOT "
                f"says {n_tot} — the file is damaged ($PAR, $DATATYPE or $PnB wrong) or "
                "truncated")
    scale = np.ones(n_par)
    if "timestep" in text and flow.time_index is not None:
        try:
            scale[flow.time_index] = float(text["timestep"])
        except ValueError:
            scale[flow.time_index] = 1.0
    # Indexed by channel number, as FlowIO applies them to DATA columns (a channel without
    # $PnN is missing from FlowIO's channel list but not from DATA).
    decades, log0 = np.zeros(n_par), np.zeros(n_par)
    value_range, gain = np.ones(n_par), np.ones(n_par)
    for number, channel in flow.channels.items():
        column = int(number) - 1
        if 0 <= column < n_par:
            decades[column], log0[column] = channel["pne"]
            value_range[column] = channel["pnr"]
            gain[column] = channel["png"]
    return EventData(
        data=data, pnn=list(flow.pnn_labels), pns=[p or "" for p in flow.pns_labels],
        mask=mask, scale=scale, decades=decades, log0=log0, value_range=value_range,
        gain=gain, fluoro_indices=list(flow.fluoro_indices),
        spill=text.get("spillover", text.get("spill")), name=path.name, text=dict(text),
    )
