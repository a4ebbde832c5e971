"""The batch pipeline: manifest → read → gate (compiled engine or FlowKit) → count → tables.

:func:`gate_batch` is what ``immunoprofile gate`` runs; :func:`gate_sample` does one file.
A tube that fails — unreadable, wrong panel, missing channel, no beads — becomes one row
of the errors table with a one-line reason; every other tube is still counted.
"""

from __future__ import annotations

import json
import math
import platform
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..counting import count_gate_events
from ..errors import GatingError, ImmunoprofileError, ManifestError, first_line
from ..gating.adaptive_gating import GATING_MODES
from ..gating.compiled_gating import count_tube_compiled
from ..gating.flowkit_gating import MAX_GATES, gate_tube
from ..gating.panels import detect_panel
from ..gating.templates import (
    adaptive_template_dir,
    check_template,
    check_templates,
    template_checksums,
    uses_adaptation,
)
from ..io.atomic import atomic_write_text
from ..io.fcs import read_tube
from ..io.manifest import Manifest, TubeRequest, find_manifest, read_manifest
from ..io.table import Table
from ..profile.tables import BEAD_GATE, CountedTube, population_table, profile_table, sample_table

if TYPE_CHECKING:
    import pandas as pd

ERROR_COLUMNS = ["file", "error"]
#: Gating engines: the compiled Numba engine (default) and FlowKit, the reference.
ENGINES = ("compiled", "flowkit")


@dataclass
class GatedTube:
    """What gating one tube returns (picklable, so worker processes can send it back).

    ``gate_events`` holds the events in each of ``gate_ids`` (parent-ANDed): the compiled
    engine's kernel counts them as it gates; FlowKit's memberships are counted by the
    counting kernel (:func:`immunoprofile.counting.count_gate_events`).
    """

    request: TubeRequest
    tube: str
    gate_ids: list[str]
    parents: list[str | None]
    gate_events: np.ndarray
    events: int
    has_spillover: bool
    simulated: bool
    seconds: float
    keywords: dict | None = None
    resumed: bool = False
    #: Adaptive gating: where each gate was placed (dicts, see ``gates.csv``) and the placed
    #: gates as Gating-ML 2.0; None for fixed gates.
    placements: list[dict] | None = None
    gating_ml: str | None = None


@dataclass
class TubeFailure:
    """A tube that could not be processed, with the reason a user reads."""

    file: str
    error: str


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
                 gating_ml: dict[str, str] | None = None):
        self.tables = {"populations": populations, "profiles": profiles,
                       "samples": samples, "errors": errors}
        self.run = run if run is not None else {}
        #: Adaptive gating: ``gates.csv`` (one row per placed gate) and each tube's placed
        #: gates as Gating-ML 2.0, by sample id; empty with fixed gates.
        self.gate_table = gates
        self.gating_ml = gating_ml or {}
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


def _check_engine(engine: str, gating: str = "fixed") -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if gating not in GATING_MODES:
        raise ValueError(f"unknown gating {gating!r}; use one of {', '.join(GATING_MODES)}")


def resolve_templates(templates: str | Path | None, gating: str) -> str | None:
    """The template folder a batch gates with: the user's, else the shipped adaptive
    templates (``gating/adaptive/``) for adaptive gating, else the shipped fixed ones (None)."""
    if templates is not None:
        return str(templates)
    return str(adaptive_template_dir()) if gating == "adaptive" else None


