"""What a panel is, as data: its tubes (:class:`Panel`), the tubes of a run
(:class:`PanelSet`) and the gates the counts are read from.

Panels are read from files by :mod:`.panel_files`; which panel a tube is, from its markers,
is :func:`.panels.detect_panel`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

from ..io.channels import marker_channels

#: Gate IDs the counts are made from, in every tube's template (see ``gating/README.md``):
#: bead events, lymphocyte events (the denominator of every percentage and the dual-platform
#: count) and CD3+ T cells.
BEAD_GATE = "Beads"
LYMPHOCYTE_GATE = "Lymphocytes"
CD3_GATE = "CD3pos"


def within_gate(gate_id: str, parents: Mapping[str, str | None],
                ancestor: str = LYMPHOCYTE_GATE) -> bool:
    """Whether a gate is ``ancestor`` or lies within it.

    Parameters
    ----------
    gate_id : str
    parents : mapping
        ``{gate ID: parent gate ID or None}`` of a template; a parent not in it, or a
        cycle of parents, ends the walk.
    ancestor : str
        The lymphocyte gate by default.

    Examples
    --------
    >>> within_gate("CD4pos", {"Lymphocytes": None, "CD3pos": "Lymphocytes",
    ...                        "CD4pos": "CD3pos"})
    True
    """
    seen: set[str] = set()
    node: str | None = gate_id
    while node is not None and node != ancestor and node not in seen:
        seen.add(node)
        node = parents.get(node)
    return node == ancestor


#: Scatter channels a template gates on unless its panel says otherwise.
DEFAULT_SCATTER = ("FSC-A", "FSC-H", "SSC-A")


@dataclass(frozen=True)
class PanelQC:
    """The limits of a panel's quality checks (its file's ``qc``; README.md, "QC flags",
    gives each rule and the guideline it follows). The defaults are those for a TBNK
    result; None switches a check off.

    Attributes
    ----------
    lymphosum_gates : tuple of str
        Gates summed as % of lymphocytes (T + B + NK: ``CD3pos``, ``CD19pos``, ``NK``);
        empty: no lymphosum.
    lymphosum_warn, lymphosum_fail : (float, float)
        Lymphosum range, %: outside the first ``LYMPHOSUM_WARNING`` (95–105), outside the
        second ``LYMPHOSUM_FAIL`` (90–110).
    lymphosum_overlap_pct : float or None
        Largest share of a tube's lymphocyte events that two lymphosum gates both hold, %
        (``LYMPHOSUM_OVERLAP``: the sum counts those events twice).
    t_sum_pct : float or None
        Largest |CD4+ + CD8+ − CD3+| / CD3+, % (``CD4_CD8_SUM_MISMATCH``).
    lymphocyte_events_warn, lymphocyte_events_fail : int or None
        Fewest lymphocyte events in a tube: ``LOW_LYMPHOCYTE_EVENTS`` (2,500, the common
        regulatory minimum) and ``LYMPHOCYTES_BELOW_FLOOR`` (1,000).
    bead_events : int or None
        Fewest bead events in a bead tube (``LOW_BEAD_EVENTS``, 1,000).
    cd3_pct_points : float or None
        Largest difference of CD3+ % of lymphocytes between a patient's tubes, percentage
        points (``CD3_PCT_TUBE_DISAGREEMENT``).
    cd3_per_ul_pct : float or None
        Largest (max − min) / mean of CD3+/µL, and of lymphocytes/µL, between a patient's
        tubes, % (``CD3_TUBE_DISAGREEMENT``, ``LYMPHOCYTE_TUBE_DISAGREEMENT``).
    counting_sds : float
        A tube difference within this many counting SDs (Poisson error of the events
        counted) is not flagged, whatever the limits say; 0 flags on the limits alone.
    """

    lymphosum_gates: tuple[str, ...] = ()
    lymphosum_warn: tuple[float, float] = (95.0, 105.0)
    lymphosum_fail: tuple[float, float] = (90.0, 110.0)
    lymphosum_overlap_pct: float | None = 0.5
    t_sum_pct: float | None = 10.0
    lymphocyte_events_warn: int | None = 2_500
    lymphocyte_events_fail: int | None = 1_000
    bead_events: int | None = 1_000
    cd3_pct_points: float | None = 3.0
    cd3_per_ul_pct: float | None = 10.0
    counting_sds: float = 3.0

    @classmethod
    def from_file(cls, qc: Mapping) -> PanelQC:
        """From a panel file's ``qc`` (schema-checked): keys it omits keep the defaults."""
        default = cls()
        lymphosum = qc.get("lymphosum", {})
        events = qc.get("lymphocyte_events", {})
        agreement = qc.get("tube_agreement", {})
        return cls(
            lymphosum_gates=tuple(lymphosum.get("gates", ())),
            lymphosum_warn=tuple(lymphosum.get("warn", default.lymphosum_warn)),
            lymphosum_fail=tuple(lymphosum.get("fail", default.lymphosum_fail)),
            lymphosum_overlap_pct=lymphosum.get("overlap_pct", default.lymphosum_overlap_pct),
            t_sum_pct=qc.get("t_sum_pct", default.t_sum_pct),
            lymphocyte_events_warn=events.get("warn", default.lymphocyte_events_warn),
            lymphocyte_events_fail=events.get("fail", default.lymphocyte_events_fail),
            bead_events=qc.get("bead_events", default.bead_events),
            cd3_pct_points=agreement.get("cd3_pct_points", default.cd3_pct_points),
            cd3_per_ul_pct=agreement.get("cd3_per_ul_pct", default.cd3_per_ul_pct),
            counting_sds=agreement.get("counting_sds", default.counting_sds),
        )

    @classmethod
    def from_dict(cls, data: Mapping) -> PanelQC:
        """The inverse of :func:`dataclasses.asdict` (lists back to tuples)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Panel:
    """One tube of a panel: what it carries, its template and what it reports.

    Panels are data (``gating/panels/*.yaml``, read by :mod:`.panel_files`; the format
    is documented in ``gating/README.md``): the study's three tubes ship as
    ``gating/panels/study.yaml``, and a lab adds its own with ``--panels DIR``.

    Attributes
    ----------
    tube : str
        Short name used in manifests and outputs (``nk``, ``cd4``, ``cd8``).
    markers : tuple of str
        Canonical markers the tube must carry, in the order of its template channels.
    population : str
        Gate ID of the population this tube is for (``NK``, ``CD4pos``, ``CD8pos``).
    panel : str
        Name of the panel the tube belongs to (``study``).
    template : str
        File name of the tube's Gating-ML template (``""``: ``<tube>_tube.xml``).
    channels : tuple of (str, str)
        Template fluorescence channel → the marker it carries, e.g.
        ``("PE-A", "CD4")``; empty for a Panel made in code without them (the study
        tube's FITC / PE / PerCP-Cy5.5 layout, ``markers`` in that order).
    scatter : tuple of str
        Scatter channels the template gates on.
    reports : tuple of (str, str)
        Gate ID → the ``profiles.csv`` column its count (cells/µL) goes to.
    bead_gate, lymphocyte_gate, t_cell_gate : str
        The gates the counts are read from: counting beads, lymphocytes (the denominator
        of every % and of the dual-platform count), CD3+ T cells.
    folder : str or None
        Where the template lies for a lab's panel (its panel file's folder); None for the
        shipped panels (``gating/`` or ``gating/adaptive/``, or ``--templates``).
    aliases : tuple of (str, tuple of str)
        Marker → further ``$PnS`` spellings of it (whole words, case-insensitive).
    qc : PanelQC
        The limits of the panel's quality checks.
    """

    tube: str
    markers: tuple[str, ...]
    population: str
    panel: str = "study"
    template: str = ""
    channels: tuple[tuple[str, str], ...] = ()
    scatter: tuple[str, ...] = DEFAULT_SCATTER
    reports: tuple[tuple[str, str], ...] = ()
    bead_gate: str = BEAD_GATE
    lymphocyte_gate: str = LYMPHOCYTE_GATE
    t_cell_gate: str = CD3_GATE
    folder: str | None = None
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    qc: PanelQC = field(default_factory=PanelQC)

    def to_dict(self) -> dict:
        """The panel as plain data (JSON), for a tube's result file."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["qc"] = asdict(self.qc)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Panel:
        """The inverse of :meth:`to_dict` (lists back to tuples)."""
        def frozen(value):
            return tuple(frozen(v) for v in value) if isinstance(value, list) else value

        values = {k: frozen(v) for k, v in data.items() if k != "qc"}
        return cls(**values, qc=PanelQC.from_dict(data.get("qc", {})))

    @property
    def gate_ids(self) -> tuple[str, ...]:
        """Gate IDs the tube's template must define: the tables read each of them."""
        return tuple(dict.fromkeys((self.bead_gate, self.lymphocyte_gate, self.t_cell_gate,
                                    self.population, *(g for g, _ in self.reports))))

    @property
    def within_lymphocytes(self) -> tuple[str, ...]:
        """Gate IDs that must lie within the lymphocyte gate (absolute counts and % of
        lymphocytes are given only for the gates there)."""
        return tuple(dict.fromkeys((self.t_cell_gate, self.population,
                                    *(g for g, _ in self.reports))))

    @property
    def description(self) -> str:
        """Markers joined as a lab writes a panel, e.g. ``CD3/CD8/CD45``."""
        return "/".join(self.markers)

    @property
    def template_file(self) -> str:
        """The template's file name."""
        return self.template or f"{self.tube}_tube.xml"

    @property
    def template_channels(self) -> dict[str, str]:
        """Template fluorescence channel → marker (the study layout when not given)."""
        if self.channels:
            return dict(self.channels)
        return dict(zip(("FITC-A", "PE-A", "PerCP-Cy5-5-A"), self.markers, strict=False))


class PanelSet(Mapping[str, Panel]):
    """The tubes immunoprofile knows in a run, by tube name: the shipped panels and a
    lab's own (``--panels DIR``).

    Parameters
    ----------
    panels : iterable of Panel
        Tube names must be unique (:func:`.panel_files.load_panels` checks it, naming
        both files).
    """

    def __init__(self, panels: Iterable[Panel]):
        self._tubes = {p.tube: p for p in panels}

    def __getitem__(self, tube: str) -> Panel:
        return self._tubes[tube]

    def __iter__(self):
        return iter(self._tubes)

    def __len__(self) -> int:
        return len(self._tubes)

    def __repr__(self) -> str:
        return f"<PanelSet: {', '.join(self._tubes)}>"

    def __hash__(self) -> int:
        return hash(tuple(self._tubes.values()))

    def __eq__(self, other) -> bool:
        return isinstance(other, PanelSet) and list(self._tubes.values()) == list(
            other._tubes.values())

    def markers_of(self, pnn: Sequence[str], pns: Sequence[str | None]) -> dict[str, str]:
        """``{marker: channel}`` of a file: the canonical CD markers of its ``$PnS``
        (:func:`~immunoprofile.io.channels.marker_channels`) and the panels' aliases."""
        mapping = marker_channels(pnn, pns)
        aliases = [(marker, spelling) for p in self._tubes.values()
                   for marker, spellings in p.aliases for spelling in spellings]
        for marker, spelling in aliases:
            if marker in mapping:
                continue
            taken = set(mapping.values())  # a channel carries one marker of a panel
            pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(spelling)}(?![A-Za-z0-9])",
                                 re.IGNORECASE)
            for name, label in zip(pnn, pns, strict=True):
                if label and name not in taken and pattern.search(label):
                    mapping[marker] = name
                    break
        return mapping
