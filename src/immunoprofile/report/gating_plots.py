"""Gating plots: each gate's parent population on the gate's own axes, the gate drawn over.

The picture a cytometrist checks before trusting a number. For every gate of a tube's
template: the parent's events, compensated and transformed exactly as the gate sees them
(FlowKit's compensation with the file's spillover, FlowKit's transforms from the template),
as a density plot; the gate's outline on top; the gate's events and percentage of the
parent in the corner. Membership comes from the compiled engine (equal to FlowKit's).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GatingError, first_line

#: Plotted events per gate at most (a random subset beyond this; counts use all events).
MAX_PLOTTED_EVENTS = 60_000


@dataclass
class GatePlot:
    """One gate's plot and the numbers on it.

    Attributes
    ----------
    gate_id, parent_id : str
        The gate and its parent (``"all events"`` for a root gate).
    png : bytes
        The image.
    events, parent_events : int
        Events in the gate and in its parent, events.
    x_label, y_label : str
        Axis labels (marker, channel, transform); ``y_label`` is "events" for a 1-D gate.
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
    png: bytes = field(repr=False)
    events: int
    parent_events: int
    x_label: str
    y_label: str
    xlim: tuple[float, float] = field(repr=False)
    ylim: tuple[float, float] = field(repr=False)
    outline: np.ndarray = field(repr=False)
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    in_gate: np.ndarray = field(repr=False)

    @property
    def percent_of_parent(self) -> float:
        """Events in the gate as % of the parent's events."""
        return 100.0 * self.events / self.parent_events if self.parent_events else float("nan")

    def __repr__(self) -> str:
        share = (f"{self.percent_of_parent:.3g} % of {self.parent_id}"
                 if self.parent_events else f"parent {self.parent_id} empty")
        return (f"<GatePlot {self.gate_id}: {self.events:,} of {self.parent_events:,} events "
                f"({share}); {self.x_label} × {self.y_label}; PNG {len(self.png):,} bytes>")

    def _repr_png_(self) -> bytes:
        """The plot itself, for Jupyter and IPython (shown instead of the repr)."""
        return self.png


