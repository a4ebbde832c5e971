"""Simulated three-colour tubes of CLL blood, with known truth.

No public FCS data hold counting beads, so immunoprofile writes its own tubes for tests,
benchmarks and ``sample_data/``. Every tube written here is **simulated**: the truth file
beside it says so, and so do the outputs made from it.

The model, step by step, for one tube:

1. Particles in the tube: each population's true concentration (cells/µL) × the stained
   blood volume (µL), plus the beads of the bead lot (beads per test).
2. The cytometer acquires a fixed number of events. Single particles are drawn from the
   tube in proportion to their numbers (multinomial), so event counts carry the Poisson
   error of real acquisitions; debris and doublets are added as fractions of all events.
3. Each cell carries log-normal amounts of each fluorochrome (its marker's brightness, or
   autofluorescence when negative) and normal forward/side scatter at the population's
   real position (e.g. lymphocytes: CD45 bright, SSC low).
4. Fluorochrome amounts × the instrument's gain, spread into the detectors by the
   spillover matrix written in ``$SPILLOVER``, plus photon (shot) noise and electronic
   noise. The file holds these uncompensated signals, as a BD FACSCanto writes them.

Where the populations sit and how wide they are is a :class:`Layout` (today's when none is
given, so ``sample_data/`` stays byte for byte what it was); the instrument's gains and
spillover are an :class:`Instrument`.

A tube is written as an FCS file with its truth by :mod:`.tube_files`, a cohort by
:mod:`.cohort`; the layout envelope — cases far beyond the nominal tube, for gates that
adapt to each tube — is :mod:`.envelope`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..io.channels import NK_MARKER

#: Detector channels of a three-colour BD FACSCanto tube, in file order.
CHANNELS = ("FSC-A", "FSC-H", "SSC-A", "FITC-A", "PE-A", "PerCP-Cy5-5-A", "Time")
FLUORESCENCE_CHANNELS = ("FITC-A", "PE-A", "PerCP-Cy5-5-A")
SCATTER_CHANNELS = ("FSC-A", "FSC-H", "SSC-A")
#: Fluorescence detectors of a six-colour BD FACSCanto II (blue laser: FITC, PE,
#: PerCP-Cy5.5, PE-Cy7; red laser: APC, APC-Cy7); the three-colour tubes use the first three.
DETECTORS = ("FITC-A", "PE-A", "PerCP-Cy5-5-A", "PE-Cy7-A", "APC-A", "APC-Cy7-A")
#: Largest value the instrument writes ($PnR): an 18-bit range.
CHANNEL_RANGE = 262144

#: Marker per fluorochrome channel for each tube: FITC / PE / PerCP-Cy5.5.
TUBE_MARKERS: dict[str, tuple[str, str, str]] = {
    "nk": ("CD3", NK_MARKER, "CD45"),
    "cd4": ("CD3", "CD4", "CD45"),
    "cd8": ("CD3", "CD8", "CD45"),
}
#: Tubes simulated beyond the study's, for a lab's own panel (``--panels``) in tests and
#: examples: a CD3 FITC / CD19 PE / CD45 PerCP-Cy5.5 B-cell tube. Not part of a simulated
#: patient's set of tubes (:data:`TUBE_MARKERS`).
OTHER_TUBE_MARKERS: dict[str, tuple[str, str, str]] = {
    "cd19": ("CD3", "CD19", "CD45"),
}
#: The multicolour tubes labs run today, detector → marker: BD Multitest 6-colour TBNK (one
#: tube) and the 4-colour TBNK pair (CD3/CD8/CD45/CD4 and CD3/CD16+56/CD45/CD19), as the
#: shipped panels ``gating/panels/tbnk6.yaml`` and ``tbnk4.yaml`` name their tubes.
MULTICOLOUR_TUBES: dict[str, dict[str, str]] = {
    "tbnk": {"FITC-A": "CD3", "PE-A": NK_MARKER, "PerCP-Cy5-5-A": "CD45", "PE-Cy7-A": "CD4",
             "APC-A": "CD19", "APC-Cy7-A": "CD8"},
    "tbnk4_t": {"FITC-A": "CD3", "PE-A": "CD8", "PerCP-Cy5-5-A": "CD45", "APC-A": "CD4"},
    "tbnk4_bnk": {"FITC-A": "CD3", "PE-A": NK_MARKER, "PerCP-Cy5-5-A": "CD45",
                  "APC-A": "CD19"},
}
#: The tubes of each panel ``immunoprofile simulate --panel`` writes per patient.
SIMULATED_PANELS: dict[str, tuple[str, ...]] = {
    "study": ("nk", "cd4", "cd8"),
    "tbnk6": ("tbnk",),
    "tbnk4": ("tbnk4_t", "tbnk4_bnk"),
}
#: Fluorochrome names of the detectors, as BD reagents are labelled in $PnS.
_FLUOROCHROME = {"FITC-A": "FITC", "PE-A": "PE", "PerCP-Cy5-5-A": "PerCP-Cy5.5",
                 "PE-Cy7-A": "PE-Cy7", "APC-A": "APC", "APC-Cy7-A": "APC-Cy7"}
_MARKER_TEXT = {NK_MARKER: "CD16+56"}


def tube_detectors(tube: str) -> dict[str, str]:
    """Detector → marker of a simulated tube (any of :func:`simulated_tubes`).

    Raises
    ------
    ValueError
        Not a tube the simulator writes.
    """
    if tube in MULTICOLOUR_TUBES:
        return dict(MULTICOLOUR_TUBES[tube])
    three = {**TUBE_MARKERS, **OTHER_TUBE_MARKERS}
    if tube in three:
        return dict(zip(FLUORESCENCE_CHANNELS, three[tube], strict=True))
    raise ValueError(f"unknown tube {tube!r}; use one of {', '.join(simulated_tubes())}")


def simulated_tubes() -> tuple[str, ...]:
    """Every tube the simulator writes."""
    return (*TUBE_MARKERS, *OTHER_TUBE_MARKERS, *MULTICOLOUR_TUBES)


def tube_channels(tube: str) -> tuple[str, ...]:
    """The channels of a simulated tube's file, in order: scatter, fluorescence, Time."""
    return (*SCATTER_CHANNELS, *tube_detectors(tube), "Time")


