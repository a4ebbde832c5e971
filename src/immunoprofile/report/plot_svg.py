"""A gating plot written as SVG: the report's renderer, fast enough for thousands of tubes.

Drawing a plot with Matplotlib costs about 0.2 s (building the figure's artists and
rasterising them: tick layout, text, the PNG encoder), so a tube of five gates took about
a second and a batch of 10,000 tubes hours. A gating plot has few parts — a density image,
an outline or two, a frame, ticks and labels — and SVG says each in a line: the density is
binned with NumPy, coloured with Matplotlib's viridis table and encoded as a small PNG by
Pillow (Matplotlib's own image dependency), and the rest is vector text and lines that the
browser draws sharp at any zoom. Matplotlib stays the renderer of ``GatePlot.png``
(``immunoprofile plot`` files, notebooks): both draw the same :class:`PlotSpec`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass

import numpy as np

from ..gating.gate_views import GateView

#: Size of the picture, px (as the PNG: 4.6 × 4.0 in at 100 dpi).
WIDTH, HEIGHT = 460, 400
#: The plotting area inside it, px: left, top, right, bottom.
AREA = (78.0, 52.0, 446.0, 344.0)
RED, SEED_GREY = "#e8112d", "#888888"


@dataclass
class PlotSpec(GateView):
    """Everything a gating plot shows, computed once and drawn by either renderer: a gate's
    :class:`~immunoprofile.gating.gate_views.GateView` (axes, density, outlines, corner)
    and its count.

    Attributes
    ----------
    label : str
        The count in the corner ("1,234 events\\n12.3% of parent"); the rest as
        :class:`~immunoprofile.gating.gate_views.GateView`.
    """

    label: str = ""

    @property
    def one_dimensional(self) -> bool:
        return self.density.ndim == 1


def _viridis() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(
        np.uint8)


_LUT: list[np.ndarray] = []


def density_png(counts: np.ndarray) -> bytes:
    """A 2-D density (x first) as an RGBA PNG, one pixel per bin: viridis on a log scale
    from 1 event to the fullest bin, empty bins transparent (as the PNG renderer's
    masked LogNorm image)."""
    from PIL import Image

    if not _LUT:
        _LUT.append(_viridis())
    image = np.ascontiguousarray(counts.T[::-1])  # rows from the top, y upwards
    top = max(float(image.max()), 2.0)
    with np.errstate(divide="ignore"):
        level = np.log(np.maximum(image, 1.0)) / math.log(top)
    index = np.clip((level * 255.0).round(), 0, 255).astype(np.intp)
    rgba = np.empty(image.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = _LUT[0][index]
    rgba[..., 3] = np.where(image > 0, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _nice_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    from matplotlib.ticker import MaxNLocator

    ticks = [float(t) for t in MaxNLocator(nbins=5).tick_values(lo, hi) if lo <= t <= hi]
    return [(t, _short(t)) for t in ticks]


def _short(v: float) -> str:
    """A tick label: 250,000 as 250k, 1,500,000 as 1.5M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:g}{suffix}"
    return f"{v:g}"


