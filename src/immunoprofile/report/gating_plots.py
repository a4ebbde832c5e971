"""Gating plots: each gate's parent population on the gate's own axes, the gate drawn over.

The picture a cytometrist checks before trusting a number. For every gate of a tube's
template: the parent's events, compensated and transformed exactly as the gate sees them
(FlowKit's compensation with the file's spillover, FlowKit's transforms from the template),
as a density plot; the gate's outline on top; the gate's events and percentage of the
parent in the corner. Membership comes from the compiled engine (equal to FlowKit's).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import GatingError, first_line
from ..gating.density import histogram_2d
from .plot_svg import BINS_1D, BINS_2D, RED, SEED_GREY, PlotSpec, gate_plot_svg

if TYPE_CHECKING:
    from ..gating.panels import PanelSet
    from ..gating.placement import Placement

#: Plotted events per gate at most (a random subset beyond this; counts use all events).
MAX_PLOTTED_EVENTS = 60_000


@dataclass
class GatePlot:
    """One gate's plot and the numbers on it.

    Attributes
    ----------
    gate_id, parent_id : str
        The gate and its parent (``"all events"`` for a root gate).
    spec : PlotSpec
        What the plot shows (density, outlines, axes, labels); :attr:`svg` and
        :attr:`png` draw it.
    events, parent_events : int
        Events in the gate and in its parent, events.
    x_label, y_label : str
        Axis labels (marker, channel, transform); ``y_label`` is "events" for a 1-D gate
        (from ``spec``, as are the three below).
    xlim, ylim : tuple of float
        The plotted axes' ranges, in transformed units.
    outline : numpy.ndarray
        The gate's outline as drawn, shape (n, 2), in transformed units (for a 1-D gate,
        x from its bounds, y spanning the axes).
    x, y : numpy.ndarray
        The plotted parent events (y is empty for a 1-D gate), transformed units.
    in_gate : numpy.ndarray of bool
        Which plotted events the engine put in the gate.
    """

    gate_id: str
    parent_id: str
    spec: PlotSpec = field(repr=False)
    events: int
    parent_events: int
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    in_gate: np.ndarray = field(repr=False)

    @property
    def x_label(self) -> str:
        return self.spec.x_label

    @property
    def y_label(self) -> str:
        return self.spec.y_label

    @property
    def xlim(self) -> tuple[float, float]:
        return self.spec.xlim

    @property
    def ylim(self) -> tuple[float, float]:
        return self.spec.ylim

    @property
    def outline(self) -> np.ndarray:
        return self.spec.outline

    @property
    def percent_of_parent(self) -> float:
        """Events in the gate as % of the parent's events."""
        return 100.0 * self.events / self.parent_events if self.parent_events else float("nan")

    @cached_property
    def svg(self) -> str:
        """The plot as SVG text (what the report embeds: milliseconds to draw)."""
        return gate_plot_svg(self.spec)

    @cached_property
    def png(self) -> bytes:
        """The plot as a PNG image, drawn by Matplotlib (``immunoprofile plot`` files)."""
        return _render_png(self.spec)

    def __repr__(self) -> str:
        share = (f"{self.percent_of_parent:.3g} % of {self.parent_id}"
                 if self.parent_events else f"parent {self.parent_id} empty")
        return (f"<GatePlot {self.gate_id}: {self.events:,} of {self.parent_events:,} events "
                f"({share}); {self.x_label} × {self.y_label}; drawn by .svg and .png>")

    def _repr_png_(self) -> bytes:
        """The plot itself, for Jupyter and IPython (shown instead of the repr)."""
        return self.png