def _pns_text(marker: str, detector: str) -> str:
    return f"{_MARKER_TEXT.get(marker, marker)} {_FLUOROCHROME[detector]}"

#: Population labels written in the truth, with their integer codes in the label array.
LABELS = ("bead", "b_cell", "cd4_t", "cd8_t", "dn_t", "nk", "monocyte", "granulocyte",
          "debris", "doublet")
LABEL_CODE = {name: code for code, name in enumerate(LABELS)}
LYMPHOCYTE_LABELS = ("b_cell", "cd4_t", "cd8_t", "dn_t", "nk")

#: Which true labels each gate (by its Gating-ML ID) should hold.
GATE_TRUTH: dict[str, tuple[str, ...]] = {
    "Beads": ("bead",),
    "Lymphocytes": LYMPHOCYTE_LABELS,
    "CD3pos": ("cd4_t", "cd8_t", "dn_t"),
    "CD4pos": ("cd4_t",),
    "CD8pos": ("cd8_t",),
    "NK": ("nk",),
    "CD19pos": ("b_cell",),
}

# Brightness of each marker on each population: log10 of the mean fluorochrome amount at
# nominal gain, and the log10 standard deviation. A marker a population lacks shows the
# population's autofluorescence instead.
_EXPRESSION: dict[str, dict[str, tuple[float, float]]] = {
    # CLL B cells: CD45 slightly dimmer than T cells (CD19 is drawn only in a tube with it)
    "b_cell": {"CD19": (3.7, 0.15), "CD45": (3.75, 0.12)},
    "cd4_t": {"CD3": (3.6, 0.18), "CD4": (3.9, 0.15), "CD45": (3.95, 0.10)},
    "cd8_t": {"CD3": (3.6, 0.18), "CD8": (4.0, 0.18), "CD45": (3.95, 0.10)},
    "dn_t": {"CD3": (3.6, 0.18), "CD45": (3.95, 0.10)},
    "nk": {NK_MARKER: (3.7, 0.20), "CD8": (2.5, 0.30), "CD45": (3.95, 0.10)},
    "monocyte": {"CD4": (3.0, 0.20), NK_MARKER: (2.6, 0.30), "CD45": (3.65, 0.10)},
    "granulocyte": {NK_MARKER: (3.8, 0.20), "CD45": (3.25, 0.12)},
    "debris": {"CD45": (1.8, 0.50)},
}
_AUTOFLUORESCENCE: dict[str, tuple[float, float]] = {
    "b_cell": (1.4, 0.2), "cd4_t": (1.4, 0.2), "cd8_t": (1.4, 0.2), "dn_t": (1.4, 0.2),
    "nk": (1.4, 0.2), "monocyte": (2.0, 0.2), "granulocyte": (2.3, 0.2), "debris": (1.2, 0.4),
}
# Counting beads: fluorescent in every channel (log10 mean, sd per FITC, PE, PerCP-Cy5.5).
_BEAD_FLUORESCENCE = ((4.85, 0.03), (4.95, 0.03), (5.0, 0.03))
# ... and in the detectors of six-colour tubes (TruCount beads are bright in all of them).
_MORE_BEAD_FLUORESCENCE = {"PE-Cy7-A": (4.8, 0.03), "APC-A": (4.9, 0.03),
                           "APC-Cy7-A": (4.75, 0.03)}