def _log_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Decades of events within a log axis (positions in log10 units)."""
    first, last = math.ceil(math.log10(lo)), math.floor(math.log10(hi))
    names = {0: "1", 1: "10", 2: "100", 3: "1,000", 4: "10⁴", 5: "10⁵", 6: "10⁶"}
    return [(float(k), names.get(k, f"1e{k}")) for k in range(first, last + 1)]


def gate_plot_svg(spec: PlotSpec) -> str:
    """The SVG text of one gating plot (:class:`PlotSpec`)."""
    left, top, right, bottom = AREA
    (x0, x1), (y0, y1) = spec.xlim, spec.ylim
    log_y = spec.one_dimensional
    if log_y:
        y0, y1 = math.log10(max(y0, 1e-3)), math.log10(max(y1, 1e-3 * 10))

    def px(x):
        return left + (np.asarray(x, float) - x0) / (x1 - x0) * (right - left)

    def py(y):
        return bottom - (np.asarray(y, float) - y0) / (y1 - y0) * (bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans,Arial,sans-serif">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<clipPath id="a"><rect x="{left}" y="{top}" width="{right - left}" '
           f'height="{bottom - top}"/></clipPath>']
    if not log_y:
        if spec.density.any():
            data = base64.b64encode(density_png(spec.density)).decode("ascii")
            out.append(f'<image x="{left}" y="{top}" width="{right - left}" '
                       f'height="{bottom - top}" preserveAspectRatio="none" '
                       f'style="image-rendering:pixelated" '
                       f'href="data:image/png;base64,{data}"/>')
    else:
        counts = spec.density
        edges = np.linspace(x0, x1, counts.size + 1)
        heights = np.log10(np.maximum(counts, 10.0 ** y0))
        points = [f"{px(edges[0]):.1f},{py(y0):.1f}"]
        for k, h in enumerate(heights):
            points += [f"{px(edges[k]):.1f},{py(h):.1f}", f"{px(edges[k + 1]):.1f},{py(h):.1f}"]
        points.append(f"{px(edges[-1]):.1f},{py(y0):.1f}")
        out.append(f'<polygon points="{" ".join(points)}" fill="#777777" '
                   'clip-path="url(#a)"/>')

    def polyline(vertices: np.ndarray, colour: str, width: float, extra: str = "") -> str:
        y = np.log10(np.maximum(vertices[:, 1], 1e-3)) if log_y else vertices[:, 1]
        points = " ".join(f"{a:.2f},{b:.2f}" for a, b in zip(px(vertices[:, 0]), py(y),
                                                             strict=True))
        return (f'<polyline points="{points}" fill="none" stroke="{colour}" '
                f'stroke-width="{width}" clip-path="url(#a)"{extra}/>')

    if spec.seed_outline is not None:
        out.append(polyline(spec.seed_outline, SEED_GREY, 1.0,
                            ' stroke-dasharray="4 2" stroke-opacity="0.8"'))
    out.append(polyline(spec.outline, RED, 1.6))
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
               'fill="none" stroke="#222222" stroke-width="0.8"/>')

    x_ticks = spec.x_ticks if spec.x_ticks else _nice_ticks(x0, x1)
    y_ticks = _log_ticks(10 ** y0, 10 ** y1) if log_y else \
        (spec.y_ticks if spec.y_ticks else _nice_ticks(y0, y1))
    for pos, text in x_ticks:
        if not x0 <= pos <= x1:
            continue
        x = float(px(pos))
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" '
                   'stroke="#222222" stroke-width="0.8"/>'
                   f'<text x="{x:.1f}" y="{bottom + 16}" font-size="11" '
                   f'text-anchor="middle">{html.escape(text)}</text>')
    for pos, text in y_ticks:
        if not y0 <= pos <= y1:
            continue
        y = float(py(pos))
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" '
                   'stroke="#222222" stroke-width="0.8"/>'
                   f'<text x="{left - 7}" y="{y + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{html.escape(text)}</text>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{HEIGHT - 18}" font-size="12" '
               f'text-anchor="middle">{html.escape(spec.x_label)}</text>')
    mid = (top + bottom) / 2
    out.append(f'<text x="18" y="{mid:.1f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 18 {mid:.1f})">{html.escape(spec.y_label)}</text>')
    title = f"{spec.title}  (parent: {spec.parent_id})"
    title_y = top - (22 if spec.seed_outline is not None else 8)
    out.append(f'<text x="{left}" y="{title_y}" font-size="13">{html.escape(title)}</text>')
    if spec.seed_outline is not None:  # the legend, top right
        lx = WIDTH - 200
        out.append(f'<line x1="{lx}" y1="12" x2="{lx + 18}" y2="12" stroke="{SEED_GREY}" '
                   f'stroke-dasharray="4 2"/><text x="{lx + 22}" y="16" font-size="9">'
                   "template seed</text>"
                   f'<line x1="{lx + 100}" y1="12" x2="{lx + 118}" y2="12" stroke="{RED}" '
                   f'stroke-width="1.6"/><text x="{lx + 122}" y="16" font-size="9">'
                   "placed gate</text>")
    cx, cy = spec.corner
    lines = spec.label.split("\n")
    anchor = "start" if cx < 0.5 else "end"
    tx = left + cx * (right - left) + (4 if cx < 0.5 else -4)
    first = top + (1 - cy) * (bottom - top) + (16 if cy > 0.5 else -6 - 13 * (len(lines) - 1))
    box_w = 7.0 * max(len(line) for line in lines) + 8
    bx = tx - 4 if cx < 0.5 else tx - box_w + 4
    out.append(f'<rect x="{bx:.1f}" y="{first - 12:.1f}" width="{box_w:.1f}" '
               f'height="{13 * len(lines) + 4}" fill="white" fill-opacity="0.75"/>')
    for k, line in enumerate(lines):
        out.append(f'<text x="{tx:.1f}" y="{first + 13 * k:.1f}" font-size="11" '
                   f'text-anchor="{anchor}">{html.escape(line)}</text>')
    out.append("</svg>")
    return "".join(out)
