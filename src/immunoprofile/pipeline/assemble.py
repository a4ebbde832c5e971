"""Assembling a batch's results: counting the gated tubes (beads, volume, ALC from the
manifest), the four tables, run provenance, and writing them atomically into the output
folder. The batch (:mod:`.batch`) and the workflow's assembling step
(:func:`assemble_tube_results`) both end here."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..gating.panels import BEAD_GATE, PanelSet, default_panels
from ..gating.templates import template_checksums
from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..io.manifest import Manifest, TubeRequest, find_manifest, read_manifest
from ..io.output_files import gate_views_path, gates_xml_path, tube_result_key
from ..io.table import Table
from ..profile.tables import CountedTube, population_table, profile_table, sample_table
from .tube import GatedTube, TubeFailure, resolve_panels, resolve_templates
from .tube_result import load_tube_result

if TYPE_CHECKING:
    import pandas as pd

ERROR_COLUMNS = ["file", "error"]


def _frame_property(name: str) -> property:
    """A :class:`BatchResult` table as a pandas DataFrame, made on first use."""
    return property(lambda self: self._frame(name),
                    doc=f"``{name}`` as a pandas DataFrame (made on first use).")


class BatchResult:
    """The tables of one batch.

    Attributes
    ----------
    populations : pandas.DataFrame
        One row per sample × population (see ``populations.csv`` in the README).
    profiles : pandas.DataFrame
        One row per patient.
    errors : pandas.DataFrame
        ``file, error``: one row per file that could not be processed.
    samples : pandas.DataFrame
        One row per counted tube: events, beads, lymphocytes, QC flags.
    gates : pandas.DataFrame
        Adaptive gating: one row per placed gate of each tube (``gates.csv``; no rows with
        fixed gates).
    run : dict
        Provenance: versions, template checksums, manifest, parameters, timings.
    tables : dict of str to Table
        The same four tables as :class:`~immunoprofile.io.table.Table` (what
        :func:`write_results` writes; the DataFrames are made from them on first use).
    """

    NAMES = ("populations", "profiles", "samples", "errors")

    def __init__(self, populations: Table, profiles: Table, errors: Table, samples: Table,
                 run: dict | None = None, gates: Table | None = None,
                 gating_ml: dict[str, str] | None = None,
                 gate_views: dict[str, bytes] | None = None):
        self.tables = {"populations": populations, "profiles": profiles,
                       "samples": samples, "errors": errors}
        self.run = run if run is not None else {}
        #: Adaptive gating: ``gates.csv`` (one row per placed gate) and each tube's placed
        #: gates as Gating-ML 2.0, by sample id; empty with fixed gates.
        self.gate_table = gates
        self.gating_ml = gating_ml or {}
        #: Adaptive gating: each tube's gating-plot views (packed, see
        #: :mod:`immunoprofile.gating.gate_views`), by sample id.
        self.gate_views = gate_views or {}
        self._frames: dict[str, pd.DataFrame] = {}

    def _frame(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            table = self.gate_table if name == "gates" else self.tables[name]
            self._frames[name] = table.to_pandas() if table is not None else None
        return self._frames[name]

    populations = _frame_property("populations")
    profiles = _frame_property("profiles")
    samples = _frame_property("samples")
    errors = _frame_property("errors")
    gates = _frame_property("gates")

    @property
    def ok(self) -> bool:
        """True when every file was processed."""
        return len(self.tables["errors"]) == 0

    def __repr__(self) -> str:
        samples = self.run.get("samples", {})
        counted = samples.get("counted", len(self.tables["samples"]))
        listed = samples.get("listed", counted)
        failed = len(self.tables["errors"])
        files = ", ".join(str(f) for f in self.tables["errors"]["file"][:3])
        more = f" and {failed - 3} more" if failed > 3 else ""
        return (f"<BatchResult: {counted} of {listed} tubes counted, "
                f"{len(self.tables['profiles'])} patients, {failed} failed"
                f"{f' ({files}{more})' if failed else ''}>")


def count_tubes(gated: Sequence[GatedTube], base: Path
                ) -> tuple[list[CountedTube], list[TubeFailure]]:
    """Line gated tubes up for the tables; refuse tubes without beads."""
    counted, failures = [], []
    for g in gated:
        r = g.request
        tube = CountedTube(
            sample_id=r.sample_id, file=_short(str(r.path), base), patient_id=r.patient_id,
            tube=g.tube, gate_ids=g.gate_ids, parents=g.parents,
            gate_events=np.asarray(g.gate_events, dtype=np.int64).copy(), events=g.events,
            beads_per_test=r.beads_per_test, volume_ul=r.volume_ul, alc=r.alc,
            has_spillover=g.has_spillover, keywords=g.keywords,
            uncertain_gates=_uncertain_gates(g, r), panel=g.panel,
            wider_panel=g.wider_panel, unused_markers=g.unused_markers,
            shared_events=g.shared_events,
        )
        if not math.isnan(r.beads_per_test) and tube.events_in(tube.tube_panel.bead_gate) == 0:
            failures.append(TubeFailure(str(r.path), (
                f"{r.path.name}: no counting beads found (0 events in the "
                f"{tube.tube_panel.bead_gate} gate) — was the "
                "blood stained in a bead tube? For a tube without beads leave beads_per_test "
                "blank and give alc (dual-platform)")))
            continue
        counted.append(tube)
    return counted, failures


def _uncertain_gates(g: GatedTube, request: TubeRequest) -> tuple[str, ...]:
    """Gates to flag ``GATE_UNCERTAIN``. Finding no beads is expected of a tube stained
    without them; a bead gate placed uncertainly is flagged in any tube (every cell gate
    lies within ``NotBeads``)."""
    from ..gating.placement import NO_BEADS

    if not g.placements:
        return ()
    bead_gate = g.panel.bead_gate if g.panel is not None else BEAD_GATE
    return tuple(p["gate_id"] for p in g.placements
                 if p["status"] == "uncertain"
                 and not (p["gate_id"] == bead_gate and math.isnan(request.beads_per_test)
                          and p["reason"].startswith(NO_BEADS)))


def gate_table(gated: Sequence[GatedTube]) -> Table:
    """One row per adaptively placed gate of each tube (``gates.csv``).

    Columns: ``sample_id``, ``gate``, ``method`` (``valley``, ``cluster``, ``beads``,
    ``scale``, or ``seed`` for a gate kept where the template put it), ``status``
    (``placed``, ``fallback``, ``seed`` or ``uncertain``), ``confidence`` (0–1: a valley's
    depth relative to its peaks, the share of a cluster's density kept), ``position`` (the
    placed gate in words: channels and bounds in signal units and logicle units) and
    ``reason`` (why a placement is uncertain or fell back).
    """
    columns = ["sample_id", "gate", "method", "status", "confidence", "position", "reason"]
    rows: dict[str, list] = {c: [] for c in columns}
    for g in gated:
        for p in g.placements or ():
            rows["sample_id"].append(g.request.sample_id)
            rows["gate"].append(p["gate_id"])
            for c in ("method", "status", "confidence", "position", "reason"):
                rows[c].append(p[c])
    kinds = {c: "float" if c == "confidence" else "str" for c in columns}
    return Table(rows, kinds)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("immunoprofile", "flowkit", "flowio", "numpy", "pandas", "numba"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def assemble_batch(parsed: Manifest, gated: Sequence[GatedTube],
                   failures: Sequence[TubeFailure], *, template_arg: str | None = None,
                   engine: str = "compiled", started: datetime | None = None,
                   seconds_gating: float = float("nan"), gating: str = "fixed",
                   panels: PanelSet | None = None) -> BatchResult:
    """Count gated tubes and build the batch's tables (the second half of :func:`gate_batch`).

    The Snakemake workflow gates each tube in its own job (:func:`.tube.gate_tube_file`) and
    then calls this, so its tables are those of ``immunoprofile gate`` by construction.

    Parameters
    ----------
    parsed : Manifest
        The batch's manifest (its problems become error rows).
    gated : sequence of GatedTube
        Tubes gated successfully, in manifest order.
    failures : sequence of TubeFailure
        Tubes that failed to read or gate (manifest problems are added here).
    template_arg : str, optional
        Template folder used (None = shipped), for the provenance.
    engine : str
        Engine used, for the provenance.
    started : datetime, optional
        When the batch started (UTC).
    seconds_gating : float
        Wall time spent reading and gating, s.
    gating : {"adaptive", "fixed"}
        Gating mode used, for the provenance.
    panels : PanelSet, optional
        A lab's panels beside the shipped ones (their templates' checksums go into the
        provenance).

    Returns
    -------
    BatchResult
    """
    started = started or datetime.now(UTC)
    t_gate = time.perf_counter()
    manifest_path = parsed.path
    failures = [TubeFailure(f, e) for f, e in parsed.problems] + list(failures)
    # One patient, one tube of each kind: a second is refused rather than guessed between.
    seen: dict[tuple[str, str], str] = {}
    unique: list[GatedTube] = []
    for g in gated:
        key = (g.request.patient_id, g.tube)
        if key in seen:
            failures.append(TubeFailure(str(g.request.path), (
                f"{g.request.path.name}: patient {key[0]} already has a {key[1]} tube "
                f"({seen[key]}) — one tube of each kind per patient")))
            continue
        seen[key] = g.request.path.name
        unique.append(g)
    counted, bead_failures = count_tubes(unique, manifest_path.parent.resolve())
    failures += bead_failures
    populations = population_table(counted)
    samples = sample_table(counted)
    known = dict(panels if panels is not None else default_panels())
    known.update({t.tube: t.tube_panel for t in counted})  # results read back carry theirs
    named: dict[str, set[str]] = {}  # the tubes the manifest names, failed ones included
    for request in parsed.requests:
        if request.tube:
            named.setdefault(request.patient_id, set()).add(request.tube)
    profiles = profile_table(populations, samples, parsed.patients, panels=known,
                             named_tubes=named)
    t_count = time.perf_counter()

    base = manifest_path.parent.resolve()
    errors = Table(dict(zip(ERROR_COLUMNS, ([_short(f.file, base) for f in failures],
                                            [f.error for f in failures]), strict=True)),
                   dict.fromkeys(ERROR_COLUMNS, "str"))
    total = len(parsed.requests)
    run = {
        "immunoprofile_run": 1,
        "started_utc": started.isoformat(timespec="seconds"),
        "versions": _versions(),
        "engine": engine,
        "gating": gating,
        "templates": {"directory": template_arg or "shipped",
                      "absolute_directory": absolute_path(template_arg) if template_arg
                      else "shipped",
                      "sha256": template_checksums(template_arg, panels)},
        # A lab's panels (--panels): their folders, so that `report` reads them too.
        **({"panels": _panel_folders(panels)} if panels is not None else {}),
        # Every panel as it was read, its QC limits included: the report quotes the limits
        # the flags were raised on, even when a panel file changed or went since.
        "panel_set": [panel.to_dict() for panel in known.values()],
        # The path as given, and resolved now: `report` finds the inputs from any folder.
        "manifest": {"path": str(manifest_path), "absolute_path": absolute_path(manifest_path),
                     "sha256": parsed.sha256,
                     "rows": len(parsed.requests) + len(parsed.problems)},
        "parameters": {},
        "samples": {"listed": total, "counted": len(counted), "failed": len(failures),
                    "resumed": sum(g.resumed for g in gated)},
        "simulated_inputs": sorted(g.request.sample_id for g in gated if g.simulated),
        "timings_s": {"read_and_gate": round(seconds_gating, 3),
                      "count_and_tables": round(t_count - t_gate, 3),
                      "gating_per_tube": {g.request.sample_id: round(g.seconds, 4)
                                          for g in gated}},
    }
    adaptive = [g for g in unique if g.placements is not None]
    return BatchResult(populations=populations, profiles=profiles, errors=errors,
                       samples=samples, run=run,
                       gates=gate_table(adaptive),
                       gating_ml={g.request.sample_id: g.gating_ml for g in adaptive
                                  if g.gating_ml},
                       gate_views={g.request.sample_id: g.views for g in adaptive
                                   if g.views is not None})


def _panel_folders(panels: PanelSet) -> list[dict]:
    """The folders of a run's own panel files, with their tubes (for run.json)."""
    folders: dict[str, list[str]] = {}
    for panel in panels.values():
        if panel.folder is not None:
            folders.setdefault(panel.folder, []).append(panel.tube)
    return [{"absolute_directory": f, "tubes": t} for f, t in folders.items()]