def plot_gates(path: str | Path, *, tube: str | None = None,
               templates: str | Path | None = None,
               gating: str = "adaptive", placement: Placement | None = None,
               panels: PanelSet | None = None) -> list[GatePlot]:
    """Plot every gate of one FCS tube.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    tube : str, optional
        The tube (``nk``, ``cd4``, ``cd8`` or one of ``panels``), detected from the
        markers when omitted.
    templates : str or Path, optional
        Folder of Gating-ML templates instead of the shipped ones of the gating mode.
    gating : {"adaptive", "fixed"}
        ``adaptive``: the gates placed for this tube (as ``immunoprofile gate`` places
        them), drawn in red, with the template's seed position faint and dashed beside
        them; ``fixed``: the template's gates.
    placement : Placement, optional
        With adaptive gating, the gates a run placed and counted for this tube
        (:func:`immunoprofile.gating.adaptive_gating.placement_from_run`): they are drawn
        as they are, not placed again. Without it, the gates are placed here, as
        ``immunoprofile gate`` places them.

    Returns
    -------
    list of GatePlot
        In gating order (parents first).

    Raises
    ------
    ImmunoprofileError
        The file cannot be read or gated.
    """
    from ..gating.compiled_gating import gate_tube_compiled
    from ..gating.panels import detect_panel
    from ..gating.templates import (
        adaptive_template_dir,
        channel_map,
        load_strategy,
        uses_adaptation,
    )
    from ..io.fcs import read_tube

    path = Path(path)
    tube_data = read_tube(path)
    if panels is not None and any(p.aliases for p in panels.values()):
        tube_data = replace(tube_data, markers=panels.markers_of(tube_data.events.pnn,
                                                                 tube_data.events.pns))
    panel = detect_panel(tube_data.markers, expected=tube, source=path.name, panels=panels)
    template_arg = str(templates) if templates is not None else \
        str(adaptive_template_dir()) if gating == "adaptive" else None
    if gating == "adaptive" and uses_adaptation(panel, template_arg):
        return _plot_placed(tube_data, panel, template_arg, placement)
    memberships = gate_tube_compiled(tube_data, panel, template_arg)
    mapping = channel_map(panel, tube_data.markers, tube_data.scatter, source=path.name)
    strategy = load_strategy(panel, mapping, template_arg)
    sample = tube_data.sample
    raw = sample.get_events(source="raw")
    compensated: dict[str, np.ndarray | None] = {}

    def events_for(ref: str | None) -> np.ndarray | None:
        """Events as the gate sees them: raw, the file's spillover ("FCS"), or a matrix the
        template defines."""
        if ref in (None, "uncompensated"):
            return raw
        if ref not in compensated:
            try:
                if ref == "FCS":
                    matrix = sample.metadata.get("spill") or sample.metadata.get("spillover")
                else:
                    matrix = strategy.get_comp_matrix(ref)
                if matrix is None or (isinstance(matrix, str) and not matrix.strip()):
                    compensated[ref] = None
                else:
                    sample.apply_compensation(matrix)
                    compensated[ref] = sample.get_events(source="comp")
            except Exception as exc:  # FlowKit's errors are not ours: one line
                raise GatingError(f"{path.name}: cannot compensate with {ref} for plotting: "
                                  f"{first_line(exc)}") from None
        return compensated[ref]

    labels = list(sample.pnn_labels)
    marker_of = {channel: marker for marker, channel in tube_data.markers.items()}
    rng = np.random.default_rng(0)
    plots = []
    for gate_id, parent_id in zip(memberships.gate_ids, memberships.parents, strict=True):
        gate = _gate_object(strategy, gate_id)
        if gate is None:
            continue  # boolean and quadrant gates have no axes of their own
        parent = memberships.membership(parent_id) if parent_id else \
            np.ones(tube_data.event_count, bool)
        member = memberships.membership(gate_id)
        axes = []
        for dim in gate.dimensions:
            channel = dim.id
            if channel not in labels:
                raise GatingError(f"{path.name}: gate {gate_id} needs channel {channel}")
            source = events_for(dim.compensation_ref)
            if source is None:
                raise GatingError(f"{path.name}: gate {gate_id} needs compensation but the "
                                  "file has no spillover matrix")
            values = np.asarray(source[:, labels.index(channel)], dtype=float)
            decades = None
            if dim.transformation_ref:
                xform = strategy.get_transform(dim.transformation_ref)
                values = np.asarray(xform.apply(values.reshape(-1, 1)), float).ravel()
                decades = _decade_ticks(
                    lambda v, x=xform: np.asarray(x.apply(v.reshape(-1, 1)), float).ravel())
            marker = marker_of.get(channel)
            axes.append((values, _axis_label(marker, channel, decades is not None), decades))
        keep = np.flatnonzero(parent)
        if keep.size > MAX_PLOTTED_EVENTS:
            keep = np.sort(rng.choice(keep, MAX_PLOTTED_EVENTS, replace=False))
        outline, bounds = _outline(gate, None, None), _gate_bounds(gate)
        plots.append(_draw(outline, bounds, None, gate_id, parent_id or "all events", axes,
                           keep, member, int(member.sum()), int(parent.sum())))
    return plots


