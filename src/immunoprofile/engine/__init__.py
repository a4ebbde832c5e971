"""The compiled gating engine: FlowKit's answers in one pass over the events.

``compile(strategy)`` lowers any FlowKit ``GatingStrategy`` to flat arrays, run by Numba
kernels: one generated for the strategy (:mod:`.codegen`, vectorised) and the generic one
(:mod:`.kernel`) for what that leaves; ``plan.counts(sample)`` and
``plan.membership(sample)`` gate a tube with them. FlowKit stays the reference: the engine
gives the same membership, event for event (tests compare them on the Gating-ML 2.0
compliance set, FlowJo workspaces and simulated tubes).
"""

from ..io.events import EventData, read_events
from .plan import EngineFallbackWarning, GateMembership, GatingPlan, compile
from .program import Unsupported

__all__ = [
    "EngineFallbackWarning",
    "EventData",
    "GateMembership",
    "GatingPlan",
    "Unsupported",
    "compile",
    "read_events",
]
