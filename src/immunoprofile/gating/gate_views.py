"""What each placed gate saw: its parent population binned on the gate's display axes.

A gating plot needs far less than the tube's events: the axes' ranges, a density of a
few thousand bins, the gate's outline (and its template seed) and the corner where the
count goes. Adaptive gating has all of it while it places the gates — the subsampled
events, compensated and transformed as the gates see them, and each gate's parent among
them — so it bins them there (:func:`placement_views`), and a batch writes them beside
the placed gates (``OUT/gates/<sample_id>.views.npz``, :mod:`immunoprofile.io.gate_views_file`).
The report draws its plots from those files: a batch of 10,000 tubes is drawn without
reading or gating one tube again, and without the FCS files being where they were.

The same functions draw a plot from a whole tube (:func:`immunoprofile.report.plot_gates`
on a file, the engine's memberships): one geometry for both, so the report's plots and
``immunoprofile plot``'s differ only in which events were binned — the placement's
subsample (every k-th event, at most :data:`~immunoprofile.gating.placement.SUBSAMPLE`)
or up to :data:`MAX_PLOTTED_EVENTS` of the parent's events chosen at random.

Small functions over numpy arrays and the template's dimensions; no I/O, no FlowKit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .density import histogram_2d
from .density_kernels import finite_range, histogram_with_tails

#: Bins per axis of a 2-D density, and of a 1-D histogram.
BINS_2D, BINS_1D = 160, 128
#: Plotted events per gate at most when a plot is drawn from a whole tube (a random subset
#: beyond this; counts use all events).
MAX_PLOTTED_EVENTS = 60_000


@dataclass
class GateView:
    """One gate's plot without its count: axes, density, outlines.

    Attributes
    ----------
    gate_id, title, parent_id : str
        The gate, the plot's title (the gate, with ``— UNCERTAIN`` or ``— FALLBACK`` when
        placement was not sure) and the parent (``"all events"`` for a root gate).
    x_label, y_label : str
        Axis labels (marker, channel, scale); ``y_label`` is "events" for a 1-D gate.
    xlim, ylim : tuple of float
        Axes ranges, plot units (for a 1-D gate ``ylim`` is the count range, events).
    x_ticks, y_ticks : list of (float, str) or None
        Ticks at decades of signal on a logicle axis; None: the renderer chooses.
    density : numpy.ndarray
        Events per bin (int): (BINS_2D, BINS_2D), x first, or (BINS_1D,) over ``xlim``.
    outline, seed_outline : numpy.ndarray or None
        The gate and the template's seed as drawn, clipped to the axes, (n, 2).
    corner : tuple of float
        Where the count goes, axes fractions (the emptiest corner).
    binned_events : int
        The parent's events binned (of a subsample when drawn during placement), events.
    """

    gate_id: str
    title: str
    parent_id: str
    x_label: str
    y_label: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    x_ticks: list | None
    y_ticks: list | None
    density: np.ndarray
    outline: np.ndarray
    seed_outline: np.ndarray | None
    corner: tuple[float, float]
    binned_events: int


#: One plotted axis: the values of every event (plot units), its label, its ticks.
Axis = tuple[np.ndarray, str, list | None]


def axis_label(marker: str | None, channel: str, logicle: bool) -> str:
    """``"CD4 FL2-A (signal, logicle scale)"``; a scatter channel is ``linear``."""
    scale = "signal, logicle scale" if logicle else "linear"
    return f"{marker + ' ' if marker else ''}{channel} ({scale})"


def decade_ticks(forward: Callable[[np.ndarray], np.ndarray]) -> list[tuple[float, str]]:
    """Tick positions (plot units) and labels at decades of signal, 0 and 10²…10⁵."""
    values = np.array([0.0, 1e2, 1e3, 1e4, 1e5])
    labels = ["0", "10²", "10³", "10⁴", "10⁵"]
    return list(zip(forward(values).tolist(), labels, strict=True))


def box(bounds) -> np.ndarray:
    """A range gate's outline; an open bound (None) is infinite, clipped to the axes."""
    (lo_x, hi_x) = bounds[0]
    lo_y, hi_y = bounds[1] if len(bounds) > 1 else (None, None)
    xs = [lo_x if lo_x is not None else -np.inf, hi_x if hi_x is not None else np.inf]
    ys = [lo_y if lo_y is not None else -np.inf, hi_y if hi_y is not None else np.inf]
    return np.array([[xs[0], ys[0]], [xs[1], ys[0]], [xs[1], ys[1]], [xs[0], ys[1]],
                     [xs[0], ys[0]]], dtype=float)