# Spillover beyond the three-colour block, (fluorochrome, detector) → fraction: the usual
# sizes on a FACSCanto II with BD reagents, tandem dyes' spill back into their donor's
# detector (PE-Cy7 → PE, APC-Cy7 → APC) included; the range random instruments draw from.
_MORE_SPILLOVER: dict[tuple[str, str], tuple[float, float, float]] = {
    ("FITC-A", "PE-Cy7-A"): (0.004, 0.0, 0.01),
    ("PE-A", "PE-Cy7-A"): (0.03, 0.01, 0.05),
    ("PerCP-Cy5-5-A", "PE-Cy7-A"): (0.08, 0.03, 0.12),
    ("PerCP-Cy5-5-A", "APC-A"): (0.01, 0.0, 0.02),
    ("PerCP-Cy5-5-A", "APC-Cy7-A"): (0.03, 0.01, 0.05),
    ("PE-Cy7-A", "PE-A"): (0.025, 0.01, 0.05),
    ("PE-Cy7-A", "PerCP-Cy5-5-A"): (0.01, 0.0, 0.02),
    ("PE-Cy7-A", "APC-Cy7-A"): (0.04, 0.02, 0.06),
    ("APC-A", "PerCP-Cy5-5-A"): (0.01, 0.0, 0.02),
    ("APC-A", "APC-Cy7-A"): (0.12, 0.08, 0.18),
    ("APC-Cy7-A", "PE-Cy7-A"): (0.03, 0.01, 0.05),
    ("APC-Cy7-A", "APC-A"): (0.08, 0.04, 0.12),
}
# Forward and side scatter (area), linear units: mean and sd.
NOMINAL_SCATTER: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "bead": ((30_000, 2_000), (35_000, 2_500)),
    "b_cell": ((60_000, 6_000), (16_000, 3_000)),
    "cd4_t": ((55_000, 6_000), (18_000, 3_500)),
    "cd8_t": ((55_000, 6_000), (18_000, 3_500)),
    "dn_t": ((55_000, 6_000), (18_000, 3_500)),
    "nk": ((58_000, 6_000), (22_000, 4_000)),
    "monocyte": ((90_000, 10_000), (75_000, 9_000)),
    "granulocyte": ((110_000, 12_000), (145_000, 22_000)),
}
_FSC_HEIGHT_RATIO = 0.82  # FSC-H / FSC-A of a single particle
_PHOTON_UNITS = 2.0  # signal units per photoelectron (sets shot noise)
_ELECTRONIC_NOISE = 15.0  # sd of detector baseline noise, signal units
_EVENTS_PER_SECOND = 2_000.0
TIMESTEP_S = 0.01  # s per Time channel unit


