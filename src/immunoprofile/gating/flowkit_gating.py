"""Gating one tube with FlowKit: the reference gating path.

FlowKit applies the template to the tube — compensation with the file's spillover, logicle
transforms, every gate — and gives each gate's event membership (already ANDed with its
parents). Those memberships are packed into one bitmask per event, the form the counting
kernels take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GatingError, first_line
from ..io.fcs import Tube
from .panels import Panel
from .templates import channel_map, load_strategy

#: Most gates a membership bitmask holds.
MAX_GATES = 32


@dataclass
class GateMemberships:
    """Per-event gate memberships of one tube.

    Attributes
    ----------
    gate_ids : list of str
        Gate IDs in hierarchy order (parents before children).
    parents : list of str or None
        Each gate's parent gate ID (None for a root gate).
    bitmask : numpy.ndarray
        uint32, one per event; bit ``i`` set when the event is in ``gate_ids[i]``.
    """

    gate_ids: list[str]
    parents: list[str | None]
    bitmask: np.ndarray

    def membership(self, gate_id: str) -> np.ndarray:
        """Boolean membership of one gate, one value per event."""
        bit = np.uint32(1) << np.uint32(self.gate_ids.index(gate_id))
        return (self.bitmask & bit) != 0


def gate_tube(tube: Tube, panel: Panel, templates: str | None = None) -> GateMemberships:
    """Gate one tube with FlowKit using its panel's Gating-ML template.

    Parameters
    ----------
    tube : Tube
        From :func:`immunoprofile.io.fcs.read_tube`.
    panel : Panel
        The tube's panel (chooses the template).
    templates : str, optional
        Folder of templates to use instead of the shipped ones.

    Returns
    -------
    GateMemberships

    Raises
    ------
    PanelError
        A channel the gates need is missing.
    GatingError
        FlowKit could not apply the template to this file.
    """
    mapping = channel_map(panel, tube.markers, tube.scatter, source=tube.path.name)
    strategy = load_strategy(panel, mapping, templates)
    try:
        results = strategy.gate_sample(tube.sample)
    except Exception as exc:
        raise GatingError(
            f"{tube.path.name}: FlowKit could not gate this tube: {first_line(exc)}") from None
    finally:
        strategy.clear_cache()  # FlowKit keeps compensated events per sample otherwise
    gate_ids: list[str] = []
    parents: list[str | None] = []
    for gate_id, gate_path in strategy.get_gate_ids():
        gate_ids.append(gate_id)
        parent = gate_path[-1] if gate_path else "root"
        parents.append(None if parent == "root" else parent)
    order = _hierarchy_order(gate_ids, parents)
    gate_ids = [gate_ids[i] for i in order]
    parents = [parents[i] for i in order]
    if len(gate_ids) > MAX_GATES:
        raise GatingError(f"template for {panel.tube} has more than {MAX_GATES} gates")
    bitmask = np.zeros(tube.event_count, dtype=np.uint32)
    for bit, gate_id in enumerate(gate_ids):
        member = np.asarray(results.get_gate_membership(gate_id), dtype=bool)
        bitmask |= member.astype(np.uint32) << np.uint32(bit)
    return GateMemberships(gate_ids=gate_ids, parents=parents, bitmask=bitmask)


def _hierarchy_order(gate_ids: list[str], parents: list[str | None]) -> list[int]:
    """Indices that put every gate after its parent, keeping template order otherwise."""
    placed: list[int] = []
    seen: set[str] = set()
    remaining = list(range(len(gate_ids)))
    while remaining:
        progressed = False
        for i in list(remaining):
            if parents[i] is None or parents[i] in seen:
                placed.append(i)
                seen.add(gate_ids[i])
                remaining.remove(i)
                progressed = True
        if not progressed:  # defensive: FlowKit guarantees a tree
            placed.extend(remaining)
            break
    return placed