def _axis_label(marker: str | None, channel: str, logicle: bool) -> str:
    scale = "signal, logicle scale" if logicle else "linear"
    return f"{marker + ' ' if marker else ''}{channel} ({scale})"


def _decade_ticks(forward) -> list[tuple[float, str]]:
    """Tick positions (plot units) and labels at decades of signal, 0 and 10²…10⁵."""
    values = np.array([0.0, 1e2, 1e3, 1e4, 1e5])
    labels = ["0", "10²", "10³", "10⁴", "10⁵"]
    return list(zip(forward(values).tolist(), labels, strict=True))


def _plot_placed(tube_data, panel, template_arg: str,
                 placement: Placement | None = None) -> list[GatePlot]:
    """The gates adaptive gating placed for this tube (``placement``, or placed here), on
    the template's display axes."""
    from ..engine.plain import PlainBoolean, PlainPolygon
    from ..gating.adaptive_gating import _TubeValues, place_tube, template_view
    from ..gating.placement import _densify

    if placement is None:
        placement = place_tube(tube_data, panel, template_arg)
    template, membership = template_view(tube_data, panel, template_arg, placement)
    values = _TubeValues(tube_data.events, np.arange(tube_data.event_count))
    seeds = {g.gate_id: g for g in template.gates}
    if set(seeds) != {g.gate_id for g in placement.gates}:
        raise GatingError(f"{tube_data.path.name}: its placed gates are not the gates of "
                          f"the template {template_arg} (placed with another one?)")
    marker_of = {channel: marker for marker, channel in tube_data.markers.items()}
    rng = np.random.default_rng(0)
    plots = []
    for gate, report in zip(placement.gates, placement.reports, strict=True):
        if isinstance(gate, PlainBoolean):
            continue
        seed = seeds[gate.gate_id]
        dims = seed.dimensions
        axes = []
        for d in dims:
            shown = d.to_scale(values(d))
            decades = _decade_ticks(d.to_scale) if d.transform is not None else None
            axes.append((shown, _axis_label(marker_of.get(d.channel), d.channel,
                                            decades is not None), decades))
        if isinstance(gate, PlainPolygon):
            raw = _densify(np.asarray(gate.vertices), 0.002)  # straight in signal units
            outline = np.column_stack([dims[0].to_scale(raw[:, 0]), dims[1].to_scale(raw[:, 1])])
            outline = np.vstack([outline, outline[:1]])
            seed_outline = np.asarray(seed.vertices, float)
            seed_outline = np.vstack([seed_outline, seed_outline[:1]])
            bounds = [list(outline[:, 0]), list(outline[:, 1])]
        else:
            scaled = [(None if lo is None else float(d.to_scale(np.array([lo]))[0]),
                       None if hi is None else float(d.to_scale(np.array([hi]))[0]))
                      for d, (lo, hi) in zip(dims, gate.bounds, strict=True)]
            outline = _box(scaled)
            seed_outline = _box([(d.lo, d.hi) for d in dims])
            bounds = [[b for b in pair if b is not None] for pair in scaled]
        parent = membership[gate.parent_id] if gate.parent_id else \
            np.ones(tube_data.event_count, bool)
        member = membership[gate.gate_id]
        keep = np.flatnonzero(parent)
        if keep.size > MAX_PLOTTED_EVENTS:
            keep = np.sort(rng.choice(keep, MAX_PLOTTED_EVENTS, replace=False))
        title = gate.gate_id if report.status in ("placed", "seed") else \
            f"{gate.gate_id} — {report.status.upper()}"
        plots.append(_draw(outline, bounds[:len(dims)], seed_outline, title,
                           gate.parent_id or "all events", axes[:2], keep, member,
                           int(member.sum()), int(parent.sum()), gate_id=gate.gate_id))
    return plots