@dataclass(frozen=True)
class PatientSpec:
    """True blood counts of one simulated patient, in cells/µL (= cells/mm³).

    Attributes
    ----------
    patient_id : str
    b_cells_per_ul, cd4_per_ul, cd8_per_ul, nk_per_ul : float
        CLL B cells, CD3+CD4+ T, CD3+CD8+ T and NK (CD3− CD16/56+) cells/µL.
    dn_t_per_ul : float
        CD3+ CD4− CD8− T cells/µL.
    monocytes_per_ul, granulocytes_per_ul : float
        Non-lymphoid leucocytes/µL.
    """

    patient_id: str
    b_cells_per_ul: float
    cd4_per_ul: float
    cd8_per_ul: float
    nk_per_ul: float
    dn_t_per_ul: float = 30.0
    monocytes_per_ul: float = 500.0
    granulocytes_per_ul: float = 4_000.0

    @property
    def lymphocytes_per_ul(self) -> float:
        """Absolute lymphocyte count, cells/µL."""
        return (self.b_cells_per_ul + self.cd4_per_ul + self.cd8_per_ul + self.nk_per_ul
                + self.dn_t_per_ul)

    @property
    def alc(self) -> float:
        """Absolute lymphocyte count, ×10⁹/L (as a haematology analyser reports it)."""
        return self.lymphocytes_per_ul / 1000.0

    def cells_per_ul(self) -> dict[str, float]:
        """True concentration of every cellular population, cells/µL, by truth label."""
        return {"b_cell": self.b_cells_per_ul, "cd4_t": self.cd4_per_ul,
                "cd8_t": self.cd8_per_ul, "dn_t": self.dn_t_per_ul, "nk": self.nk_per_ul,
                "monocyte": self.monocytes_per_ul, "granulocyte": self.granulocytes_per_ul}


@dataclass(frozen=True)
class Instrument:
    """One cytometer's settings.

    Attributes
    ----------
    name : str
        Written to ``$CYT``.
    gain_offsets : tuple of float
        Per fluorescence detector (FITC, PE, PerCP-Cy5.5; or all six of
        :data:`DETECTORS`), the shift of its gain from the nominal instrument, in decades
        (+0.1 = signals ×1.26).
    scatter_gain_offset : float
        Same for the scatter detectors, decades.
    spillover : tuple of tuple of float
        3×3 (or 6×6) spillover matrix over those detectors, row = fluorochrome, column =
        detector, written as ``$SPILLOVER``. A three-colour instrument acquiring a tube
        with more colours has the nominal gains and spill for the others
        (:meth:`for_detectors`).
    """

    name: str = "FACSCanto II"
    gain_offsets: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scatter_gain_offset: float = 0.0
    spillover: tuple[tuple[float, float, float], ...] = (
        (1.0, 0.20, 0.03),
        (0.01, 1.0, 0.12),
        (0.0, 0.005, 1.0),
    )

    def for_detectors(self, detectors: Sequence[str]) -> Instrument:
        """This instrument as seen by a tube with these detectors (of :data:`DETECTORS`):
        its gains and the spillover block among them; detectors it does not describe have
        the nominal gain and :data:`_MORE_SPILLOVER`'s usual spill."""
        own = DETECTORS[:len(self.gain_offsets)]
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown detector {unknown[0]!r}; use {', '.join(DETECTORS)}")
        if tuple(detectors) == own:
            return self
        gains = tuple(self.gain_offsets[own.index(d)] if d in own else 0.0 for d in detectors)
        spill = tuple(tuple(
            self.spillover[own.index(a)][own.index(b)] if a in own and b in own
            else 1.0 if a == b else _MORE_SPILLOVER.get((a, b), (0.0,))[0]
            for b in detectors) for a in detectors)
        return Instrument(self.name, gains, self.scatter_gain_offset,  # type: ignore[arg-type]
                          spill)


