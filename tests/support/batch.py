"""Helpers that write simulated tubes and manifests for batch tests."""

from __future__ import annotations

from pathlib import Path

from immunoprofile.datasets.cohort import stained_volume_ul
from immunoprofile.datasets.simulate import Instrument, PatientSpec, simulate_tube
from immunoprofile.datasets.tube_files import write_tube

MANIFEST_HEADER = "file,patient_id,tube,beads_per_test,volume_ul,alc"


def write_patient(folder: Path, patient: PatientSpec, *, events: int = 20_000,
                  instrument: Instrument | None = None, seed: int = 0,
                  tubes=("nk", "cd4", "cd8"), beads_per_test: float = 50_000.0,
                  volume_ul: float | None = None, per_tube: dict | None = None) -> list[str]:
    """Write a patient's tubes; return their manifest rows.

    ``per_tube`` maps a tube to keyword overrides for :func:`simulate_tube` (e.g. another
    PatientSpec to make tubes disagree).
    """
    volume = volume_ul if volume_ul is not None else stained_volume_ul(patient, beads_per_test)
    rows = []
    for i, tube in enumerate(tubes):
        options = {"events": events, "beads_per_test": beads_per_test, "volume_ul": volume,
                   "instrument": instrument, "seed": seed + i}
        spec = patient
        if per_tube and tube in per_tube:
            overrides = dict(per_tube[tube])
            spec = overrides.pop("patient", patient)
            options.update(overrides)
        sim = simulate_tube(spec, tube, **options)
        name = f"{patient.patient_id}_{tube}.fcs"
        write_tube(sim, folder / name)
        rows.append(f"{name},{patient.patient_id},{tube},{beads_per_test:g},{volume:g},"
                    f"{patient.alc:.6g}")
    return rows


def write_manifest(folder: Path, rows: list[str]) -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join([MANIFEST_HEADER, *rows]) + "\n")
    return path
