"""A SIMULATED cohort on disk: the six patients of ``sample_data/`` (:func:`cohort_specs`),
the blood volume a lab would stain for each (:func:`stained_volume_ul`), and their tubes
with truth files and ``manifest.csv`` (:func:`write_cohort`, ``immunoprofile simulate``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..io.atomic import atomic_write_text
from .simulate import (
    DETECTORS,
    SIMULATED_PANELS,
    Instrument,
    PatientSpec,
    SimulatedTube,
    random_instrument,
    simulate_tube,
    tube_detectors,
)
from .tube_files import write_tube


def cohort_specs() -> list[PatientSpec]:
    """The six patients of ``sample_data/``: CLL from mild to extreme lymphocytosis.

    Absolute lymphocyte counts 2.4 to about 300 ×10⁹/L, spanning the study's range
    (0.7–339 ×10⁹/L); NK, CD4 and CD8 counts within the study's published ranges.
    """
    return [
        PatientSpec("P01", b_cells_per_ul=800, cd4_per_ul=900, cd8_per_ul=450, nk_per_ul=250),
        PatientSpec("P02", b_cells_per_ul=9_000, cd4_per_ul=730, cd8_per_ul=575, nk_per_ul=264),
        PatientSpec("P03", b_cells_per_ul=42_000, cd4_per_ul=600, cd8_per_ul=870, nk_per_ul=580),
        PatientSpec("P04", b_cells_per_ul=85_000, cd4_per_ul=2_070, cd8_per_ul=1_400,
                    nk_per_ul=1_350),
        PatientSpec("P05", b_cells_per_ul=150_000, cd4_per_ul=180, cd8_per_ul=494,
                    nk_per_ul=160),
        PatientSpec("P06", b_cells_per_ul=296_000, cd4_per_ul=1_500, cd8_per_ul=4_000,
                    nk_per_ul=2_400),
    ]


#: Blood volumes (µL) a lab stains, from neat blood down to a 1:50 dilution.
_VOLUME_STEPS_UL = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0)


#: Smallest share of events that should be beads when choosing a dilution.
_MIN_BEAD_FRACTION = 0.05


def stained_volume_ul(patient: PatientSpec, beads_per_test: float = 50_000.0,
                      max_volume_ul: float = 50.0) -> float:
    """Blood volume to stain so that beads stay at least ~5 % of events, µL.

    Labs dilute lymphocytotic CLL blood before staining; the manifest's ``volume_ul`` then
    records the blood volume (not the diluted volume) in the tube. Returns the largest of
    50, 25, 10, 5, 2.5 and 1 µL (capped at ``max_volume_ul``) that keeps the expected bead
    fraction ≥ 5 %.
    """
    leucocytes = sum(patient.cells_per_ul().values())
    for volume in _VOLUME_STEPS_UL:
        if volume > max_volume_ul:
            continue
        if beads_per_test / (beads_per_test + leucocytes * volume) >= _MIN_BEAD_FRACTION:
            return volume
    return min(_VOLUME_STEPS_UL[-1], max_volume_ul)


def write_cohort(
    out_dir: str | Path,
    patients: Sequence[PatientSpec] | None = None,
    *,
    events: int = 25_000,
    beads_per_test: float = 50_000.0,
    volume_ul: float = 50.0,
    seed: int = 2026,
    other_cytometer: bool = False,
    dilute: bool = True,
    panel: str = "study",
) -> Path:
    """Write a simulated cohort: each patient's tubes, truth files and ``manifest.csv``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created).
    patients : sequence of PatientSpec, optional
        Defaults to :func:`cohort_specs`.
    events : int
        Events per tube.
    beads_per_test, volume_ul : float
        Beads per tube and blood volume stained, µL (the most; see ``dilute``).
    seed : int
        Base seed; every tube gets its own seed derived from it.
    other_cytometer : bool
        Acquire every patient on a randomly set-up instrument (gains ±0.15 decade,
        spillover across its realistic range) instead of the nominal one.
    dilute : bool
        Stain less blood for patients with lymphocytosis, as labs do (see
        :func:`stained_volume_ul`); otherwise every tube stains ``volume_ul``.
    panel : str
        The tubes of each patient (:data:`~.simulate.SIMULATED_PANELS`): ``"study"`` (NK,
        CD4, CD8), ``"tbnk6"`` (one six-colour TBNK tube) or ``"tbnk4"`` (the 4-colour
        pair).

    Returns
    -------
    Path
        The manifest written.
    """
    tubes = panel_tubes(panel)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patients = list(patients if patients is not None else cohort_specs())
    rows: list[str] = []
    for p_index, patient in enumerate(patients):
        instrument = (random_instrument(seed + 1000 * p_index, colours=_colours(tubes))
                      if other_cytometer else Instrument())
        volume = (stained_volume_ul(patient, beads_per_test, volume_ul) if dilute
                  else volume_ul)
        for t_index, tube in enumerate(tubes):
            sim = simulate_tube(patient, tube, events=events, beads_per_test=beads_per_test,
                                volume_ul=volume, instrument=instrument,
                                seed=seed + 1000 * p_index + t_index)
            rows.append(write_listed(sim, out))
    return write_manifest(out, rows)


def panel_tubes(panel: str) -> tuple[str, ...]:
    """The tubes a simulated patient of ``panel`` has.

    Raises
    ------
    ValueError
        Not a panel the simulator writes.
    """
    if panel not in SIMULATED_PANELS:
        raise ValueError(f"unknown panel {panel!r} to simulate; use one of "
                         f"{', '.join(SIMULATED_PANELS)}")
    return SIMULATED_PANELS[panel]


def _colours(tubes: Sequence[str]) -> int:
    """Detectors a random instrument must describe for these tubes: 3 or 6."""
    return 3 if all(set(tube_detectors(t)) <= set(DETECTORS[:3]) for t in tubes) \
        else len(DETECTORS)


def write_listed(sim: SimulatedTube, out: Path) -> str:
    """Write a tube as ``PATIENT_TUBE.fcs`` in ``out``; its manifest row."""
    truth = sim.truth
    name = f"{truth['patient_id']}_{truth['tube']}.fcs"
    write_tube(sim, out / name)
    return (f"{name},{truth['patient_id']},{truth['tube']},{truth['beads_per_test']:g},"
            f"{truth['volume_ul']:g},{truth['alc']:.4g}")


def write_manifest(out: Path, rows: Sequence[str]) -> Path:
    manifest = out / "manifest.csv"
    atomic_write_text(manifest, "\n".join(["file,patient_id,tube,beads_per_test,volume_ul,alc",
                                           *rows]) + "\n")
    return manifest