@dataclass(frozen=True)
class Layout:
    """Where the populations of a tube sit and how wide they are, beyond the instrument.

    The defaults are the nominal tube of :data:`sample_data/` (a tube simulated with
    ``Layout()`` has the same events as one simulated without a layout). Positions are
    before the instrument's gains: a channel's signal is its amount × 10^gain offset.

    Attributes
    ----------
    bead_fluorescence_log10 : tuple of float
        log10 of the counting beads' mean fluorochrome amount in FITC, PE and PerCP-Cy5.5
        (or in all six :data:`DETECTORS`), decades (signal units at nominal gain, before
        spillover); detectors beyond those given keep their nominal bead brightness.
    bead_scatter : tuple of float
        The beads' mean (FSC-A, SSC-A) at nominal scatter gain, linear units; their sd keeps
        today's coefficient of variation (6.7 % FSC, 7.1 % SSC).
    monocyte_ssc_ratio : float or None
        Monocytes' mean SSC-A as a multiple of the T cells' (18,000 at nominal gain), ×;
        their SSC sd keeps its 12 % CV. None keeps today's 75,000 (×4.2).
    b_cell_cd45_offset : float
        Shift of the CLL cells' (label ``b_cell``) log10 CD45 from today's 3.75 (0.2 decade
        below the T cells' 3.95), decades: −0.3 puts them 0.5 decade below the T cells.
    fluorescence_spread : float
        Factor on every population's log10 sd of fluorescence (beads included), ×.
    scatter_spread : float
        Factor on every population's FSC and SSC sd (beads included; debris keeps its
        shape), ×.
    """

    bead_fluorescence_log10: tuple[float, float, float] = tuple(  # type: ignore[assignment]
        float(mu) for mu, _ in _BEAD_FLUORESCENCE)
    bead_scatter: tuple[float, float] = (float(NOMINAL_SCATTER["bead"][0][0]),
                                         float(NOMINAL_SCATTER["bead"][1][0]))
    monocyte_ssc_ratio: float | None = None
    b_cell_cd45_offset: float = 0.0
    fluorescence_spread: float = 1.0
    scatter_spread: float = 1.0

    def __post_init__(self) -> None:
        if len(self.bead_fluorescence_log10) not in (len(FLUORESCENCE_CHANNELS),
                                                     len(DETECTORS)):
            raise ValueError("bead_fluorescence_log10 needs one value per fluorescence "
                             f"channel ({', '.join(FLUORESCENCE_CHANNELS)}, or all of "
                             f"{', '.join(DETECTORS)})")
        if len(self.bead_scatter) != 2 or min(self.bead_scatter) <= 0:
            raise ValueError("bead_scatter needs a positive (FSC-A, SSC-A) pair")
        if self.monocyte_ssc_ratio is not None and self.monocyte_ssc_ratio <= 0:
            raise ValueError("monocyte_ssc_ratio must be positive (or None)")
        if self.fluorescence_spread <= 0 or self.scatter_spread <= 0:
            raise ValueError("spread factors must be positive")


@dataclass(frozen=True)
class _Model:
    """Positions and spreads of every population for one layout (internal)."""

    expression: dict[str, dict[str, tuple[float, float]]]
    autofluorescence: dict[str, tuple[float, float]]
    bead_fluorescence: dict[str, tuple[float, float]]  # detector → (log10 mean, sd)
    scatter: dict[str, tuple[tuple[float, float], tuple[float, float]]]


def _model(layout: Layout) -> _Model:
    """The population table of :data:`_EXPRESSION` & co. moved and widened by ``layout``.

    Every default value leaves the numbers exactly as they are (x × 1.0, x + 0.0), so the
    random draws of a default layout are today's.
    """
    fs, ss = layout.fluorescence_spread, layout.scatter_spread
    expression = {label: {m: (mu, sd * fs) for m, (mu, sd) in markers.items()}
                  for label, markers in _EXPRESSION.items()}
    mu, sd = expression["b_cell"]["CD45"]
    expression["b_cell"]["CD45"] = (mu + layout.b_cell_cd45_offset, sd)
    auto = {label: (mu, sd * fs) for label, (mu, sd) in _AUTOFLUORESCENCE.items()}
    nominal = {**dict(zip(FLUORESCENCE_CHANNELS, _BEAD_FLUORESCENCE, strict=True)),
               **_MORE_BEAD_FLUORESCENCE}
    given = dict(zip(DETECTORS, layout.bead_fluorescence_log10, strict=False))
    beads = {d: (given.get(d, mu), sd * fs) for d, (mu, sd) in nominal.items()}
    scatter = {label: ((fm, fsd * ss), (sm, ssd * ss))
               for label, ((fm, fsd), (sm, ssd)) in NOMINAL_SCATTER.items()}
    (fm, fsd), (sm, ssd) = NOMINAL_SCATTER["bead"]
    bead_fsc, bead_ssc = layout.bead_scatter
    scatter["bead"] = ((bead_fsc, fsd * (bead_fsc / fm) * ss),
                       (bead_ssc, ssd * (bead_ssc / sm) * ss))
    if layout.monocyte_ssc_ratio is not None:
        fsc, (sm, ssd) = scatter["monocyte"]
        ssc = layout.monocyte_ssc_ratio * NOMINAL_SCATTER["cd4_t"][1][0]
        scatter["monocyte"] = (fsc, (ssc, ssd * ssc / sm))
    return _Model(expression, auto, beads, scatter)