def _box(bounds) -> np.ndarray:
    """A range gate's outline; an open bound (None) is infinite, clipped to the axes."""
    (lo_x, hi_x) = bounds[0]
    lo_y, hi_y = bounds[1] if len(bounds) > 1 else (None, None)
    xs = [lo_x if lo_x is not None else -np.inf, hi_x if hi_x is not None else np.inf]
    ys = [lo_y if lo_y is not None else -np.inf, hi_y if hi_y is not None else np.inf]
    return np.array([[xs[0], ys[0]], [xs[1], ys[0]], [xs[1], ys[1]], [xs[0], ys[1]],
                     [xs[0], ys[0]]], dtype=float)


def _gate_object(strategy, gate_id: str):
    from flowkit import gates as fk_gates

    try:
        gate = strategy.get_gate(gate_id)
    except Exception:  # e.g. a quadrant: FlowKit asks for the quadrant's own reference
        return None
    if isinstance(gate, fk_gates.RectangleGate | fk_gates.PolygonGate | fk_gates.EllipsoidGate):
        return gate
    return None


def _outline(gate, xlim=None, ylim=None) -> np.ndarray:
    """The gate's boundary in plot coordinates; open bounds are infinite (the drawing clips
    them to the axes)."""
    from flowkit import gates as fk_gates

    if isinstance(gate, fk_gates.PolygonGate):
        v = np.asarray(gate.vertices, dtype=float)
        return np.vstack([v, v[:1]])
    if isinstance(gate, fk_gates.EllipsoidGate):
        mean = np.asarray(gate.coordinates, float)
        cov = np.asarray(gate.covariance_matrix, float)
        vals, vecs = np.linalg.eigh(cov)
        t = np.linspace(0, 2 * np.pi, 181)
        circle = np.column_stack([np.cos(t), np.sin(t)])
        return mean + (circle * np.sqrt(np.maximum(vals, 0) * gate.distance_square)) @ vecs.T
    return _box([(d.min, d.max) for d in gate.dimensions])


def _gate_bounds(gate) -> list[list[float]]:
    """Per dimension, the finite coordinates the axes must show."""
    outline = _outline(gate)
    return [[float(v) for v in outline[:, j] if np.isfinite(v)]
            for j in range(min(2, len(gate.dimensions)))]


def _limits(values: np.ndarray, bounds: list[float]) -> tuple[float, float]:
    """Axes range: the bulk of the events (0.1-99.9 %) and every finite gate bound."""
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, [0.1, 99.9]) if finite.size else (0.0, 1.0)
    points = [lo, hi, *[b for b in bounds if b is not None and np.isfinite(b)]]
    lo, hi = float(min(points)), float(max(points))
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _draw(outline, bounds, seed_outline, title, parent_id, axes, keep, member, events,
          parent_events, gate_id: str | None = None) -> GatePlot:
    """One gate's plot: the parent's density, the gate (red), its seed (faint, dashed)."""
    gate_id = gate_id or title
    x_all, x_label, x_ticks = axes[0]
    x = x_all[keep]
    in_gate = member[keep]
    if len(axes) == 1:
        xlim = _limits(x, bounds[0])
        density, _ = np.histogram(x[np.isfinite(x)], bins=BINS_1D, range=xlim)
        ylim = (0.5, 2.0 * max(float(density.max(initial=0)), 1.0))  # log scale, events
        y = np.empty(0)
        y_label, y_ticks = "events", None
    else:
        y_all, y_label, y_ticks = axes[1]
        y = y_all[keep]
        xlim, ylim = _limits(x, bounds[0]), _limits(y, bounds[1])
        ok = np.isfinite(x) & np.isfinite(y)
        density = histogram_2d(x[ok], y[ok], xlim, ylim, BINS_2D)
    drawn = _clip(outline, xlim, ylim)
    seed = _clip(seed_outline, xlim, ylim) if seed_outline is not None else None
    pct = 100.0 * events / parent_events if parent_events else float("nan")
    spec = PlotSpec(title=title, parent_id=parent_id, x_label=x_label, y_label=y_label,
                    xlim=(float(xlim[0]), float(xlim[1])), ylim=(float(ylim[0]), float(ylim[1])),
                    x_ticks=x_ticks, y_ticks=y_ticks, density=density, outline=drawn,
                    seed_outline=seed, label=f"{events:,} events\n{pct:.1f}% of parent",
                    corner=_emptiest_corner(x, y, xlim, ylim))
    return GatePlot(gate_id=gate_id, parent_id=parent_id, spec=spec, events=events,
                    parent_events=parent_events, x=x, y=y, in_gate=in_gate)