def limits(values: np.ndarray, bounds: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Axes range: the bulk of the events (0.1–99.9 %, :func:`bulk_range`) and every
    finite gate bound, 5 % padded."""
    lo, hi = bulk_range(values)
    b = np.asarray(bounds, dtype=np.float64).ravel()
    b = b[np.isfinite(b)]
    if b.size:
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    pad = 0.05 * (hi - lo or 1.0)
    if not np.isfinite(pad):  # a float64 file's values spanning more than the largest float
        pad = 0.05 * hi - 0.05 * lo
    largest = float(np.finfo(np.float64).max)
    return max(lo - pad, -largest), min(hi + pad, largest)


#: Bins of each pass of :func:`bulk_range`.
_RANGE_BINS = 2048
#: At most this many finite values, :func:`bulk_range` gives ``np.percentile``'s quantiles.
_PERCENTILE_EVENTS = 4096


def bulk_range(values: np.ndarray) -> tuple[float, float]:
    """Where the 0.1 % and 99.9 % quantiles of the finite values lie, to within 1/256 of
    the bulk's width: an axis range.

    Read from equal-bin histograms (one compiled pass each, no copy of the values) instead
    of a partial sort: a first over the values' whole range and, while far outliers leave
    the bulk fewer than 256 of its bins, another over the bins that hold the two quantiles
    (at most four passes). The range
    returned holds the values of ranks ⌊0.001 (n − 1)⌋ and ⌈0.999 (n − 1)⌉, between which
    ``np.percentile`` interpolates; of at most 4,096 values, it is ``np.percentile``'s 0.1
    and 99.9 % themselves. (0, 1) with no finite value.
    """
    v = np.ascontiguousarray(values, dtype=np.float64)
    lo, hi, n = finite_range(v)
    if n == 0:
        return 0.0, 1.0
    if n <= _PERCENTILE_EVENTS:
        # few values: the quantiles themselves (a lone far event must not set the range,
        # and the ranks' neighbours are far apart), a partial sort of a few thousand
        q = np.percentile(v[np.isfinite(v)], [0.1, 99.9])
        return float(q[0]), float(q[1])
    ranks = (int(np.floor(0.001 * (n - 1))), int(np.ceil(0.999 * (n - 1))))
    for _ in range(4):
        if hi <= lo:
            break
        width = (hi - lo) / _RANGE_BINS
        cum = np.cumsum(histogram_with_tails(v, lo, hi, _RANGE_BINS))  # [below, bins…, above]
        first = int(np.searchsorted(cum, ranks[0] + 1))  # 1 + the bin of that rank
        last = int(np.searchsorted(cum, ranks[1] + 1))
        # a bin wider on each side: a value on an edge may have been counted beside it
        lo, hi = (lo + width * (first - 2) if first > 2 else lo,
                  lo + width * (last + 1) if last + 1 < _RANGE_BINS else hi)
        if last - first >= _RANGE_BINS // 8:  # fine enough: no far outlier coarsened it
            break
    return lo, hi


def clip(outline: np.ndarray, xlim, ylim) -> np.ndarray:
    """An outline with its infinite (open) coordinates at the axes' edges."""
    out = np.array(outline, dtype=float)
    out[:, 0] = np.clip(out[:, 0], *xlim)
    out[:, 1] = np.clip(out[:, 1], *ylim)
    return out


def emptiest_corner(density: np.ndarray) -> tuple[float, float]:
    """Axes fractions of the corner whose neighbourhood (30 % of the width, 20 % of the
    height) holds the fewest binned events, for the count's label."""
    if density.ndim == 1:
        return 0.98, 0.98
    nx, ny = density.shape
    wx, wy = max(1, round(0.3 * nx)), max(1, round(0.2 * ny))
    corners = {(0.02, 0.02): density[:wx, :wy], (0.98, 0.02): density[-wx:, :wy],
               (0.02, 0.98): density[:wx, -wy:], (0.98, 0.98): density[-wx:, -wy:]}
    crowd = [int(part.sum()) for part in corners.values()]
    return list(corners)[int(np.argmin(crowd))]


def bin_view(gate_id: str, title: str, parent_id: str, axes: list[Axis], keep: np.ndarray,
             outline: np.ndarray, bounds: list[list[float]],
             seed_outline: np.ndarray | None) -> GateView:
    """A gate's view from its parent's events ``keep`` (indices into the axes' values).

    Parameters
    ----------
    gate_id, title, parent_id : str
    axes : list of Axis
        One (1-D gate) or two plotted axes: every event's values, label, ticks.
    keep : numpy.ndarray
        Indices of the parent's events to bin.
    outline, seed_outline : numpy.ndarray
        The gate and its seed in plot units (infinite coordinates for open bounds).
    bounds : list of sequences of float
        Per plotted axis, the gate's finite coordinates the axes must show.
    """
    x_all, x_label, x_ticks = axes[0]
    x = x_all[keep]
    if len(axes) == 1:
        xlim = limits(x, bounds[0])
        density, _ = np.histogram(x[np.isfinite(x)], bins=BINS_1D, range=xlim)
        ylim = (0.5, 2.0 * max(float(density.max(initial=0)), 1.0))  # log scale, events
        y_label, y_ticks = "events", None
    else:
        y_all, y_label, y_ticks = axes[1]
        y = y_all[keep]
        xlim, ylim = limits(x, bounds[0]), limits(y, bounds[1])
        ok = np.isfinite(x) & np.isfinite(y)
        density = histogram_2d(x[ok], y[ok], xlim, ylim, BINS_2D, dtype=np.int64)
    return GateView(
        gate_id=gate_id, title=title, parent_id=parent_id, x_label=x_label, y_label=y_label,
        xlim=(float(xlim[0]), float(xlim[1])), ylim=(float(ylim[0]), float(ylim[1])),
        x_ticks=x_ticks, y_ticks=y_ticks, density=density, outline=clip(outline, xlim, ylim),
        seed_outline=clip(seed_outline, xlim, ylim) if seed_outline is not None else None,
        corner=emptiest_corner(density), binned_events=int(keep.size))


@dataclass
class PlacedAxes:
    """A placed gate's plot, before binning: its axes, outlines and the events to bin."""

    gate_id: str
    title: str
    parent_id: str
    axes: list[Axis]
    outline: np.ndarray
    bounds: list[list[float]]
    seed_outline: np.ndarray
    keep: np.ndarray

    def view(self) -> GateView:
        """Binned (:func:`bin_view`)."""
        return bin_view(self.gate_id, self.title, self.parent_id, self.axes, self.keep,
                        self.outline, self.bounds, self.seed_outline)


def placed_axes(template, placement, scaled: Callable, parent_of: Callable[[str | None],
                                                                             np.ndarray],
                marker_of: dict[str, str], select: Callable[[np.ndarray], np.ndarray]
                ) -> list[PlacedAxes]:
    """Every placed (non-Boolean) gate's plot, on the template's display axes.

    Parameters
    ----------
    template : AdaptiveTemplate
        The fitted template the gates were placed from (seeds, transforms).
    placement : Placement
    scaled : callable
        ``scaled(dimension)`` → every event's values on the dimension's scale.
    parent_of : callable
        ``parent_of(gate_id or None)`` → bool per event: the gate's parent (None: all).
    marker_of : dict
        Channel → marker, for the axis labels.
    select : callable
        Indices of a parent's events → those to bin (all, or a random subset).
    """
    from ..engine.plain import PlainBoolean, PlainPolygon
    from .placement import densify

    seeds = {g.gate_id: g for g in template.gates}
    out = []
    for gate, report in zip(placement.gates, placement.reports, strict=True):
        if isinstance(gate, PlainBoolean):
            continue
        seed = seeds[gate.gate_id]
        dims = seed.dimensions
        axes = [(scaled(d), axis_label(marker_of.get(d.channel), d.channel,
                                       d.transform is not None),
                 decade_ticks(d.to_scale) if d.transform is not None else None)
                for d in dims[:2]]
        if isinstance(gate, PlainPolygon):
            raw = densify(np.asarray(gate.vertices), 0.002)  # straight in signal units
            outline = np.column_stack([dims[0].to_scale(raw[:, 0]),
                                       dims[1].to_scale(raw[:, 1])])
            outline = np.vstack([outline, outline[:1]])
            seed_outline = np.asarray(seed.vertices, float)
            seed_outline = np.vstack([seed_outline, seed_outline[:1]])
            bounds = [outline[:, 0], outline[:, 1]]
        else:
            on_scale = [(None if lo is None else float(d.to_scale(np.array([lo]))[0]),
                         None if hi is None else float(d.to_scale(np.array([hi]))[0]))
                        for d, (lo, hi) in zip(dims, gate.bounds, strict=True)]
            outline = box(on_scale)
            seed_outline = box([(d.lo, d.hi) for d in dims])
            bounds = [[b for b in pair if b is not None] for pair in on_scale]
        title = gate.gate_id if report.status in ("placed", "seed") else \
            f"{gate.gate_id} — {report.status.upper()}"
        keep = select(np.flatnonzero(parent_of(gate.parent_id)))
        out.append(PlacedAxes(gate.gate_id, title, gate.parent_id or "all events", axes,
                              outline, bounds[:len(axes)], seed_outline, keep))
    return out


def placement_views(template, placement, marker_of: dict[str, str]) -> list[GateView]:
    """The views of a tube's placed gates, binned from the subsample they were placed on
    (the placement's own events and parent memberships: nothing is read or gated again).

    Parameters
    ----------
    template : AdaptiveTemplate
    placement : Placement
        As :func:`~immunoprofile.gating.placement.place_gates` returns it (with the
        subsample it was placed on).
    marker_of : dict
        Channel → marker.
    """
    sample = placement.subsample
    if sample is None:
        raise ValueError("this placement keeps no subsample (read back from a run?)")

    def parent_of(gate_id: str | None) -> np.ndarray:
        return sample.masks[gate_id] if gate_id else np.ones(sample.n, dtype=bool)

    return [p.view() for p in placed_axes(template, placement, sample.scaled, parent_of,
                                          marker_of, lambda keep: keep)]


#: Format tag of :func:`pack_views` data.
VIEWS_FORMAT = "immunoprofile-gate-views-1"


def gates_digest(gating_ml: str) -> str:
    """SHA-256 of a tube's placed gates as written (``OUT/gates/<sample_id>.xml``): what
    its views file names, so that views are never drawn beside other gates."""
    import hashlib

    return hashlib.sha256(gating_ml.encode("utf-8")).hexdigest()


def pack_views(views: list[GateView], gates_sha256: str | None = None) -> bytes:
    """A tube's views as ``.npz`` bytes (what ``OUT/gates/<sample_id>.views.npz`` holds: a
    few kB a tube, so a batch keeps thousands in memory until it writes them).

    The densities are stored as counts (uint16 where they fit, else uint32), the outlines
    as float64, the rest as JSON; deflated at level 1 (``np.savez_compressed``'s level 6
    took 3 ms a tube, most of what binning the views cost, for files a fifth smaller).
    """
    import io
    import json
    import zipfile

    meta = []
    arrays: dict[str, np.ndarray] = {}
    for k, v in enumerate(views):
        meta.append({"gate_id": v.gate_id, "title": v.title, "parent_id": v.parent_id,
                     "x_label": v.x_label, "y_label": v.y_label, "xlim": list(v.xlim),
                     "ylim": list(v.ylim), "x_ticks": v.x_ticks, "y_ticks": v.y_ticks,
                     "corner": list(v.corner), "binned_events": v.binned_events,
                     "seed": v.seed_outline is not None})
        density = np.asarray(v.density)
        arrays[f"density_{k}"] = density.astype(
            np.uint16 if density.max(initial=0) < 2 ** 16 else np.uint32)
        arrays[f"outline_{k}"] = np.asarray(v.outline, dtype=np.float64)
        if v.seed_outline is not None:
            arrays[f"seed_{k}"] = np.asarray(v.seed_outline, dtype=np.float64)
    arrays["meta"] = np.array(json.dumps({"format": VIEWS_FORMAT, "views": meta,
                                          "gates_sha256": gates_sha256}))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=1) as archive:  # an .npz, as np.load reads it
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def unpack_views(data: bytes, gates_sha256: str | None = None) -> list[GateView]:
    """The views :func:`pack_views` wrote; with ``gates_sha256`` (:func:`gates_digest` of
    the placed gates they are to be drawn with), only if they were binned for those gates
    (a file that names none, from before the digest was kept, is taken as it is).

    Raises
    ------
    ValueError
        Not such data (another format, damaged, a field missing).
    """
    import io
    import json
    import zipfile
    import zlib

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != VIEWS_FORMAT:
                raise ValueError("not gate views of this version")
            written_for = meta.get("gates_sha256")
            if gates_sha256 is not None and written_for is not None and \
                    written_for != gates_sha256:
                raise ValueError("binned for other placed gates than the tube's gates file "
                                 "(a file of another run?)")
            views = []
            for k, m in enumerate(meta["views"]):
                views.append(GateView(
                    gate_id=str(m["gate_id"]), title=str(m["title"]),
                    parent_id=str(m["parent_id"]), x_label=str(m["x_label"]),
                    y_label=str(m["y_label"]), xlim=tuple(map(float, m["xlim"])),
                    ylim=tuple(map(float, m["ylim"])),
                    x_ticks=[tuple(t) for t in m["x_ticks"]] if m["x_ticks"] else None,
                    y_ticks=[tuple(t) for t in m["y_ticks"]] if m["y_ticks"] else None,
                    density=npz[f"density_{k}"].astype(np.int64),
                    outline=npz[f"outline_{k}"],
                    seed_outline=npz[f"seed_{k}"] if m["seed"] else None,
                    corner=tuple(map(float, m["corner"])),
                    binned_events=int(m["binned_events"])))
    except (OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error,
            NotImplementedError) as exc:  # the last two: a damaged deflate stream or header
        raise ValueError(f"unreadable gate views ({type(exc).__name__}: {exc})") from None
    return views