def plot_gates(path: str | Path, *, tube: str | None = None,
               templates: str | Path | None = None) -> list[GatePlot]:
    """Plot every gate of one FCS tube.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    tube : {"nk", "cd4", "cd8"}, optional
        The panel, detected from the markers when omitted.
    templates : str or Path, optional
        Folder of Gating-ML templates instead of the shipped ones.

    Returns
    -------
    list of GatePlot
        In gating order (parents first).

    Raises
    ------
    ImmunoprofileError
        The file cannot be read or gated.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)

    from ..gating.compiled_gating import gate_tube_compiled
    from ..gating.templates import channel_map, load_strategy
    from ..io.fcs import read_tube
    from ..panels import detect_panel

    path = Path(path)
    tube_data = read_tube(path)
    panel = detect_panel(tube_data.markers, expected=tube, source=path.name)
    template_arg = str(templates) if templates is not None else None
    memberships = gate_tube_compiled(tube_data, panel, template_arg)
    mapping = channel_map(panel, tube_data.markers, tube_data.scatter, source=path.name)
    strategy = load_strategy(panel.tube, mapping, template_arg)
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
            name = "untransformed"
            if dim.transformation_ref:
                xform = strategy.get_transform(dim.transformation_ref)
                values = np.asarray(xform.apply(values.reshape(-1, 1)), float).ravel()
                name = type(xform).__name__.replace("Transform", "").lower()
            marker = marker_of.get(channel)
            axes.append((values, f"{marker + ' ' if marker else ''}{channel} ({name})"))
        keep = np.flatnonzero(parent)
        if keep.size > MAX_PLOTTED_EVENTS:
            keep = np.sort(rng.choice(keep, MAX_PLOTTED_EVENTS, replace=False))
        plots.append(_draw(gate, gate_id, parent_id or "all events", axes, keep, member,
                           int(member.sum()), int(parent.sum())))
    return plots


def _gate_object(strategy, gate_id: str):
    from flowkit import gates as fk_gates

    try:
        gate = strategy.get_gate(gate_id)
    except Exception:  # e.g. a quadrant: FlowKit asks for the quadrant's own reference
        return None
    if isinstance(gate, fk_gates.RectangleGate | fk_gates.PolygonGate | fk_gates.EllipsoidGate):
        return gate
    return None


def _outline(gate, xlim, ylim) -> np.ndarray:
    """The gate's boundary in plot coordinates; open bounds become the axes' edges."""
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
    dims = gate.dimensions
    lo_x = dims[0].min if dims[0].min is not None else xlim[0]
    hi_x = dims[0].max if dims[0].max is not None else xlim[1]
    if len(dims) == 1:
        lo_y, hi_y = ylim
    else:
        lo_y = dims[1].min if dims[1].min is not None else ylim[0]
        hi_y = dims[1].max if dims[1].max is not None else ylim[1]
    return np.array([[lo_x, lo_y], [hi_x, lo_y], [hi_x, hi_y], [lo_x, hi_y], [lo_x, lo_y]],
                    dtype=float)


def _limits(values: np.ndarray, bounds: list[float]) -> tuple[float, float]:
    """Axes range: the bulk of the events (0.1-99.9 %) and every finite gate bound."""
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, [0.1, 99.9]) if finite.size else (0.0, 1.0)
    points = [lo, hi, *[b for b in bounds if b is not None and np.isfinite(b)]]
    lo, hi = float(min(points)), float(max(points))
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _draw(gate, gate_id, parent_id, axes, keep, member, events, parent_events) -> GatePlot:
    import matplotlib.pyplot as plt
    from flowkit import gates as fk_gates
    from matplotlib.colors import LogNorm

    x_all, x_label = axes[0]
    x = x_all[keep]
    in_gate = member[keep]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    fig.subplots_adjust(left=0.2, bottom=0.16, right=0.97, top=0.9)
    if len(axes) == 1:
        bounds = [gate.dimensions[0].min, gate.dimensions[0].max]
        xlim = _limits(x, bounds)
        ax.hist(x[np.isfinite(x)], bins=128, range=xlim, color="#777777")
        ax.set_yscale("log")  # a small positive population stays visible
        ylim = ax.get_ylim()
        y = np.empty(0)
        y_label = "events"
    else:
        y_all, y_label = axes[1]
        y = y_all[keep]
        if isinstance(gate, fk_gates.PolygonGate):
            v = np.asarray(gate.vertices, float)
            xb, yb = list(v[:, 0]), list(v[:, 1])
        elif isinstance(gate, fk_gates.EllipsoidGate):
            ring = _outline(gate, (0.0, 1.0), (0.0, 1.0))  # an ellipse needs no limits
            xb, yb = list(ring[:, 0]), list(ring[:, 1])
        else:
            xb = [gate.dimensions[0].min, gate.dimensions[0].max]
            yb = [gate.dimensions[1].min, gate.dimensions[1].max]
        xlim, ylim = _limits(x, xb), _limits(y, yb)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            # A precomputed density as an image draws much faster than hist2d's mesh.
            density, _, _ = np.histogram2d(x[ok], y[ok], bins=160, range=[xlim, ylim])
            shown = np.ma.masked_equal(density.T, 0)
            if shown.count():
                ax.imshow(shown, origin="lower", extent=(*xlim, *ylim), aspect="auto",
                          cmap="viridis", norm=LogNorm(vmin=1, vmax=max(shown.max(), 2)),
                          interpolation="nearest")
    outline = _outline(gate, xlim, ylim)
    ax.plot(outline[:, 0], outline[:, 1], color="#e8112d", linewidth=1.4)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel(x_label, fontsize=7)
    ax.set_ylabel(y_label, fontsize=7)
    ax.tick_params(labelsize=6)
    pct = 100.0 * events / parent_events if parent_events else float("nan")
    ax.set_title(f"{gate_id}  (parent: {parent_id})", fontsize=8)
    cx, cy = _emptiest_corner(x, y, xlim, ylim)
    ax.text(cx, cy, f"{events:,} events\n{pct:.1f}% of parent", transform=ax.transAxes,
            ha="left" if cx < 0.5 else "right", va="bottom" if cy < 0.5 else "top",
            fontsize=7, bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none"})
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return GatePlot(gate_id=gate_id, parent_id=parent_id, png=buffer.getvalue(),
                    events=events, parent_events=parent_events, x_label=x_label,
                    y_label=y_label, xlim=(float(xlim[0]), float(xlim[1])),
                    ylim=(float(ylim[0]), float(ylim[1])), outline=outline, x=x, y=y,
                    in_gate=in_gate)


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
                     templates: str | Path | None = None) -> list[Path]:
    """Plot a tube's gates and write one PNG per gate (``{file stem}_{gate}.png``).

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
    for plot in plot_gates(path, tube=tube, templates=templates):
        target = out / f"{Path(path).stem}_{plot.gate_id}.png"
        atomic_write_bytes(target, plot.png)
        written.append(target)
    return written