def _render_png(spec: PlotSpec) -> bytes:
    """A plot drawn by Matplotlib, as PNG (the same :class:`PlotSpec` as the SVG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    fig.subplots_adjust(left=0.17, bottom=0.14, right=0.97, top=0.87)
    xlim, ylim = spec.xlim, spec.ylim
    if spec.one_dimensional:
        edges = np.linspace(*xlim, spec.density.size + 1)
        ax.stairs(spec.density, edges, fill=True, color="#777777", baseline=ylim[0])
        ax.set_yscale("log")  # a small positive population stays visible
    elif spec.density.any():
        # A precomputed density as an image draws much faster than hist2d's mesh.
        shown = np.ma.masked_equal(spec.density.T, 0)
        ax.imshow(shown, origin="lower", extent=(*xlim, *ylim), aspect="auto",
                  cmap="viridis", norm=LogNorm(vmin=1, vmax=max(shown.max(), 2)),
                  interpolation="nearest")
    if spec.seed_outline is not None:
        ax.plot(spec.seed_outline[:, 0], spec.seed_outline[:, 1], color=SEED_GREY,
                linewidth=1.0, linestyle="--", alpha=0.8, label="template seed")
    ax.plot(spec.outline[:, 0], spec.outline[:, 1], color=RED, linewidth=1.6,
            label="placed gate" if spec.seed_outline is not None else "gate")
    if spec.seed_outline is not None:
        fig.legend(loc="upper right", ncol=2, fontsize=7, frameon=False,
                   bbox_to_anchor=(0.99, 1.0))
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    for set_ticks, ticks, lim in ((ax.set_xticks, spec.x_ticks, xlim),
                                  (ax.set_yticks, spec.y_ticks, ylim)):
        if ticks:
            inside = [(p, t) for p, t in ticks if lim[0] <= p <= lim[1]]
            set_ticks([p for p, _ in inside], [t for _, t in inside])
    ax.set_xlabel(spec.x_label, fontsize=9)
    ax.set_ylabel(spec.y_label, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title(f"{spec.title}  (parent: {spec.parent_id})", fontsize=10, loc="left",
                 pad=16 if spec.seed_outline is not None else 6)
    cx, cy = spec.corner
    ax.text(cx, cy, spec.label, transform=ax.transAxes,
            ha="left" if cx < 0.5 else "right", va="bottom" if cy < 0.5 else "top",
            fontsize=8, bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none"})
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _clip(outline: np.ndarray, xlim, ylim) -> np.ndarray:
    """An outline with its infinite (open) coordinates at the axes' edges."""
    out = np.array(outline, dtype=float)
    out[:, 0] = np.clip(out[:, 0], *xlim)
    out[:, 1] = np.clip(out[:, 1], *ylim)
    return out


def _emptiest_corner(x, y, xlim, ylim) -> tuple[float, float]:
    """Axes coordinates of the corner with the fewest plotted events (for the label)."""
    if y.size == 0:
        return 0.98, 0.98
    u = (x - xlim[0]) / (xlim[1] - xlim[0])
    v = (y - ylim[0]) / (ylim[1] - ylim[0])
    corners = [(0.02, 0.02), (0.98, 0.02), (0.02, 0.98), (0.98, 0.98)]
    crowd = [np.count_nonzero((np.abs(u - cx) < 0.3) & (np.abs(v - cy) < 0.2))
             for cx, cy in corners]
    return corners[int(np.argmin(crowd))]


def write_gate_plots(path: str | Path, out_dir: str | Path, *, tube: str | None = None,
                     templates: str | Path | None = None,
                     gating: str = "adaptive", panels=None) -> list[Path]:
    """Plot a tube's gates and write one PNG per gate (``{file stem}_{gate}.png``).

    ``tube``, ``templates``, ``gating`` and ``panels`` (a lab's panel folders or a
    :class:`~immunoprofile.gating.panels.PanelSet`) are as for :func:`plot_gates`.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ImmunoprofileError
        The file cannot be read or gated.
    """
    from ..io.atomic import atomic_write_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in plot_gates(path, tube=tube, templates=templates, gating=gating,
                           panels=panels):
        target = out / f"{Path(path).stem}_{plot.gate_id}.png"
        atomic_write_bytes(target, plot.png)
        written.append(target)
    return written



