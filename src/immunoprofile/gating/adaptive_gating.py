"""Gating one tube adaptively: place its gates from its events, then count every event.

The tube's template is fitted to its channels (:mod:`.templates`), read with its
adaptation declarations (:mod:`.adaptive_template`), and its gates are placed on a
subsample of the tube's own events (:mod:`.placement`). The placed gates are plain gates on
untransformed values, lowered straight into the compiled engine
(:mod:`immunoprofile.engine.plain`) and counted on every event by its generic kernel, the
same kernel that settles the generated one's hard cases. The placed gates are also written
out as Gating-ML 2.0 (``OUT/gates/<sample_id>.xml``): FlowKit gates that file to the same
counts, so every tube's gating can be audited and re-run elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.bind import compensation_matrix
from ..engine.plain import gating_ml, lower_plain
from ..engine.plan import GatingPlan, pack_memberships
from ..errors import GatingError, first_line
from ..io.events import EventData
from ..io.fcs import Tube
from .adaptive_template import TemplateDimension, cached_template
from .gate_views import GateView, placement_views
from .modes import GATING_MODES as GATING_MODES
from .panels import Panel
from .placement import (
    DENSE_SUBSAMPLE,
    SUBSAMPLE,
    GatePlacement,
    Placement,
    floor_unjudged,
    place_gates,
)
from .templates import channel_map, fitted_template, template_path


@dataclass
class AdaptiveResult:
    """The counts of one adaptively gated tube, and where its gates went."""

    gate_ids: list[str]
    parents: list[str | None]
    gate_events: np.ndarray
    placements: list[GatePlacement]
    gating_ml: str
    #: Each placed gate's parent binned on its display axes, from the placement's
    #: subsample (:mod:`.gate_views`), when asked for; else None.
    views: list[GateView] | None = None
    #: Every event's membership, packed as the compiled engine packs it ((words, events)
    #: uint64: gate ``g`` of ``gate_ids`` is bit ``g % 64`` of word ``g // 64``), when
    #: asked for; else None.
    bitmask: np.ndarray | None = None


#: ``matrix`` of a :class:`_TubeValues` not given one: parse the file's when first needed.
_PARSE_WHEN_NEEDED = object()


class _TubeValues:
    """Compensated or raw values of the subsampled events, per channel.

    The first request decodes every channel of ``channels`` (the template's, and the
    spillover's detectors) in one pass over the subsampled rows; ``rows`` may be a slice
    (every k-th event: a view of the events, not a copy) or an index array. ``matrix`` is
    the tube's spillover (None: uncompensated) where the caller has parsed it.
    """

    def __init__(self, events: EventData, rows: np.ndarray | slice,
                 channels: list[str] | None = None, matrix=_PARSE_WHEN_NEEDED):
        self.events = events
        self.rows = rows
        self.channels = channels
        self._matrix = matrix
        self._compensated: dict[str, np.ndarray] = {}
        self._raw: dict[str, np.ndarray] = {}

    def raw(self, channel: str) -> np.ndarray:
        if channel not in self._raw:
            if channel not in self.events.pnn:
                raise LookupError(f"{channel} is not a channel of {self.events.name}")
            wanted = [c for c in dict.fromkeys([channel, *(self.channels or [])])
                      if c in self.events.pnn and c not in self._raw]
            values = self.events.decoded([self.events.pnn.index(c) for c in wanted],
                                         self.rows)
            for j, c in enumerate(wanted):
                self._raw[c] = values[:, j]
        return self._raw[channel]

    def __call__(self, d: TemplateDimension) -> np.ndarray:
        if not d.compensated:
            return self.raw(d.channel)
        if self._matrix is _PARSE_WHEN_NEEDED:
            self._matrix = compensation_matrix("FCS", None, self.events)  # type: ignore[arg-type]
        matrix = self._matrix
        if matrix is None or d.channel not in matrix.detectors:
            return self.raw(d.channel)
        if d.channel not in self._compensated:
            # every detector compensated at once: raw detectors × inverse spillover
            inverse = np.linalg.inv(np.asarray(matrix.matrix, dtype=np.float64))
            raw = np.column_stack([self.raw(det) for det in matrix.detectors])
            for j, value in enumerate((raw @ inverse).T):
                self._compensated[matrix.detectors[j]] = np.ascontiguousarray(value)
        return self._compensated[d.channel]


def _subsample_rows(events: int, limit: int) -> range:
    """The rows :func:`_subsample` keeps of ``events``: every k-th, k as small as keeps at
    most ``limit``."""
    return range(0, events, max(1, -(-events // limit)))


def _subsample_size(events: int, limit: int) -> int:
    """How many events :func:`_subsample` keeps of ``events`` for at most ``limit``."""
    return len(_subsample_rows(events, limit))


def _subsample(events: EventData, template, limit: int) -> tuple[_TubeValues, int]:
    """Every k-th event of the tube (k as small as keeps at most ``limit``: deterministic,
    spread over the whole acquisition) as placement reads them, and how many (events)."""
    rows = _subsample_rows(events.event_count, limit)
    dims = [d for g in template.gates for d in g.dimensions]
    channels = [d.channel for d in dims]
    spill = None
    if any(d.compensated for d in dims):  # the spillover is parsed only when used
        spill = compensation_matrix("FCS", None, events)  # type: ignore[arg-type]
        channels += list(spill.detectors) if spill is not None else []
    return (_TubeValues(events, slice(rows.start, rows.stop, rows.step), channels, spill),
            len(rows))


def _place_on_subsample(template, events: EventData) -> Placement:
    """Place on :data:`SUBSAMPLE` events, and again on up to :data:`DENSE_SUBSAMPLE` when
    the tube has more events and (a rare population, such as a few dozen beads or NK cells
    in a large CLL tube, may show with more; the cost is paid only by such tubes):

    - a gate is uncertain: the denser placement is taken;
    - a gate kept too few events for its ``max-floor-share`` check to be judged, where the
      denser subsample would keep enough: the denser placement is taken when that gate is
      uncertain there (its check failed, or more events showed another doubt: the tube
      is flagged for it), else the first stands (its other gates were placed well; on
      more events the lymphocyte cluster's basins differ a little, which is no reason to
      move them).
    """
    values, n = _subsample(events, template, SUBSAMPLE)
    placement = place_gates(template, values, n)
    dense = _subsample_size(events.event_count, DENSE_SUBSAMPLE)
    if n >= dense:
        return placement
    uncertain = any(r.uncertain for r in placement.reports)
    unjudged = floor_unjudged(placement, n, dense)
    if uncertain or unjudged:
        values, n = _subsample(events, template, DENSE_SUBSAMPLE)
        denser = place_gates(template, values, n)
        if uncertain or any(denser.report(g).uncertain for g in unjudged):
            return denser
    return placement


def place_tube(tube: Tube, panel: Panel, templates: str | None = None) -> Placement:
    """Place the gates of a tube's template from its events (no counting).

    Raises
    ------
    PanelError
        A channel the gates need is missing.
    TemplateError
        The template cannot be read for adaptive gating.
    GatingError
        The gates cannot be placed on this tube.
    """
    return _place_tube(tube, panel, templates)[1]


def _place_tube(tube: Tube, panel: Panel, templates: str | None):
    """:func:`place_tube`, and the fitted template it placed."""
    template = _fitted(tube, panel, templates)
    try:
        return template, _place_on_subsample(template, tube.events)
    except LookupError as exc:
        raise GatingError(f"{tube.path.name}: the template cannot be applied to this tube: "
                          f"{first_line(exc)}") from None
    except (GatingError, ValueError, FloatingPointError) as exc:
        raise GatingError(f"{tube.path.name}: its gates could not be placed: "
                          f"{first_line(exc)}") from None


def _fitted(tube: Tube, panel: Panel, templates: str | None):
    """The panel's adaptive template fitted to the tube's channels (parsed once, cached)."""
    mapping = channel_map(panel, tube.markers, tube.scatter, source=tube.path.name)
    text = fitted_template(panel, mapping, templates)
    return cached_template(text, template_path(panel, templates).name)


def placed_membership(placement: Placement, events: EventData) -> dict[str, np.ndarray]:
    """Every event's membership of the placed gates (gate ID → bool per event,
    parent-ANDed), counted by the compiled engine."""
    plan = GatingPlan.from_program(lower_plain(placement.gates), kernel="generic")
    bits = plan.membership(events, threads=1)
    return {name: bits[(name, path)] for name, path in plan.gate_ids}


def template_view(tube: Tube, panel: Panel, templates: str | None,
                  placement: Placement):
    """The fitted template (seed positions, display transforms) and every event's membership
    of the placed gates, for plotting a tube's placement.

    Returns
    -------
    template : AdaptiveTemplate
    membership : dict
        Gate ID → bool per event (parent-ANDed), counted by the compiled engine.
    """
    return _fitted(tube, panel, templates), placed_membership(placement, tube.events)


def gate_tube_adaptive(tube: Tube, panel: Panel, templates: str | None = None,
                       threads: int | None = 1, engine: str = "compiled",
                       views: bool = False, bitmask: bool = False) -> AdaptiveResult:
    """Place a tube's gates from its events and count every event in them.

    Parameters
    ----------
    tube : Tube
    panel : Panel
    templates : str, optional
        Folder of templates instead of the shipped adaptive ones.
    threads : int, optional
    engine : {"compiled", "flowkit"}
        Who counts the placed gates: the compiled engine, or FlowKit gating their
        Gating-ML (the reference; the same events).
    views : bool
        Also bin each gate's parent on its display axes for the gating plots
        (:attr:`AdaptiveResult.views`; from the placement's subsample, a few ms).
    bitmask : bool
        Also keep every event's membership (:attr:`AdaptiveResult.bitmask`), for counts
        of events two gates share.

    Returns
    -------
    AdaptiveResult

    Raises
    ------
    PanelError, TemplateError, GatingError
        As :func:`place_tube`; GatingError also when the placed gates cannot be counted.
    """
    template, placement = _place_tube(tube, panel, templates)
    try:
        program = lower_plain(placement.gates)
    except ValueError as exc:
        raise GatingError(f"{tube.path.name}: its placed gates are not valid: "
                          f"{first_line(exc)}") from None
    text = gating_ml(placement.gates, _comment(tube, panel, templates))
    plan = GatingPlan.from_program(program, kernel="generic")
    gate_ids = [name for name, _ in plan.gate_ids]
    parents = [path[-1] if len(path) > 1 else None for _, path in plan.gate_ids]
    drawn = placement_views(template, placement,
                            {channel: marker for marker, channel in tube.markers.items()}
                            ) if views else None
    if engine == "flowkit":
        events, bits = _flowkit_counts(tube, text, plan.gate_ids)
        return AdaptiveResult(gate_ids, parents, events, placement.reports, text, drawn,
                              bits if bitmask else None)
    try:
        if bitmask:
            membership = plan.membership(tube.events, threads=threads)
            bits, counts = membership.bitmask, membership.counts
        else:
            bits = None
            counts = plan.counts(tube.events, threads=threads)
    except (LookupError, ValueError) as exc:
        raise GatingError(f"{tube.path.name}: the template cannot be applied to this tube: "
                          f"{first_line(exc)}") from None
    events = np.array([counts[key] for key in plan.gate_ids], dtype=np.int64)
    return AdaptiveResult(gate_ids, parents, events, placement.reports, text, drawn, bits)


def _comment(tube: Tube, panel: Panel, templates: str | None) -> str:
    return (f"Gates placed by immunoprofile adaptive gating for {tube.path.name}\n"
            f"from the template {template_path(panel, templates).name}. Coordinates "
            "are untransformed\n(compensated signal, scatter): FlowKit gates this file to "
            "immunoprofile's counts.")


def _flowkit_counts(tube: Tube, text: str, keys) -> tuple[np.ndarray, np.ndarray | None]:
    """Events per gate with FlowKit gating the placed gates' Gating-ML (the reference),
    and the memberships packed as :attr:`AdaptiveResult.bitmask`."""
    import io

    import flowkit as fk

    try:
        strategy = fk.parse_gating_xml(io.BytesIO(text.encode("utf-8")))
        results = strategy.gate_sample(tube.sample)
        members = [np.asarray(results.get_gate_membership(name, gate_path=path), dtype=bool)
                   for name, path in keys]
        return (np.array([int(np.count_nonzero(m)) for m in members], dtype=np.int64),
                pack_memberships(members, tube.event_count))
    except Exception as exc:  # FlowKit's failures, in one line
        raise GatingError(f"{tube.path.name}: FlowKit could not gate its placed gates: "
                          f"{first_line(exc)}") from None


def placement_from_run(gates_xml: str, reports: list[GatePlacement],
                       source: str = "") -> Placement:
    """A tube's placement as a gate run wrote it: the placed gates of its
    ``OUT/gates/<sample_id>.xml`` and their reports (``gates.csv`` rows), so that plots
    and the report show the gates that were counted, without placing them again.

    Raises
    ------
    GatingError
        The file is not Gating-ML that adaptive gating writes, or its gates are not those
        of the reports.
    """
    from ..engine.plain import read_gating_ml

    try:
        gates = read_gating_ml(gates_xml)
    except ValueError as exc:
        raise GatingError(f"{source}: its placed gates cannot be read: {first_line(exc)}"
                          ) from None
    if [g.gate_id for g in gates] != [r.gate_id for r in reports]:
        raise GatingError(f"{source}: its placed gates and gates.csv name different gates")
    return Placement(gates, list(reports))


def place_with_template(path: str | Path, template: str | Path) -> tuple[Placement,
                                                                         dict[str, np.ndarray]]:
    """Place any adaptive template's gates on one file and keep every event's membership.

    For a lab's own panel: the template names the file's channels (``$PnN``) directly, as
    ``gating/examples/flowcap_gvhd_cd4_cd8.xml`` does; no panel is detected and no channel
    is renamed.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    template : str or Path
        An adaptive Gating-ML template.

    Returns
    -------
    placement : Placement
    membership : dict
        Gate ID → bool per event (parent-ANDed), counted by the compiled engine.
    """
    from ..io.fcs import read_tube

    tube = read_tube(path)
    text = Path(template).read_text(encoding="utf-8")
    parsed = cached_template(text, Path(template).name)
    placement = _place_on_subsample(parsed, tube.events)
    return placement, placed_membership(placement, tube.events)
