"""Gating one tube with the compiled engine (:mod:`immunoprofile.engine`).

The panel's Gating-ML template is parsed by FlowKit exactly as for the FlowKit engine, then
compiled once per template and channel layout; the compiled plan gates the memory-mapped
events and hands back the same packed memberships as :mod:`.flowkit_gating`.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

from .. import engine
from ..errors import GatingError
from ..io.fcs import Tube
from ..panels import Panel
from .flowkit_gating import MAX_GATES, GateMemberships
from .templates import channel_map, load_strategy

_PLANS: dict[int, engine.GatingPlan] = {}
_LOCK = threading.Lock()


def _plan_for(strategy) -> engine.GatingPlan:
    # load_strategy caches strategies, so one plan per strategy object is one per template
    # and channel layout; the strategy is kept alive by that cache. The lock makes threads
    # of a batch wait for one compilation instead of repeating it.
    with _LOCK:
        plan = _PLANS.get(id(strategy))
        if plan is None or plan.strategy is not strategy:
            plan = engine.compile(strategy)
            _PLANS[id(strategy)] = plan
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
    mapping = channel_map(panel, tube.markers, tube.scatter, source=tube.path.name)
    strategy = load_strategy(panel.tube, mapping, templates)
    with warnings.catch_warnings():
        warnings.simplefilter("always", engine.EngineFallbackWarning)
        plan = _plan_for(strategy)
    if len(plan.gate_ids) > MAX_GATES:
        raise GatingError(f"template for {panel.tube} has more than {MAX_GATES} gates")
    try:
        membership = plan.membership(tube.sample if not plan.compiled else tube.events,
                                     threads=threads)
    except (LookupError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GatingError(
            f"{tube.path.name}: the template cannot be applied to this tube: {first_line}"
        ) from None
    gate_ids = [name for name, _ in plan.gate_ids]
    parents = [path[-1] if len(path) > 1 else None for _, path in plan.gate_ids]
    bitmask = membership.bitmask[0].astype(np.uint32) if len(gate_ids) else \
        np.zeros(tube.event_count, dtype=np.uint32)
    return GateMemberships(gate_ids=gate_ids, parents=parents, bitmask=bitmask)
