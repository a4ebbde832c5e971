"""The batch pipeline: manifest → read → gate (compiled engine or FlowKit) → count → tables.

:func:`gate_batch` is what ``immunoprofile gate`` runs; :func:`gate_sample` does one file.
A tube that fails — unreadable, wrong panel, missing channel, no beads — becomes one row
of the errors table with a one-line reason; every other tube is still counted.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GatingError, ManifestError
from ..gating.panels import default_panels
from ..gating.templates import (
    check_templates,
    template_checksums,
)
from ..io.manifest import TubeRequest, find_manifest, read_manifest
from ..profile.tables import population_table
from .assemble import BatchResult, absolute_path, assemble_batch, count_tubes
from .resume import ResumeCache, gate_resumable
from .tube import (
    GatedTube,
    TubeFailure,
    check_engine,
    gate_request,
    resolve_panels,
    resolve_templates,
)

if TYPE_CHECKING:
    import pandas as pd


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
    panels: str | Path | Sequence[str | Path] | None = None,
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
    panels : str, Path or sequence of them, optional
        Folders of a lab's own panel files (``--panels``, format in ``gating/README.md``),
        beside the shipped panels; the manifest's ``tube`` column may name their tubes.

    Returns
    -------
    BatchResult

    Raises
    ------
    ManifestError
        No manifest, or one that is not a manifest (missing or unknown columns).
    PanelError
        A panel file is not valid, or two define the same tube.
    TemplateError
        A template is missing, cannot be parsed, lacks a gate its panel's counts need or
        gates on a channel no file is fitted to (checked before any tube is gated).
    ValueError
        ``jobs`` < 1, an unknown engine or gating mode.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    check_engine(engine, gating)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    samples_dir = Path(samples_dir)
    manifest_path = find_manifest(samples_dir, manifest)
    panel_set = resolve_panels(panels)
    parsed = read_manifest(manifest_path, samples_dir, tuple(panel_set or default_panels()))
    template_arg = resolve_templates(templates, gating)
    # a missing or unreadable template fails here, once
    checksums = template_checksums(template_arg, panel_set)
    check_templates(template_arg, panels=panel_set)  # and one that lost a gate, before any

    failures: list[TubeFailure] = []
    gated: list[GatedTube] = []
    requests = parsed.requests
    resume = None if resume_dir is None else \
        ResumeCache(Path(resume_dir), checksums, engine, keep_keywords, gating, panel_set)

    def gate_one(request: TubeRequest) -> GatedTube | TubeFailure:
        return gate_resumable(resume, request, template_arg, engine, keep_keywords, gating,
                              panel_set)
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
    elif engine == "compiled" and gating == "fixed":
        # The compiled kernel releases the GIL and events are memory-mapped: threads share
        # the compiled plans and start instantly, where processes would each re-import.
        # (Adaptive placement is mostly small numpy steps that hold the GIL: processes.)
        # Warning filters are process-wide: set once here, not in each thread.
        with warnings.catch_warnings(), \
                ThreadPoolExecutor(max_workers=min(jobs, total)) as pool:
            warnings.filterwarnings("ignore", module="flowio")
            warnings.filterwarnings("ignore", module="flowkit")
            for result in pool.map(gate_one,
                                   requests):
                collect(result)
    else:
        args = (template_arg, engine, keep_keywords, gating, panel_set)

        def stopped(request: TubeRequest, exc: BaseException) -> TubeFailure:
            return TubeFailure(str(request.path), (
                f"{request.path.name}: the worker process gating it stopped "
                f"({type(exc).__name__}) — out of memory? Retry with fewer --jobs"))

        results: list = [None] * total  # collected in manifest order, as the others
        unfinished = []
        with ProcessPoolExecutor(max_workers=min(jobs, total)) as pool:
            futures = [pool.submit(gate_resumable, resume, r, *args) for r in requests]
            for k, (request, future) in enumerate(zip(requests, futures, strict=True)):
                try:
                    results[k] = future.result()
                except BrokenProcessPool:  # a worker died: which tube killed it is unknown
                    unfinished.append(k)
                    continue
                except Exception as exc:
                    results[k] = stopped(request, exc)
                if not unfinished:
                    collect(results[k])
        # The tubes a dead worker took down with the pool, each again in a process of its
        # own: only a tube that kills its own worker (out of memory, say) fails. One at a
        # time (progress waits for them): a pool again could lose them all again.
        for k in unfinished:
            with ProcessPoolExecutor(max_workers=1) as alone:
                try:
                    results[k] = alone.submit(gate_resumable, resume, requests[k],
                                              *args).result()
                except Exception as exc:
                    results[k] = TubeFailure(str(requests[k].path), (
                        f"{requests[k].path.name}: the process gating it stopped, with no "
                        f"other tube beside it ({type(exc).__name__}) — out of memory, or "
                        "killed?"))
        if unfinished:
            for result in results[unfinished[0]:]:
                collect(result)
    result = assemble_batch(parsed, gated, failures, template_arg=template_arg, engine=engine,
                            started=started, seconds_gating=time.perf_counter() - t0,
                            gating=gating, panels=panel_set)
    result.run["parameters"] = {"samples_dir": str(samples_dir),
                                "samples_dir_absolute": absolute_path(samples_dir), "jobs": jobs}
    return result


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
    panels: str | Path | Sequence[str | Path] | None = None,
) -> pd.DataFrame:
    """Gate and count one FCS tube, for use in a notebook.

    Parameters
    ----------
    path : str or Path
        The FCS file.
    patient_id : str, optional
        Defaults to the file name without extension.
    tube : str, optional
        ``nk``, ``cd4``, ``cd8`` or a tube of ``panels``; detected from the markers when
        omitted.
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
    panels : str, Path or sequence of them, optional
        Folders of a lab's panel files (see :func:`gate_batch`).

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
    check_engine(engine, gating)
    if beads_per_test is None and alc is None:  # what the manifest refuses, refused here
        raise ManifestError(f"{path.name}: neither beads_per_test nor alc is given — one is "
                            "needed for an absolute count")
    gated = gate_request(request, resolve_templates(templates, gating), engine, gating=gating,
                         panels=resolve_panels(panels))
    counted, failures = count_tubes([gated], path.resolve().parent)
    if failures:
        raise GatingError(failures[0].error)
    return population_table(counted).to_pandas()