def _gate_one(request: TubeRequest, templates: str | None, engine: str,
              keep_keywords: bool = False, gating: str = "fixed") -> GatedTube:
    start = time.perf_counter()
    tube = read_tube(request.path)
    panel = detect_panel(tube.markers, expected=request.tube, source=request.path.name)
    check_template(panel.tube, templates)  # checked once per template: cached
    placements = gating_ml = None
    if gating == "adaptive" and uses_adaptation(panel.tube, templates):
        from ..gating.adaptive_gating import gate_tube_adaptive

        adaptive = gate_tube_adaptive(tube, panel, templates, engine=engine)
        gate_ids, parents, gate_events = adaptive.gate_ids, adaptive.parents, \
            adaptive.gate_events
        placements = [asdict(p) for p in adaptive.placements]
        gating_ml = adaptive.gating_ml
    elif engine == "flowkit":
        memberships = gate_tube(tube, panel, templates)
        gate_ids, parents = memberships.gate_ids, memberships.parents
        gate_events = count_gate_events([memberships.bitmask], MAX_GATES)[0, :len(gate_ids)]
    else:
        gate_ids, parents, gate_events = count_tube_compiled(tube, panel, templates)
    simulated = str(tube.metadata.get("immunoprofile_simulated", "")).upper() == "TRUE"
    return GatedTube(request=request, tube=panel.tube, gate_ids=gate_ids, parents=parents,
                     gate_events=np.asarray(gate_events, dtype=np.int64),
                     events=tube.event_count, has_spillover=tube.has_spillover,
                     simulated=simulated, seconds=time.perf_counter() - start,
                     keywords=dict(tube.metadata) if keep_keywords else None,
                     placements=placements, gating_ml=gating_ml)


def _gate_or_fail(request: TubeRequest, templates: str | None,
                  engine: str = "compiled",
                  keep_keywords: bool = False,
                  gating: str = "fixed") -> GatedTube | TubeFailure:
    """Gate one tube; any failure becomes a :class:`TubeFailure` with a one-line reason."""
    try:
        return _gate_one(request, templates, engine, keep_keywords, gating)
    except ImmunoprofileError as exc:
        return TubeFailure(str(request.path), str(exc))
    except MemoryError:
        return TubeFailure(str(request.path), f"{request.path.name}: out of memory")
    except Exception as exc:  # a bug, not the user's fault: still one line, never a crash
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return TubeFailure(
            str(request.path),
            f"{request.path.name}: internal error — please report: {type(exc).__name__}: "
            f"{first_line(exc)} (at {Path(where.filename).name}:{where.lineno})",
        )


