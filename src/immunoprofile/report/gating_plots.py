"""Gating plots: each gate's parent population on the gate's own axes, the gate drawn over.

The picture a cytometrist checks before trusting a number. For every gate of a tube's
template: the parent's events, compensated and transformed exactly as the gate sees them
(FlowKit's compensation with the file's spillover, FlowKit's transforms from the template),
as a density plot; the gate's outline on top; the gate's events and percentage of the
parent in the corner. Membership comes from the compiled engine (equal to FlowKit's).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import GatingError, first_line
from ..gating.gate_views import (
    MAX_PLOTTED_EVENTS,
    GateView,
    axis_label,
    bin_view,
    box,
    decade_ticks,
)
from .plot_svg import RED, SEED_GREY, PlotSpec, gate_plot_svg

if TYPE_CHECKING:
    from ..gating.panels import PanelSet
    from ..gating.placement import Placement

__all__ = ["MAX_PLOTTED_EVENTS", "GatePlot", "plot_gates", "plots_from_views",
           "write_gate_plots"]


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
                decades = decade_ticks(
                    lambda v, x=xform: np.asarray(x.apply(v.reshape(-1, 1)), float).ravel())
            marker = marker_of.get(channel)
            axes.append((values, axis_label(marker, channel, decades is not None), decades))
        keep = np.flatnonzero(parent)
        if keep.size > MAX_PLOTTED_EVENTS:
            keep = np.sort(rng.choice(keep, MAX_PLOTTED_EVENTS, replace=False))
        view = bin_view(gate_id, gate_id, parent_id or "all events", axes, keep,
                        _outline(gate), _gate_bounds(gate), None)
        plots.append(_plot(view, axes, keep, member, int(member.sum()), int(parent.sum())))
    return plots


def _plot_placed(tube_data, panel, template_arg: str,
                 placement: Placement | None = None) -> list[GatePlot]:
    """The gates adaptive gating placed for this tube (``placement``, or placed here), on
    the template's display axes, from every event of the tube (up to
    :data:`MAX_PLOTTED_EVENTS` of each parent)."""
    from ..gating.adaptive_gating import _TubeValues, place_tube, template_view
    from ..gating.gate_views import placed_axes

    if placement is None:
        placement = place_tube(tube_data, panel, template_arg)
    template, membership = template_view(tube_data, panel, template_arg, placement)
    if {g.gate_id for g in template.gates} != {g.gate_id for g in placement.gates}:
        raise GatingError(f"{tube_data.path.name}: its placed gates are not the gates of "
                          f"the template {template_arg} (placed with another one?)")
    values = _TubeValues(tube_data.events, np.arange(tube_data.event_count))
    rng = np.random.default_rng(0)

    def parent_of(gate_id: str | None) -> np.ndarray:
        return membership[gate_id] if gate_id else np.ones(tube_data.event_count, bool)

    def select(keep: np.ndarray) -> np.ndarray:
        if keep.size > MAX_PLOTTED_EVENTS:
            keep = np.sort(rng.choice(keep, MAX_PLOTTED_EVENTS, replace=False))
        return keep

    marker_of = {channel: marker for marker, channel in tube_data.markers.items()}
    parents = {g.gate_id: g.parent_id for g in placement.gates}
    plots = []
    for placed in placed_axes(template, placement, lambda d: d.to_scale(values(d)),
                              parent_of, marker_of, select):
        member = membership[placed.gate_id]
        plots.append(_plot(placed.view(), placed.axes, placed.keep, member,
                           int(member.sum()), int(parent_of(parents[placed.gate_id]).sum())))
    return plots


def plots_from_views(views: list[GateView], events: dict[str, tuple[int, int]]
                     ) -> list[GatePlot]:
    """A tube's plots from the views its run binned (``OUT/gates/<sample_id>.views.npz``),
    labelled with the run's counts: nothing is read or gated again.

    Parameters
    ----------
    views : list of GateView
    events : dict
        Gate ID → (events in the gate, events in its parent), every event of the tube
        (``populations.csv``).

    Returns
    -------
    list of GatePlot
        Their ``x``, ``y`` and ``in_gate`` are empty (the density was binned, not kept
        per event).

    Raises
    ------
    GatingError
        A gate of the views has no count.
    """
    plots = []
    empty = np.empty(0)
    for view in views:
        if view.gate_id not in events:
            raise GatingError(f"the run's counts have no gate {view.gate_id}")
        inside, parent = events[view.gate_id]
        plots.append(GatePlot(gate_id=view.gate_id, parent_id=view.parent_id,
                              spec=_spec(view, inside, parent), events=inside,
                              parent_events=parent, x=empty, y=empty,
                              in_gate=np.empty(0, dtype=bool)))
    return plots


def _spec(view: GateView, events: int, parent_events: int) -> PlotSpec:
    """The plot of a view, labelled with the gate's counts (every event of the tube).

    A view binned from fewer events than its parent holds (a large tube's placement
    subsample, or a file plot's random subset) says so: the label gives how many of the
    parent's events the density shows, and a histogram's axis counts events plotted."""
    pct = 100.0 * events / parent_events if parent_events else float("nan")
    values = {f.name: getattr(view, f.name) for f in fields(GateView)}
    label = f"{events:,} events\n{pct:.1f}% of parent"
    if 0 < view.binned_events < parent_events:
        label += f"\nplotted: {view.binned_events:,} of {parent_events:,}"
        if np.asarray(view.density).ndim == 1:
            values["y_label"] = "events plotted"
    return PlotSpec(**values, label=label)


def _plot(view: GateView, axes, keep: np.ndarray, member: np.ndarray, events: int,
          parent_events: int) -> GatePlot:
    """A plot drawn from a whole tube's events: the view, and the events it binned."""
    x = axes[0][0][keep]
    y = axes[1][0][keep] if len(axes) > 1 else np.empty(0)
    return GatePlot(gate_id=view.gate_id, parent_id=view.parent_id,
                    spec=_spec(view, events, parent_events), events=events,
                    parent_events=parent_events, x=x, y=y, in_gate=member[keep])


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
    return box([(d.min, d.max) for d in gate.dimensions])


def _gate_bounds(gate) -> list[list[float]]:
    """Per dimension, the finite coordinates the axes must show."""
    outline = _outline(gate)
    return [[float(v) for v in outline[:, j] if np.isfinite(v)]
            for j in range(min(2, len(gate.dimensions)))]


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



