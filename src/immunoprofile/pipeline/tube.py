"""Gating one tube: read it, detect its panel, gate it with the compiled engine or FlowKit,
adaptively or at the template's fixed positions. A failure is the tube's, in one line
(:class:`TubeFailure`); the batch and the workflow's per-tube jobs both gate here."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..counting import count_gate_events
from ..counting.gate_counts import events_in_both
from ..errors import ImmunoprofileError, first_line
from ..gating.compiled_gating import count_tube_compiled, gate_tube_compiled
from ..gating.flowkit_gating import gate_tube
from ..gating.modes import ENGINES, GATING_MODES
from ..gating.panel_files import resolve_panels as resolve_panels
from ..gating.panels import Panel, PanelSet, default_panels, detect_panel
from ..gating.templates import (
    adaptive_template_dir,
    check_template,
    uses_adaptation,
)
from ..io.fcs import read_tube
from ..io.manifest import TubeRequest

#: Gating engines: the compiled Numba engine (default) and FlowKit, the reference.


@dataclass
class GatedTube:
    """What gating one tube returns (picklable, so worker processes can send it back).

    ``gate_events`` holds the events in each of ``gate_ids`` (parent-ANDed): the compiled
    engine's kernel counts them as it gates; FlowKit's memberships are counted by the
    counting kernel (:func:`immunoprofile.counting.count_gate_events`).
    """

    request: TubeRequest
    tube: str
    gate_ids: list[str]
    parents: list[str | None]
    gate_events: np.ndarray
    events: int
    has_spillover: bool
    simulated: bool
    seconds: float
    keywords: dict | None = None
    resumed: bool = False
    #: Adaptive gating: where each gate was placed (dicts, see ``gates.csv``) and the placed
    #: gates as Gating-ML 2.0; None for fixed gates.
    placements: list[dict] | None = None
    gating_ml: str | None = None
    #: The tube's panel (what it reports, the gates its counts are read from); None in a
    #: result read back from a file of a shipped tube, looked up by ``tube`` then.
    panel: Panel | None = None
    #: The tube of a wider panel the file would be detected as, when the manifest names a
    #: narrower one (``WIDER_PANEL:<tube>``); None otherwise.
    wider_panel: str | None = None
    #: Adaptive gating: each placed gate's parent binned for the gating plots
    #: (:func:`immunoprofile.gating.gate_views.pack_views` bytes, a few kB); None otherwise.
    views: bytes | None = None
    #: Markers of the panel set's vocabulary that the file carries and its tube does not
    #: use (``UNUSED_MARKERS:<markers>``: a CD19 channel in a 4-colour T-cell tube).
    unused_markers: tuple[str, ...] = ()
    #: Events two of the panel's lymphosum gates both hold, per pair of them in this tube:
    #: ``(gate, gate, events)`` (``LYMPHOSUM_OVERLAP``: the lymphosum sums them twice).
    shared_events: tuple[tuple[str, str, int], ...] = ()


@dataclass
class TubeFailure:
    """A tube that could not be processed, with the reason a user reads."""

    file: str
    error: str


def check_engine(engine: str, gating: str = "fixed") -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if gating not in GATING_MODES:
        raise ValueError(f"unknown gating {gating!r}; use one of {', '.join(GATING_MODES)}")


def resolve_templates(templates: str | Path | None, gating: str) -> str | None:
    """The template folder a batch gates with: the user's, else the shipped adaptive
    templates (``gating/adaptive/``) for adaptive gating, else the shipped fixed ones (None)."""
    if templates is not None:
        return str(templates)
    return str(adaptive_template_dir()) if gating == "adaptive" else None


def gate_request(request: TubeRequest, templates: str | None, engine: str,
                 keep_keywords: bool = False, gating: str = "fixed",
                 panels: PanelSet | None = None) -> GatedTube:
    start = time.perf_counter()
    tube = read_tube(request.path)
    if panels is not None and any(p.aliases for p in panels.values()):
        tube = replace(tube, markers=panels.markers_of(tube.events.pnn, tube.events.pns))
    panel = detect_panel(tube.markers, expected=request.tube, source=request.path.name,
                         panels=panels)
    check_template(panel, templates)  # checked once per template: cached
    wider = wider_panel(tube.markers, panel, panels) if request.tube else None
    unused = () if wider else unused_markers(tube.markers, panel, panels)
    placements = gating_ml = views = bitmask = None
    pairs = lymphosum_pairs(panel)  # their shared events need every event's membership
    if gating == "adaptive" and uses_adaptation(panel, templates):
        from ..gating.adaptive_gating import gate_tube_adaptive
        from ..gating.gate_views import gates_digest, pack_views

        adaptive = gate_tube_adaptive(tube, panel, templates, engine=engine, views=True,
                                      bitmask=bool(pairs))
        gate_ids, parents, gate_events = adaptive.gate_ids, adaptive.parents, \
            adaptive.gate_events
        placements = [asdict(p) for p in adaptive.placements]
        gating_ml = adaptive.gating_ml
        views = pack_views(adaptive.views or [], gates_digest(gating_ml))
        bitmask = adaptive.bitmask
    elif engine == "flowkit" or pairs:
        memberships = gate_tube(tube, panel, templates) if engine == "flowkit" else \
            gate_tube_compiled(tube, panel, templates)
        gate_ids, parents = memberships.gate_ids, memberships.parents
        gate_events = count_gate_events([memberships.bitmask], len(gate_ids))[0]
        bitmask = memberships.bitmask
    else:
        gate_ids, parents, gate_events = count_tube_compiled(tube, panel, templates)
    shared = shared_events(pairs, gate_ids, bitmask)
    simulated = tube.simulated
    return GatedTube(request=request, tube=panel.tube, gate_ids=gate_ids, parents=parents,
                     gate_events=np.asarray(gate_events, dtype=np.int64),
                     events=tube.event_count, has_spillover=tube.has_spillover,
                     simulated=simulated, seconds=time.perf_counter() - start,
                     keywords=dict(tube.metadata) if keep_keywords else None,
                     placements=placements, gating_ml=gating_ml, panel=panel,
                     wider_panel=wider, views=views, unused_markers=unused,
                     shared_events=shared)


def lymphosum_pairs(panel: Panel) -> list[tuple[str, str]]:
    """Pairs of the panel's lymphosum gates that this tube counts (T and NK cells, B and
    NK cells of a six-colour TBNK tube): events in both would be summed twice."""
    mine = [g for g in panel.qc.lymphosum_gates if g in panel.within_lymphocytes]
    return [(a, b) for i, a in enumerate(mine) for b in mine[i + 1:]]


def shared_events(pairs: Sequence[tuple[str, str]], gate_ids: Sequence[str],
                  bitmask: np.ndarray | None) -> tuple[tuple[str, str, int], ...]:
    """Events both gates of each pair hold (``bitmask``: every event's membership of
    ``gate_ids``); pairs whose gates the template lacks are left out."""
    known = [(a, b) for a, b in pairs if a in gate_ids and b in gate_ids]
    if not known or bitmask is None:
        return ()
    index = {g: i for i, g in enumerate(gate_ids)}
    counts = events_in_both(bitmask, [(index[a], index[b]) for a, b in known])
    return tuple((a, b, int(n)) for (a, b), n in zip(known, counts, strict=True))


def wider_panel(markers, panel: Panel, panels: PanelSet | None) -> str | None:
    """The tube a file would be detected as, when the manifest names ``panel`` for it and
    the detected tube's panel holds every marker of ``panel`` and more (a six-colour TBNK
    file named ``cd4``: its B and NK cells would go uncounted); None otherwise."""
    try:
        detected = detect_panel(markers, panels=panels)
    except ImmunoprofileError:
        return None
    if detected.tube == panel.tube or not set(panel.markers) < set(detected.markers):
        return None
    return detected.tube


def unused_markers(markers, panel: Panel, panels: PanelSet | None) -> tuple[str, ...]:
    """Markers a file carries that some panel of the set uses and its own tube does not
    (sorted): a CD19 channel in a file counted as the 4-colour T-cell tube, whose B cells
    then go uncounted. Markers no panel knows (a research marker) are not listed."""
    known = panels if panels is not None else default_panels()
    vocabulary = {m for p in known.values() for m in p.markers}
    return tuple(sorted(m for m in markers if m in vocabulary and m not in panel.markers))


def gate_request_or_failure(request: TubeRequest, templates: str | None,
                            engine: str = "compiled",
                            keep_keywords: bool = False,
                            gating: str = "fixed",
                            panels: PanelSet | None = None) -> GatedTube | TubeFailure:
    """Gate one tube; any failure becomes a :class:`TubeFailure` with a one-line reason."""
    try:
        return gate_request(request, templates, engine, keep_keywords, gating, panels)
    except ImmunoprofileError as exc:
        return TubeFailure(str(request.path), str(exc))
    except MemoryError:
        return TubeFailure(str(request.path), f"{request.path.name}: out of memory")
    except Exception as exc:  # a bug, not the user's fault: still one line, never a crash
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return TubeFailure(
            str(request.path),
            f"{request.path.name}: internal error — please report: {type(exc).__name__}: "
            f"{first_line(exc)} (at {Path(where.filename).name}:{where.lineno})",
        )


def gate_tube_file(path: str | Path, sample_id: str, *, tube: str | None = None,
                   templates: str | Path | None = None, engine: str = "compiled",
                   gating: str = "adaptive",
                   panels: str | Path | Sequence[str | Path] | PanelSet | None = None
                   ) -> GatedTube | TubeFailure:
    """Gate one FCS file for the workflow; a failure is returned, not raised.

    Only gating happens here (which events fall in which gate); the counting inputs of the
    manifest row (beads, volume, ALC) are applied later by :func:`assemble_tube_results`,
    so changing them does not re-gate the tube.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    sample_id : str
        The tube's sample id in the manifest (stored in the result, checked on reading).
    tube : str, optional
        The manifest's ``tube`` (``nk``, ``cd4``, ``cd8`` or a tube of ``panels``);
        detected from the markers when None.
    templates : str or Path, optional
        Folder of Gating-ML templates instead of the shipped ones.
    engine : {"compiled", "flowkit"}
    gating : {"adaptive", "fixed"}
    panels : PanelSet, or folder(s) of panel files, optional
        A lab's panels beside the shipped ones (:func:`resolve_panels`).
    """
    check_engine(engine, gating)
    path = Path(path)
    request = TubeRequest(path=path.resolve(), sample_id=sample_id, patient_id="",
                          tube=tube, beads_per_test=math.nan, volume_ul=math.nan,
                          alc=math.nan)
    return gate_request_or_failure(request, resolve_templates(templates, gating), engine,
                                   gating=gating, panels=resolve_panels(panels))