def random_instrument(seed: int | np.random.Generator, name: str = "FACSCanto II (B)",
                      max_gain_offset: float = 0.15,
                      max_scatter_gain_offset: float = 0.05,
                      colours: int = 3) -> Instrument:
    """A cytometer with gains and spillover drawn across realistic ranges.

    Parameters
    ----------
    seed : int or numpy.random.Generator
    name : str
        Instrument name for ``$CYT``.
    max_gain_offset : float
        Every fluorescence gain is shifted uniformly within ±this, decades.
    max_scatter_gain_offset : float
        The scatter gain is shifted uniformly within ±this, decades.
    colours : {3, 6}
        Detectors described: FITC, PE, PerCP-Cy5.5, or all six of :data:`DETECTORS` (the
        three-colour draws come first and are the same either way).

    Returns
    -------
    Instrument
        FITC→PE spillover in 0.15–0.25, PE→PerCP-Cy5.5 in 0.05–0.20, smaller terms in their
        usual ranges (six colours: each term of :data:`_MORE_SPILLOVER` within its range,
        APC→APC-Cy7 0.08–0.18).
    """
    if colours not in (3, len(DETECTORS)):
        raise ValueError(f"colours must be 3 or {len(DETECTORS)}")
    rng = np.random.default_rng(seed)
    gains = tuple(float(g) for g in rng.uniform(-max_gain_offset, max_gain_offset, 3))
    spill = (
        (1.0, float(rng.uniform(0.15, 0.25)), float(rng.uniform(0.01, 0.04))),
        (float(rng.uniform(0.0, 0.02)), 1.0, float(rng.uniform(0.05, 0.20))),
        (0.0, float(rng.uniform(0.0, 0.01)), 1.0),
    )
    instrument = Instrument(name=name, gain_offsets=gains,  # type: ignore[arg-type]
                            scatter_gain_offset=float(rng.uniform(-max_scatter_gain_offset,
                                                                       max_scatter_gain_offset)),
                            spillover=spill)
    if colours == 3:
        return instrument
    more_gains = tuple(float(g) for g in rng.uniform(-max_gain_offset, max_gain_offset,
                                                     len(DETECTORS) - 3))
    drawn = {pair: float(rng.uniform(lo, hi)) for pair, (_, lo, hi) in _MORE_SPILLOVER.items()}
    full = instrument.for_detectors(DETECTORS)
    matrix = tuple(tuple(drawn.get((a, b), full.spillover[i][j])
                         for j, b in enumerate(DETECTORS)) for i, a in enumerate(DETECTORS))
    return Instrument(name, (*gains, *more_gains),  # type: ignore[arg-type]
                      instrument.scatter_gain_offset, matrix)


@dataclass
class SimulatedTube:
    """Events of one simulated tube with their truth.

    Attributes
    ----------
    events : numpy.ndarray
        float32, events × channels (:data:`CHANNELS`), uncompensated signals.
    labels : numpy.ndarray
        uint8 truth label code per event (see :data:`LABELS`).
    pns : list of str
        Marker text per channel (``$PnS``), empty for scatter and time.
    truth : dict
        True concentrations and settings; JSON-serialisable.
    channels : tuple of str
        ``$PnN`` of each column (:data:`CHANNELS` for a three-colour tube).
    """

    events: np.ndarray
    labels: np.ndarray
    pns: list[str]
    truth: dict = field(default_factory=dict)
    channels: tuple[str, ...] = CHANNELS

    @property
    def fluorescence_channels(self) -> tuple[str, ...]:
        """The tube's fluorescence detectors, in file order (those of ``$SPILLOVER``)."""
        return tuple(c for c in self.channels if c in DETECTORS)


def _log_normal(rng: np.random.Generator, mean_log10: float, sd_log10: float, n: int):
    return 10.0 ** rng.normal(mean_log10, sd_log10, n)


def _fluorochrome_amounts(rng, label: str, n: int, detectors: Mapping[str, str],
                          model: _Model) -> np.ndarray:
    """True fluorochrome amounts (events × detectors) of ``n`` particles of one population;
    ``detectors`` maps each detector to the marker it carries."""
    out = np.empty((n, len(detectors)))
    if label == "bead":
        for j, detector in enumerate(detectors):
            mu, sd = model.bead_fluorescence[detector]
            out[:, j] = _log_normal(rng, mu, sd, n)
        return out
    expression = model.expression.get(label, {})
    auto = model.autofluorescence[label]
    for j, marker in enumerate(detectors.values()):
        mu, sd = expression.get(marker, auto)
        out[:, j] = _log_normal(rng, mu, sd, n)
    return out


