"""The layout envelope: seeded, reproducible SIMULATED cases (patient × instrument × layout ×
bead lot) far beyond the nominal tube, for testing gates that adapt to each tube.

:func:`envelope_case` / :func:`envelope_cases` draw cases across :data:`ENVELOPE`:

- every fluorescence gain ±0.5 decade, independently; the scatter gain ±0.3 decade;
  spillover across its realistic range (as :func:`.simulate.random_instrument`);
- beads at 10^4.0–10^5.3 in each fluorescence channel independently, as the instrument
  shows them after compensation (the layout holds that less the gain), and at any scatter:
  FSC 8,000–200,000 and SSC 4,000–200,000 as acquired, or — one case in three — right on
  the lymphocytes;
- monocyte SSC 2–5 × the T cells'; CLL cells' CD45 from 0.5 decade below the T cells to
  level with them; every fluorescence log10 sd and every scatter sd ×0.7–1.5 (two
  factors drawn separately);
- patients: ALC 1–300 ×10⁹/L (log-uniform), CLL cells 0–99 % of the lymphocytes, CD4
  20–2,500 and CD8 20–2,000 cells/µL (about one case in five below 50), NK 50–1,000,
  monocytes 100–1,500, granulocytes 1,000–8,000 cells/µL; 40,000–60,000 beads per test;
  blood volume stained as :func:`.cohort.write_cohort` chooses it
  (:func:`.cohort.stained_volume_ul`: beads stay ≥ ~5 % of events).

Events per tube stay fixed (30,000 by default); signals beyond the 18-bit range are
clipped as the instrument does (beads at 10^5.3 with much FITC spilling into PE touch the
top: under 1 % of their events). ``immunoprofile simulate DIR --envelope N`` writes N
such cases × 3 tubes (:func:`write_envelope`); with ``--panel tbnk6`` or ``tbnk4``, cases
drawn for a six-colour cytometer (every detector's gain, bead position and spill across
the same ranges) with the panel's TBNK tubes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cohort import panel_tubes, stained_volume_ul, write_listed, write_manifest
from .simulate import (
    DETECTORS,
    NOMINAL_SCATTER,
    Instrument,
    Layout,
    PatientSpec,
    SimulatedTube,
    random_instrument,
    simulate_tube,
)


@dataclass(frozen=True)
class Envelope:
    """Bounds of the layout envelope that :func:`envelope_case` draws from (issue 12).

    Ranges are (low, high); every quantity is drawn independently, uniformly, or
    log-uniformly where the name says ``per_ul`` or ``scatter``. Signal positions are as
    the cytometer shows them after compensation (amount × gain), not before the gain.

    Attributes
    ----------
    gain_offset : float
        Every fluorescence gain within ±this, decades (independently per detector).
    scatter_gain_offset : float
        The scatter gain (FSC and SSC together) within ±this, decades.
    bead_log10 : (float, float)
        The beads' log10 compensated signal in each fluorescence channel, decades
        (independently per channel).
    bead_fsc_scatter, bead_ssc_scatter : (float, float)
        The beads' FSC-A and SSC-A as acquired, linear units, log-uniform.
    lymphocyte_like_beads : float
        Share of cases whose beads sit at the lymphocytes' scatter instead (FSC within
        ±15 %, SSC within −20…+25 % of the T cells'), probability.
    monocyte_ssc_ratio : (float, float)
        Monocytes' SSC as a multiple of the T cells', ×.
    b_cell_cd45_offset : (float, float)
        CLL cells' CD45 shift from today's (0.2 decade below the T cells), decades.
    spread : (float, float)
        Factors on the log10 sd of fluorescence and on the scatter sd (drawn separately), ×.
    alc_per_ul : (float, float)
        Absolute lymphocyte count, cells/µL (1,000–300,000 = 1–300 ×10⁹/L), log-uniform.
    max_b_cell_fraction : float
        Most CLL cells of the lymphocytes, fraction.
    cd4_per_ul, cd8_per_ul, nk_per_ul, dn_t_per_ul, monocytes_per_ul, granulocytes_per_ul
        Ranges of the other populations, cells/µL (log-uniform); the CLL cells make up the
        rest of the ALC. T and NK counts are drawn again until that rest lies between 0 and
        ``max_b_cell_fraction`` of the ALC, so at a high ALC they tend high, at a low one
        low.
    beads_per_test : (float, float)
        Counting beads per tube (the lot's figure), uniform.
    """

    gain_offset: float = 0.5
    scatter_gain_offset: float = 0.3
    bead_log10: tuple[float, float] = (4.0, 5.3)
    bead_fsc_scatter: tuple[float, float] = (8_000.0, 200_000.0)
    bead_ssc_scatter: tuple[float, float] = (4_000.0, 200_000.0)
    lymphocyte_like_beads: float = 1 / 3
    monocyte_ssc_ratio: tuple[float, float] = (2.0, 5.0)
    b_cell_cd45_offset: tuple[float, float] = (-0.3, 0.2)
    spread: tuple[float, float] = (0.7, 1.5)
    alc_per_ul: tuple[float, float] = (1_000.0, 300_000.0)
    max_b_cell_fraction: float = 0.99
    cd4_per_ul: tuple[float, float] = (20.0, 2_500.0)
    cd8_per_ul: tuple[float, float] = (20.0, 2_000.0)
    nk_per_ul: tuple[float, float] = (50.0, 1_000.0)
    dn_t_per_ul: tuple[float, float] = (5.0, 100.0)
    monocytes_per_ul: tuple[float, float] = (100.0, 1_500.0)
    granulocytes_per_ul: tuple[float, float] = (1_000.0, 8_000.0)
    beads_per_test: tuple[float, float] = (40_000.0, 60_000.0)


#: The envelope of issue 12: what adaptive gates must handle.
ENVELOPE = Envelope()


class EnvelopeCase(NamedTuple):
    """One patient acquired on one instrument with one layout: the three tubes of a case.

    Unpacks as ``(patient, instrument, layout, beads_per_test, volume_ul)``.
    """

    patient: PatientSpec
    instrument: Instrument
    layout: Layout
    beads_per_test: float
    volume_ul: float

    def simulate(self, tube: str, *, events: int = 30_000, seed: int = 0) -> SimulatedTube:
        """Simulate one tube (``"nk"``, ``"cd4"``, ``"cd8"``, or a TBNK tube of a case drawn
        with six colours) of this case.

        Parameters
        ----------
        tube : str
        events : int
            Events acquired.
        seed : int
            Seed of the acquisition (the case itself is fixed).

        Returns
        -------
        SimulatedTube
            With ``truth["layout"]`` set.
        """
        return simulate_tube(self.patient, tube, events=events,
                             beads_per_test=self.beads_per_test, volume_ul=self.volume_ul,
                             instrument=self.instrument, layout=self.layout, seed=seed)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(10.0 ** rng.uniform(np.log10(low), np.log10(high)))


def _envelope_patient(rng: np.random.Generator, envelope: Envelope,
                      patient_id: str) -> PatientSpec:
    """A CLL patient with counts drawn across ``envelope``.

    The ALC is drawn first (log-uniform over its whole range); the T and NK counts are
    drawn again until they fit in it with the CLL cells between 0 and the most allowed.
    """
    alc = _log_uniform(rng, envelope.alc_per_ul)
    for _ in range(100_000):
        others = {name: _log_uniform(rng, getattr(envelope, name))
                  for name in ("cd4_per_ul", "cd8_per_ul", "nk_per_ul", "dn_t_per_ul")}
        b_cells = alc - sum(others.values())
        if 0.0 <= b_cells <= envelope.max_b_cell_fraction * alc:
            return PatientSpec(
                patient_id, b_cells_per_ul=b_cells, **others,
                monocytes_per_ul=_log_uniform(rng, envelope.monocytes_per_ul),
                granulocytes_per_ul=_log_uniform(rng, envelope.granulocytes_per_ul))
    raise ValueError(f"an ALC of {alc:.0f} cells/µL cannot hold the envelope's T and NK "
                     "counts: widen their ranges")


def _envelope_layout(rng: np.random.Generator, envelope: Envelope,
                     instrument: Instrument) -> Layout:
    """A layout drawn across ``envelope``; bead positions are set as the instrument shows
    them, so the amounts written into the layout are those positions less the gains."""
    seen = rng.uniform(*envelope.bead_log10, len(instrument.gain_offsets))
    bead_log10 = tuple(float(s - g) for s, g in zip(seen, instrument.gain_offsets, strict=True))
    if rng.uniform() < envelope.lymphocyte_like_beads:
        (t_fsc, _), (t_ssc, _) = NOMINAL_SCATTER["cd4_t"]
        bead_scatter = (float(t_fsc * rng.uniform(0.85, 1.15)),
                        float(t_ssc * rng.uniform(0.8, 1.25)))
    else:
        gain = 10.0 ** instrument.scatter_gain_offset
        bead_scatter = (_log_uniform(rng, envelope.bead_fsc_scatter) / gain,
                        _log_uniform(rng, envelope.bead_ssc_scatter) / gain)
    return Layout(
        bead_fluorescence_log10=bead_log10,  # type: ignore[arg-type]
        bead_scatter=bead_scatter,
        monocyte_ssc_ratio=float(rng.uniform(*envelope.monocyte_ssc_ratio)),
        b_cell_cd45_offset=float(rng.uniform(*envelope.b_cell_cd45_offset)),
        fluorescence_spread=float(rng.uniform(*envelope.spread)),
        scatter_spread=float(rng.uniform(*envelope.spread)),
    )


def envelope_case(seed: int, index: int = 0, *,
                  envelope: Envelope = ENVELOPE, colours: int = 3) -> EnvelopeCase:
    """One random case across the layout envelope: patient, instrument, layout, beads.

    Parameters
    ----------
    seed : int
        Seed of the series of cases.
    index : int
        Which case of the series: ``envelope_case(s, i)`` is the i-th of
        ``envelope_cases(n, seed=s)``, whatever ``n``.
    envelope : Envelope
        Bounds to draw within (:data:`ENVELOPE` by default).
    colours : {3, 6}
        Detectors the instrument and the beads are drawn for: the study's three, or the
        six of a TBNK cytometer (:data:`~.simulate.DETECTORS`; every one's gain, bead
        position and spill drawn across the envelope). A series of six-colour cases is
        not the three-colour series with more colours: the draws differ from the first.

    Returns
    -------
    EnvelopeCase
        Patient ``E<seed>-<index>``; instrument with gains, scatter gain and spillover
        drawn across the envelope; layout; beads per test; blood volume stained, µL,
        chosen by :func:`~.cohort.stained_volume_ul` as :func:`~.cohort.write_cohort` does.
    """
    rng = np.random.default_rng([seed, index])
    instrument = random_instrument(rng, name="FACSCanto II (envelope)",
                                   max_gain_offset=envelope.gain_offset,
                                   max_scatter_gain_offset=envelope.scatter_gain_offset,
                                   colours=colours)
    layout = _envelope_layout(rng, envelope, instrument)
    patient = _envelope_patient(rng, envelope, f"E{seed}-{index:04d}")
    beads_per_test = float(round(rng.uniform(*envelope.beads_per_test)))
    volume = stained_volume_ul(patient, beads_per_test)
    return EnvelopeCase(patient, instrument, layout, beads_per_test, volume)


def envelope_cases(n: int, seed: int = 0, *, envelope: Envelope = ENVELOPE,
                   colours: int = 3) -> Iterator[EnvelopeCase]:
    """``n`` random cases across the layout envelope (see :func:`envelope_case`).

    Parameters
    ----------
    n : int
        Number of cases.
    seed : int
        Seed of the series: the same seed gives the same cases.
    envelope : Envelope
        Bounds to draw within.
    colours : {3, 6}
        As for :func:`envelope_case`.

    Yields
    ------
    EnvelopeCase
    """
    for index in range(n):
        yield envelope_case(seed, index, envelope=envelope, colours=colours)


def write_envelope(out_dir: str | Path, n: int, *, seed: int = 0,
                   events: int = 30_000, panel: str = "study") -> Path:
    """Write ``n`` envelope cases (each with its panel's tubes), truth files and
    manifest.csv.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created).
    n : int
        Cases (patients); 3 tubes each.
    seed : int
        Seed of the series of cases (:func:`envelope_cases`) and of their acquisitions.
    events : int
        Events per tube.
    panel : str
        The tubes of each case (:func:`~.cohort.panel_tubes`): ``"study"`` (NK, CD4, CD8),
        ``"tbnk6"`` or ``"tbnk4"`` (cases drawn with six colours).

    Returns
    -------
    Path
        The manifest written. Each truth file holds the case's layout and
        ``envelope_case`` (seed and index, to draw the case again).
    """
    tubes = panel_tubes(panel)
    colours = 3 if panel == "study" else len(DETECTORS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    for index, case in enumerate(envelope_cases(n, seed, colours=colours)):
        for t_index, tube in enumerate(tubes):
            tube_seed = int(np.random.SeedSequence([seed, index, t_index]).generate_state(1)[0])
            sim = case.simulate(tube, events=events, seed=tube_seed)
            sim.truth["envelope_case"] = {"seed": int(seed), "index": index}
            rows.append(write_listed(sim, out))
    return write_manifest(out, rows)