def _count(gated: Sequence[GatedTube], base: Path) -> tuple[list[CountedTube], list[TubeFailure]]:
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
            uncertain_gates=_uncertain_gates(g, r),
        )
        if not math.isnan(r.beads_per_test) and tube.events_in(BEAD_GATE) == 0:
            failures.append(TubeFailure(str(r.path), (
                f"{r.path.name}: no counting beads found (0 events in the Beads gate) — was the "
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
    return tuple(p["gate_id"] for p in g.placements
                 if p["status"] == "uncertain"
                 and not (p["gate_id"] == BEAD_GATE and math.isnan(request.beads_per_test)
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


def gate_batch(
    samples_dir: str | Path,
    manifest: str | Path | None = None,
    *,
    jobs: int = 1,
    templates: str | Path | None = None,
    engine: str = "compiled",
    progress: Callable[[int, int], None] | None = None,
    keep_keywords: bool = False,
    resume_dir: str | Path | None = None,
    gating: str = "adaptive",
) -> BatchResult:
    """Gate and count every tube of a samples folder.

    Parameters
    ----------
    samples_dir : str or Path
        Folder of FCS files.
    manifest : str or Path, optional
        Manifest CSV; ``samples_dir/manifest.csv`` by default.
    jobs : int
        Tubes gated side by side (1 = one after another): threads for the compiled engine,
        worker processes for FlowKit.
    templates : str or Path, optional
        Folder of Gating-ML templates to use instead of the shipped ones.
    engine : {"compiled", "flowkit"}
        Gating engine: the compiled Numba engine, or FlowKit itself (the reference; both
        give the same event membership).
    progress : callable, optional
        Called as ``progress(done, total)`` after each tube.
    keep_keywords : bool
        Copy each file's FCS TEXT keywords into ``samples.csv`` (column ``fcs_keywords``,
        JSON). Off by default: keywords such as ``$SRC``, ``$SMNO`` or ``PATIENT ID`` often
        identify patients, and outputs otherwise carry only the manifest's ``patient_id``
        and the file name.
    resume_dir : str or Path, optional
        Folder where each gated tube is kept as it finishes (``.npz``, keyed by the
        sample id). A tube already there, made from the same file (size, modification
        time and a SHA-256 of its first 64 KiB), templates, engine and immunoprofile
        version, is not gated again: a batch stopped part-way (Ctrl-C, SIGKILL) and
        started again resumes. ``immunoprofile gate`` uses
        ``OUT/.work/resume`` and removes it when the run completes.
    gating : {"adaptive", "fixed"}
        ``adaptive`` (default): each gate that declares it is placed from the tube's own
        events (the shipped adaptive templates, ``gating/adaptive/``, unless ``templates``
        is given); ``fixed``: every gate where its template puts it (the shipped fixed
        templates, ``gating/``).

    Returns
    -------
    BatchResult

    Raises
    ------
    ManifestError
        No manifest, or one that is not a manifest (missing or unknown columns).
    TemplateError
        A template is missing, cannot be parsed, lacks a gate its panel's counts need or
        gates on a channel no file is fitted to (checked before any tube is gated).
    ValueError
        ``jobs`` < 1, an unknown engine or gating mode.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    _check_engine(engine, gating)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    samples_dir = Path(samples_dir)
    manifest_path = find_manifest(samples_dir, manifest)
    parsed = read_manifest(manifest_path, samples_dir)
    template_arg = resolve_templates(templates, gating)
    template_checksums(template_arg)  # a missing or unreadable template fails here, once
    check_templates(template_arg)  # and one that lost a gate, before any tube is gated

    failures: list[TubeFailure] = []
    gated: list[GatedTube] = []
    requests = parsed.requests
    resume = None if resume_dir is None else \
        _Resume(Path(resume_dir), template_checksums(template_arg), engine, keep_keywords,
                gating)

    def gate_one(request: TubeRequest) -> GatedTube | TubeFailure:
        return _gate_resumable(resume, request, template_arg, engine, keep_keywords, gating)
    total = len(requests)
    done = 0

    def collect(result: GatedTube | TubeFailure) -> None:
        nonlocal done
        (gated if isinstance(result, GatedTube) else failures).append(result)
        done += 1
        if progress is not None:
            progress(done, total)

    if jobs == 1 or total <= 1:
        for request in requests:
            collect(gate_one(request))
    elif engine == "compiled":
        # The compiled kernel releases the GIL and events are memory-mapped: threads share
        # the compiled plans and start instantly, where processes would each re-import.
        # Warning filters are process-wide: set once here, not in each thread.
        with warnings.catch_warnings(), \
                ThreadPoolExecutor(max_workers=min(jobs, total)) as pool:
            warnings.filterwarnings("ignore", module="flowio")
            warnings.filterwarnings("ignore", module="flowkit")
            for result in pool.map(gate_one,
                                   requests):
                collect(result)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, total)) as pool:
            futures = [pool.submit(_gate_resumable, resume, r, template_arg, engine,
                                   keep_keywords, gating) for r in requests]
            for request, future in zip(requests, futures, strict=True):
                try:
                    collect(future.result())
                except Exception as exc:  # the worker process died (killed, out of memory)
                    collect(TubeFailure(str(request.path), (
                        f"{request.path.name}: the worker process gating it stopped "
                        f"({type(exc).__name__}) — out of memory? Retry with fewer --jobs")))
    result = assemble_batch(parsed, gated, failures, template_arg=template_arg, engine=engine,
                            started=started, seconds_gating=time.perf_counter() - t0,
                            gating=gating)
    result.run["parameters"] = {"samples_dir": str(samples_dir),
                                "samples_dir_absolute": _absolute(samples_dir), "jobs": jobs}
    return result


def assemble_batch(parsed: Manifest, gated: Sequence[GatedTube],
                   failures: Sequence[TubeFailure], *, template_arg: str | None = None,
                   engine: str = "compiled", started: datetime | None = None,
                   seconds_gating: float = float("nan"), gating: str = "fixed") -> BatchResult:
    """Count gated tubes and build the batch's tables (the second half of :func:`gate_batch`).

    The Snakemake workflow gates each tube in its own job (:func:`gate_listed_tube`) and
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
    counted, bead_failures = _count(unique, manifest_path.parent.resolve())
    failures += bead_failures
    populations = population_table(counted)
    samples = sample_table(counted)
    profiles = profile_table(populations, samples, parsed.patients)
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
                      "absolute_directory": _absolute(template_arg) if template_arg
                      else "shipped",
                      "sha256": template_checksums(template_arg)},
        # The path as given, and resolved now: `report` finds the inputs from any folder.
        "manifest": {"path": str(manifest_path), "absolute_path": _absolute(manifest_path),
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
                                  if g.gating_ml})


class _Resume:
    """Per-tube results kept as they finish, reused when nothing they depend on changed."""

    def __init__(self, folder: Path, checksums: dict, engine: str, keep_keywords: bool,
                 gating: str = "fixed"):
        from .._version import __version__

        self.folder = folder
        self.common = {"templates": checksums, "engine": engine, "gating": gating,
                       "immunoprofile": __version__, "keep_keywords": keep_keywords}
        self.engine, self.keep_keywords, self.gating = engine, keep_keywords, gating

    #: Bytes at the start of a file whose checksum identifies it with its size and
    #: modification time: its HEADER and TEXT (acquisition date and times, $TOT, the
    #: spillover) and the first events.
    HEAD_BYTES = 1 << 16

    def provenance(self, request: TubeRequest) -> dict:
        """What a kept tube must match: the file (size, modification time and a SHA-256 of
        its first 64 KiB), the templates, engine, version, options and the manifest's tube.

        Not the whole file's checksum: hashing every byte of every tube took longer than
        gating them. A file rewritten in any way gets a new modification time.
        """
        import hashlib

        stat = request.path.stat()
        with open(request.path, "rb") as handle:
            head = hashlib.sha256(handle.read(self.HEAD_BYTES)).hexdigest()
        return {**self.common, "file": [stat.st_size, stat.st_mtime_ns, head],
                "tube": request.tube}

    def gate(self, request: TubeRequest, template_arg: str | None) -> GatedTube | TubeFailure:
        try:
            provenance = self.provenance(request)
        except OSError:  # unreadable: the reader reports why
            return _gate_or_fail(request, template_arg, self.engine, self.keep_keywords,
                                 self.gating)
        path = self.folder / f"{tube_result_key(request.sample_id)}.npz"
        if path.exists():
            kept = load_tube_result(path, request, provenance)
            if isinstance(kept, GatedTube):
                kept.resumed = True
                return kept
        result = _gate_or_fail(request, template_arg, self.engine, self.keep_keywords,
                               self.gating)
        if isinstance(result, GatedTube):
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                save_tube_result(result, path, provenance, durable=False)
            except OSError:
                pass  # keeping it only saves time on a rerun
        return result


def _gate_resumable(resume: _Resume | None, request: TubeRequest, template_arg: str | None,
                    engine: str, keep_keywords: bool,
                    gating: str = "fixed") -> GatedTube | TubeFailure:
    """Gate one tube, reusing a kept result when there is one (module level, so worker
    processes can take it)."""
    if resume is None:
        return _gate_or_fail(request, template_arg, engine, keep_keywords, gating)
    return resume.gate(request, template_arg)


def _absolute(path: str | Path) -> str:
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


def gates_xml_path(out_dir: str | Path, sample_id: str) -> Path:
    """``OUT/gates/<sample_id>.xml``: a tube's placed gates (a sample id that would leave
    the folder, with ``..`` or an absolute path, is written under its safe key)."""
    parts = Path(sample_id).parts
    if not parts or Path(sample_id).is_absolute() or ".." in parts:
        return Path(out_dir) / "gates" / f"{tube_result_key(sample_id)}.xml"
    return Path(out_dir) / "gates" / f"{sample_id}.xml"


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
        ``gates/<sample_id>.xml``.
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
    result.run.setdefault("timings_s", {})["write"] = round(time.perf_counter() - t0, 3)
    run_path = out / "run.json"
    atomic_write_text(run_path, json.dumps(result.run, indent=1, default=str) + "\n")
    written["run"] = run_path
    return written


def gate_sample(
    path: str | Path,
    *,
    patient_id: str | None = None,
    tube: str | None = None,
    beads_per_test: float | None = 50_000.0,
    volume_ul: float = 50.0,
    alc: float | None = None,
    templates: str | Path | None = None,
    engine: str = "compiled",
    gating: str = "adaptive",
) -> pd.DataFrame:
    """Gate and count one FCS tube, for use in a notebook.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    patient_id : str, optional
        Defaults to the file name without extension.
    tube : {"nk", "cd4", "cd8"}, optional
        Detected from the markers when omitted.
    beads_per_test : float or None
        Beads in the tube; None for a tube without beads (then give ``alc``).
    volume_ul : float
        Blood stained, µL.
    alc : float, optional
        Absolute lymphocyte count, ×10⁹/L, for dual-platform counts.
    templates : str or Path, optional
        Folder of Gating-ML templates to use instead of the shipped ones.
    engine : {"compiled", "flowkit"}
        Gating engine (see :func:`gate_batch`).
    gating : {"adaptive", "fixed"}
        Gating mode (see :func:`gate_batch`).

    Returns
    -------
    pandas.DataFrame
        The tube's rows of ``populations.csv``.

    Raises
    ------
    ManifestError
        Neither ``beads_per_test`` nor ``alc``: no absolute count could be made (as a
        manifest row without both is refused).
    ImmunoprofileError
        The file cannot be read, gated or counted; the message says why.
    """
    path = Path(path)
    request = TubeRequest(
        path=path.resolve(), sample_id=path.stem, patient_id=patient_id or path.stem,
        tube=tube, beads_per_test=math.nan if beads_per_test is None else float(beads_per_test),
        volume_ul=float(volume_ul), alc=math.nan if alc is None else float(alc))
    _check_engine(engine, gating)
    if beads_per_test is None and alc is None:  # what the manifest refuses, refused here
        raise ManifestError(f"{path.name}: neither beads_per_test nor alc is given — one is "
                            "needed for an absolute count")
    gated = _gate_one(request, resolve_templates(templates, gating), engine, gating=gating)
    counted, failures = _count([gated], path.resolve().parent)
    if failures:
        raise GatingError(failures[0].error)
    return population_table(counted).to_pandas()


# --- one job per tube (the Snakemake workflow) ------------------------------------------------
#: Format tag of a tube result file (``.npz``) written by :func:`save_tube_result`: events
#: per gate. The first format held per-event membership bitmasks; it is still read.
TUBE_RESULT_FORMAT = "immunoprofile-tube-result/2"
_TUBE_RESULT_FORMATS = (TUBE_RESULT_FORMAT, "immunoprofile-tube-result/1")


def tube_result_key(sample_id: str) -> str:
    """File-name-safe key of a tube's result file: the sample id's letters, digits, ``-``
    and ``_`` (others become ``_``), then 10 hex digits of its SHA-1, so ids that clean up
    alike (``a b`` and ``a_b``) stay apart and ``../`` cannot leave the folder."""
    import hashlib
    import re

    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", sample_id).strip("_")[:60] or "tube"
    return f"{stem}-{hashlib.sha1(sample_id.encode('utf-8')).hexdigest()[:10]}"


def gate_tube_file(path: str | Path, sample_id: str, *, tube: str | None = None,
                   templates: str | Path | None = None, engine: str = "compiled",
                   gating: str = "adaptive") -> GatedTube | TubeFailure:
    """Gate one FCS file for the workflow; a failure is returned, not raised.

    Only gating happens here (which events fall in which gate); the counting inputs of the
    manifest row (beads, volume, ALC) are applied later by :func:`assemble_tube_results`,
    so changing them does not re-gate the tube.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    sample_id : str
        The tube's sample id in the manifest (stored in the result, checked on reading).
    tube : {"nk", "cd4", "cd8"}, optional
        The manifest's ``tube``; detected from the markers when None.
    templates : str or Path, optional
        Folder of Gating-ML templates instead of the shipped ones.
    engine : {"compiled", "flowkit"}
    gating : {"adaptive", "fixed"}
    """
    _check_engine(engine, gating)
    path = Path(path)
    request = TubeRequest(path=path.resolve(), sample_id=sample_id, patient_id="",
                          tube=tube, beads_per_test=math.nan, volume_ul=math.nan,
                          alc=math.nan)
    return _gate_or_fail(request, resolve_templates(templates, gating), engine, gating=gating)


def save_tube_result(result: GatedTube | TubeFailure, path: str | Path,
                     provenance: dict | None = None, durable: bool = True) -> None:
    """Write one tube's gating result (events per gate, or the failure) atomically as .npz;
    ``provenance`` (what the result depends on) is stored with it. ``durable=False``
    skips flushing it to disk (a resume cache: a damaged entry is gated again)."""
    import io as _io

    from ..io.atomic import atomic_write_bytes

    if isinstance(result, TubeFailure):
        meta = {"format": TUBE_RESULT_FORMAT, "failure": result.error, "file": result.file}
    else:
        meta = {"format": TUBE_RESULT_FORMAT, "sample_id": result.request.sample_id,
                "tube": result.tube, "gate_ids": result.gate_ids, "parents": result.parents,
                "gate_events": [int(e) for e in result.gate_events],
                "events": result.events, "has_spillover": result.has_spillover,
                "simulated": result.simulated, "seconds": result.seconds,
                "keywords": result.keywords, "placements": result.placements,
                "gating_ml": result.gating_ml}
    meta["provenance"] = provenance
    buffer = _io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buffer.getvalue(), durable=durable)


def load_tube_result(path: str | Path, request: TubeRequest,
                     provenance: dict | None = None) -> GatedTube | TubeFailure | None:
    """Read a file written by :func:`save_tube_result` for the manifest row ``request``;
    an unreadable or mismatched file becomes that tube's failure. With ``provenance``,
    a result made from anything else (another file content, template, engine, version)
    gives None: it must be gated again. A result of the first format (per-event membership
    bitmasks) is counted here."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            bitmask = np.ascontiguousarray(data["bitmask"]) if "bitmask" in data else None
        if not isinstance(meta, dict) or meta.get("format") not in _TUBE_RESULT_FORMATS:
            raise ValueError("wrong format tag")
        if provenance is not None and meta.get("provenance") != provenance:
            return None
        if "failure" in meta:
            return TubeFailure(str(request.path), str(meta["failure"]))
        if meta["sample_id"] != request.sample_id:
            raise ValueError(f"it holds sample {meta['sample_id']}")
        n_gates = len(meta["gate_ids"])
        if meta["format"] == TUBE_RESULT_FORMAT:
            gate_events = np.array(meta["gate_events"], dtype=np.int64)
        else:
            if bitmask is None or bitmask.ndim != 1:
                raise ValueError("no membership bitmask")
            gate_events = count_gate_events([bitmask.astype(np.uint32)], MAX_GATES)[0]
        gate_events = gate_events[:n_gates]
        if gate_events.size != n_gates or np.any(gate_events < 0):
            raise ValueError("its gate counts do not match its gates")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        return TubeFailure(str(request.path), (
            f"{request.path.name}: its gating result {Path(path).name} is unreadable "
            f"({first_line(exc)}) — delete it and run the workflow again"))
    return GatedTube(request=request, tube=meta["tube"], gate_ids=meta["gate_ids"],
                     parents=meta["parents"], gate_events=gate_events,
                     events=int(meta["events"]), has_spillover=bool(meta["has_spillover"]),
                     simulated=bool(meta["simulated"]), seconds=float(meta["seconds"]),
                     keywords=meta.get("keywords"), placements=meta.get("placements"),
                     gating_ml=meta.get("gating_ml"))


def assemble_tube_results(samples_dir: str | Path, results_dir: str | Path,
                          manifest: str | Path | None = None, *,
                          templates: str | Path | None = None,
                          engine: str = "compiled", gating: str = "adaptive") -> BatchResult:
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
    manifest, templates, engine, gating
        As for :func:`gate_batch`.
    """
    t0 = time.perf_counter()
    parsed = read_manifest(find_manifest(samples_dir, manifest), samples_dir)
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
                            gating=gating)
    result.run["parameters"] = {"samples_dir": str(samples_dir),
                                "samples_dir_absolute": _absolute(samples_dir),
                                "jobs": "one per tube",
                                "results_dir": str(results_dir)}
    return result