def _scatter(rng, label: str, n: int, model: _Model) -> np.ndarray:
    """Forward and side scatter area (events × 2) of ``n`` particles of one population."""
    if label == "debris":
        fsc = rng.gamma(2.0, 4_000.0, n)
        ssc = rng.gamma(2.0, 3_000.0, n)
        return np.column_stack([fsc, ssc])
    (fm, fs), (sm, ss) = model.scatter[label]
    return np.column_stack([rng.normal(fm, fs, n), np.abs(rng.normal(sm, ss, n))])


def simulate_tube(
    patient: PatientSpec,
    tube: str,
    *,
    events: int = 30_000,
    beads_per_test: float = 50_000.0,
    volume_ul: float = 50.0,
    instrument: Instrument | None = None,
    layout: Layout | None = None,
    debris_fraction: float = 0.03,
    doublet_fraction: float = 0.02,
    seed: int = 0,
) -> SimulatedTube:
    """Simulate one tube of one patient's blood, stained and acquired with counting beads.

    Parameters
    ----------
    patient : PatientSpec
        True counts, cells/µL.
    tube : str
        The tube: ``"nk"``, ``"cd4"``, ``"cd8"`` (the study's), ``"cd19"``, or a
        multicolour one of :data:`MULTICOLOUR_TUBES` (``"tbnk"``: BD Multitest 6-colour
        TBNK; ``"tbnk4_t"``, ``"tbnk4_bnk"``: the 4-colour pair).
    events : int
        Events acquired (beads, cells, debris and doublets together).
    beads_per_test : float
        Counting beads in the tube (from the bead lot); 0 makes a tube without beads.
    volume_ul : float
        Blood stained, µL.
    instrument : Instrument, optional
        Gains and spillover; the nominal FACSCanto when omitted. A three-colour instrument
        gives a multicolour tube the nominal gains and spill of its other detectors
        (:meth:`Instrument.for_detectors`).
    layout : Layout, optional
        Positions and spreads of the populations; today's when omitted (``Layout()`` gives
        the same events). A layout given is recorded in ``truth["layout"]``.
    debris_fraction, doublet_fraction : float
        Fractions of all events that are debris and cell doublets.
    seed : int
        Random seed: the same arguments and seed give the same tube.

    Returns
    -------
    SimulatedTube
    """
    detectors = tube_detectors(tube)
    if events < 1:
        raise ValueError("events must be at least 1")
    instrument = (instrument or Instrument()).for_detectors(tuple(detectors))
    model = _model(layout or Layout())
    rng = np.random.default_rng(seed)
    markers = detectors
    n_fluor = len(detectors)

    # 1-2. Particles in the tube and the events acquired from them.
    concentrations = patient.cells_per_ul()
    particles = {"bead": float(beads_per_test)}
    particles.update({k: v * volume_ul for k, v in concentrations.items()})
    names = list(particles)
    totals = np.array([particles[k] for k in names])
    n_debris = int(round(events * debris_fraction))
    n_doublets = int(round(events * doublet_fraction))
    n_single = events - n_debris - n_doublets
    counts = rng.multinomial(n_single, totals / totals.sum())

    labels_parts, amount_parts, scatter_parts, height_parts = [], [], [], []
    for label, n in zip(names, counts, strict=True):
        if n == 0:
            continue
        amounts = _fluorochrome_amounts(rng, label, n, markers, model)
        scat = _scatter(rng, label, n, model)
        labels_parts.append(np.full(n, LABEL_CODE[label], np.uint8))
        amount_parts.append(amounts)
        scatter_parts.append(scat)
        height_parts.append(scat[:, 0] * _FSC_HEIGHT_RATIO * rng.normal(1.0, 0.015, n))
    if n_debris:
        labels_parts.append(np.full(n_debris, LABEL_CODE["debris"], np.uint8))
        amount_parts.append(_fluorochrome_amounts(rng, "debris", n_debris, markers,
                                                 model))
        scat = _scatter(rng, "debris", n_debris, model)
        scatter_parts.append(scat)
        height_parts.append(scat[:, 0] * rng.uniform(0.6, 0.95, n_debris))
    if n_doublets:
        # Two cells passing the laser together: signals add, the pulse is wider than high.
        cell_names = [k for k in names if k != "bead"]
        weights = np.array([particles[k] for k in cell_names])
        pair_labels = rng.choice(len(cell_names), size=(n_doublets, 2), p=weights / weights.sum())
        amounts = np.zeros((n_doublets, n_fluor))
        scat = np.zeros((n_doublets, 2))
        height = np.zeros(n_doublets)
        for member in range(2):
            for code in np.unique(pair_labels[:, member]):
                rows = np.flatnonzero(pair_labels[:, member] == code)
                label = cell_names[code]
                amounts[rows] += _fluorochrome_amounts(rng, label, rows.size, markers, model)
                s = _scatter(rng, label, rows.size, model)
                scat[rows] += s
                height[rows] = np.maximum(height[rows], s[:, 0] * _FSC_HEIGHT_RATIO)
        labels_parts.append(np.full(n_doublets, LABEL_CODE["doublet"], np.uint8))
        amount_parts.append(amounts)
        scatter_parts.append(scat)
        height_parts.append(height * rng.uniform(1.05, 1.2, n_doublets))

    labels = np.concatenate(labels_parts)
    amounts = np.concatenate(amount_parts)
    scatter = np.concatenate(scatter_parts)
    fsc_height = np.concatenate(height_parts)
    order = rng.permutation(labels.size)  # events arrive in random order
    labels, amounts, scatter, fsc_height = (labels[order], amounts[order], scatter[order],
                                            fsc_height[order])

    # 3-4. Detector signals: gain, spillover, shot noise and electronic noise.
    primary = amounts * 10.0 ** np.asarray(instrument.gain_offsets)
    spill = np.asarray(instrument.spillover, dtype=float)
    signal = primary @ spill
    shot = rng.normal(0.0, 1.0, signal.shape) * np.sqrt(_PHOTON_UNITS * np.clip(signal, 0, None))
    fluorescence = signal + shot + rng.normal(0.0, _ELECTRONIC_NOISE, signal.shape)
    scatter_gain = 10.0 ** instrument.scatter_gain_offset
    fsc_a = scatter[:, 0] * scatter_gain
    fsc_h = fsc_height * scatter_gain
    ssc_a = scatter[:, 1] * scatter_gain
    time = np.sort(rng.uniform(0.0, labels.size / _EVENTS_PER_SECOND / TIMESTEP_S, labels.size))

    data = np.column_stack([fsc_a, fsc_h, ssc_a, fluorescence, time])
    top = CHANNEL_RANGE - 1
    data[:, :3] = np.clip(data[:, :3], 0, top)
    data[:, 3:3 + n_fluor] = np.clip(data[:, 3:3 + n_fluor], -111, top)

    pns = ["", "", "", *(_pns_text(m, d) for d, m in detectors.items()), ""]
    truth = {
        "simulated": True,
        "patient_id": patient.patient_id,
        "tube": tube,
        "panel": "/".join(detectors.values()),
        "events": int(labels.size),
        "beads_per_test": float(beads_per_test),
        "volume_ul": float(volume_ul),
        "alc": patient.alc,
        "cells_per_ul": {**concentrations, "lymphocytes": patient.lymphocytes_per_ul,
                         "cd3": patient.cd4_per_ul + patient.cd8_per_ul + patient.dn_t_per_ul},
        "label_counts": {name: int((labels == LABEL_CODE[name]).sum()) for name in LABELS},
        "expected_events": {
            label: float(n_single * particles[label] / totals.sum()) for label in names
        },
        "labels": list(LABELS),
        "gate_truth": {k: list(v) for k, v in GATE_TRUTH.items()},
        "instrument": asdict(instrument),
        "seed": int(seed),
        "patient": asdict(patient),
    }
    if layout is not None:  # a tube without one keeps today's truth file, byte for byte
        truth["layout"] = asdict(layout)
    channels = tube_channels(tube)
    if channels != CHANNELS:  # so do the three-colour tubes
        truth["detectors"] = list(detectors)
    return SimulatedTube(events=data.astype(np.float32), labels=labels, pns=pns, truth=truth,
                         channels=channels)


