"""Gating one tube with the compiled engine (:mod:`immunoprofile.engine`).

The panel's Gating-ML template is parsed by FlowKit exactly as for the FlowKit engine, then
compiled once per template and channel layout (and stored, so later runs skip both); the
compiled plan gates the memory-mapped events and hands back the same packed memberships as
:mod:`.flowkit_gating`.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import engine
from ..engine.program_store import load_program, program_key, save_program
from ..errors import GatingError, first_line
from ..io.fcs import Tube
from .flowkit_gating import MAX_GATES, GateMemberships
from .panels import Panel
from .templates import channel_map, fitted_template, load_strategy

_PLANS: dict[str, engine.GatingPlan] = {}
_LOCK = threading.Lock()


def _plan_for(tube: str | Panel, mapping, templates: str | None) -> engine.GatingPlan:
    """The compiled plan of a tube's template fitted to a channel layout.

    Kept in memory for the run, and on disk between runs (:mod:`..engine.program_store`):
    a later run loads the lowered program without importing FlowKit. The lock makes the
    threads of a batch wait for one compilation instead of repeating it.
    """
    key = program_key(fitted_template(tube, mapping, templates))
    with _LOCK:
        plan = _PLANS.get(key)
        if plan is None:
            program = load_program(key)
            if program is not None:
                plan = engine.GatingPlan.from_program(program)
            else:
                plan = engine.compile(load_strategy(tube, mapping, templates))
                if plan.compiled:
                    save_program(key, plan.program)
            _PLANS[key] = plan
    return plan


def gate_tube_compiled(tube: Tube, panel: Panel, templates: str | None = None,
                       threads: int | None = 1) -> GateMemberships:
    """Gate one tube with the compiled engine using its panel's Gating-ML template.

    Parameters
    ----------
    tube : Tube
        From :func:`immunoprofile.io.fcs.read_tube`.
    panel : Panel
        The tube's panel (chooses the template).
    templates : str, optional
        Folder of templates to use instead of the shipped ones.
    threads : int, optional
        Threads for one tube (1 by default: a batch runs tubes side by side instead).

    Returns
    -------
    GateMemberships

    Raises
    ------
    PanelError
        A channel the gates need is missing.
    GatingError
        The template cannot be applied to this file.
    """
    plan, membership = _run(tube, panel, templates, threads, want_bits=True)
    gate_ids, parents = _names(plan)
    bitmask = membership.bitmask[0].astype(np.uint32) if len(gate_ids) else \
        np.zeros(tube.event_count, dtype=np.uint32)
    return GateMemberships(gate_ids=gate_ids, parents=parents, bitmask=bitmask)


def count_tube_compiled(tube: Tube, panel: Panel, templates: str | None = None,
                        threads: int | None = 1) -> tuple[list[str], list[str | None],
                                                          np.ndarray]:
    """Events in each gate of one tube, counted by the compiled engine's kernel itself
    (no per-event memberships are kept: what ``immunoprofile gate`` needs).

    Parameters and errors as for :func:`gate_tube_compiled`.

    Returns
    -------
    gate_ids : list of str
        Gate IDs in hierarchy order.
    parents : list of str or None
        Each gate's parent gate ID.
    gate_events : numpy.ndarray
        int64, events in each gate (parent-ANDed).
    """
    plan, counts = _run(tube, panel, templates, threads, want_bits=False)
    gate_ids, parents = _names(plan)
    return gate_ids, parents, np.array([counts[key] for key in plan.gate_ids],
                                       dtype=np.int64)


def _names(plan: engine.GatingPlan) -> tuple[list[str], list[str | None]]:
    gate_ids = [name for name, _ in plan.gate_ids]
    parents = [path[-1] if len(path) > 1 else None for _, path in plan.gate_ids]
    return gate_ids, parents


def _run(tube: Tube, panel: Panel, templates: str | None, threads: int | None,
         want_bits: bool):
    mapping = channel_map(panel, tube.markers, tube.scatter, source=tube.path.name)
    plan = _plan_for(panel, mapping, templates)
    if len(plan.gate_ids) > MAX_GATES:
        raise GatingError(f"template for {panel.tube} has more than {MAX_GATES} gates")
    source = tube.sample if not plan.compiled else tube.events
    try:
        result = plan.membership(source, threads=threads) if want_bits else \
            plan.counts(source, threads=threads)
    except (LookupError, ValueError) as exc:
        raise GatingError(f"{tube.path.name}: the template cannot be applied to this tube: "
                          f"{first_line(exc)}") from None
    except Exception as exc:
        if plan.compiled:
            raise
        # the FlowKit fallback: as flowkit_gating reports FlowKit's failures
        raise GatingError(f"{tube.path.name}: FlowKit could not gate this tube: "
                          f"{first_line(exc)}") from None
    return plan, result