def absolute_path(path: str | Path) -> str:
    """``path`` resolved against the current folder (for run.json)."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return str(Path(path).absolute())


def _short(file: str, base: Path) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(base).as_posix()
    except (ValueError, OSError):
        return file


def write_results(result: BatchResult, out_dir: str | Path) -> dict[str, Path]:
    """Write a batch's tables, each atomically (temporary file, then rename).

    Parameters
    ----------
    result : BatchResult
    out_dir : str or Path
        Created if absent.

    Returns
    -------
    dict
        ``{table name: path written}``: ``populations.csv``, ``profiles.csv``,
        ``samples.csv``, ``errors.csv``, ``gates.csv`` (no rows with fixed gates),
        ``run.json`` and, with adaptive gating, every tube's placed gates in
        ``gates/<sample_id>.xml`` and what its gating plots show in
        ``gates/<sample_id>.views.npz`` (the report draws from them).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    written = {}
    for name in BatchResult.NAMES:
        path = out / f"{name}.csv"
        atomic_write_text(path, result.tables[name].to_csv())
        written[name] = path
    if result.gate_table is not None:
        written["gates"] = out / "gates.csv"
        atomic_write_text(written["gates"], result.gate_table.to_csv())
    for sample_id, text in result.gating_ml.items():
        path = gates_xml_path(out, sample_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    for sample_id in result.gating_ml:
        path = gate_views_path(out, sample_id)
        views = result.gate_views.get(sample_id)
        if views is not None:
            atomic_write_bytes(path, views)
        else:  # a result of an earlier version, without views: an older file would lie
            path.unlink(missing_ok=True)
    result.run.setdefault("timings_s", {})["write"] = round(time.perf_counter() - t0, 3)
    run_path = out / "run.json"
    atomic_write_text(run_path, json.dumps(result.run, indent=1, default=str) + "\n")
    written["run"] = run_path
    return written


def assemble_tube_results(samples_dir: str | Path, results_dir: str | Path,
                          manifest: str | Path | None = None, *,
                          templates: str | Path | None = None,
                          engine: str = "compiled", gating: str = "adaptive",
                          panels: str | Path | Sequence[str | Path] | None = None
                          ) -> BatchResult:
    """Build the batch tables from per-tube result files (``{tube_result_key}.npz``).

    A listed tube without a result file becomes an error row ("not gated"), so a batch
    whose gating job was lost still reports every tube.

    Parameters
    ----------
    samples_dir : str or Path
        Folder of FCS files.
    results_dir : str or Path
        Folder of ``.npz`` files from :func:`save_tube_result`, named by
        :func:`tube_result_key` of the sample id.
    manifest, templates, engine, gating, panels
        As for :func:`gate_batch`.
    """
    t0 = time.perf_counter()
    panel_set = resolve_panels(panels)
    parsed = read_manifest(find_manifest(samples_dir, manifest), samples_dir,
                           tuple(panel_set or default_panels()))
    gated: list[GatedTube] = []
    failures: list[TubeFailure] = []
    for request in parsed.requests:
        path = Path(results_dir) / f"{tube_result_key(request.sample_id)}.npz"
        if not path.exists():
            failures.append(TubeFailure(str(request.path),
                                        f"{request.path.name}: not gated (no result file)"))
            continue
        result = load_tube_result(path, request)
        (gated if isinstance(result, GatedTube) else failures).append(result)
    result = assemble_batch(parsed, gated, failures,
                            template_arg=resolve_templates(templates, gating),
                            engine=engine, seconds_gating=time.perf_counter() - t0,
                            gating=gating, panels=panel_set)
    result.run["parameters"] = {"samples_dir": str(samples_dir),
                                "samples_dir_absolute": absolute_path(samples_dir),
                                "jobs": "one per tube",
                                "results_dir": str(results_dir)}
    return result
