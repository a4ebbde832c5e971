"""The batch report: one self-contained HTML file (images embedded, no network needed).

Built from what ``immunoprofile gate`` (or the workflow) wrote in an output folder:
``profiles.csv``, ``samples.csv``, ``errors.csv``, ``run.json``, and when present
``predictions.csv`` (TFR risk) and ``cohort_stats/`` (cohort figures). The gating plots are
drawn from the FCS files listed in the manifest recorded in ``run.json``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from ..counting.qc import FLAG_DESCRIPTIONS
from ..errors import ImmunoprofileError, first_line
from ..profile.columns import IMMUNE_PROFILE

#: Typical adult reference intervals, cells/µL (ratio unitless), used to mark values low or
#: high. Replace them with your laboratory's: ``write_report(..., reference_ranges=...)``.
REFERENCE_RANGES: dict[str, tuple[str, float, float, str]] = {
    c.name: (c.label, c.reference_low, c.reference_high, c.unit) for c in IMMUNE_PROFILE}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;font-size:.92em}th{background:#f4f4f4}
.banner{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;margin:1em 0}
.fail{background:#fdecea}.low{color:#0b5cad;font-weight:600}.high{color:#b3261e;font-weight:600}
.muted{color:#666;font-size:.9em}.plots{display:flex;flex-wrap:wrap;gap:.4em}
.plots img{width:320px;height:auto;border:1px solid #eee}details{margin:.4em 0}
summary{cursor:pointer;font-weight:600}.risk-high{color:#b3261e;font-weight:700}
.risk-low{color:#1b7a35;font-weight:700}
"""


def _missing(value) -> bool:
    """None, NaN or an empty string: a value the tables left empty."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _esc(value, missing: str = "—") -> str:
    """A value as HTML text; an empty value (None, NaN, "") as ``missing``, never "nan"."""
    return html.escape(missing if _missing(value) else str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _num(x, digits: int = 0) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(x):
        return "—"
    return f"{x:,.{digits}f}"


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        # Ids stay text ("001", "NA"); only empty cells are missing.
        return pd.read_csv(path, dtype={"patient_id": str, "sample_id": str, "file": str},
                           keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def _flags_in_words(flags: str) -> list[str]:
    """QC flags as sentences: ``FLAG``, ``tube:FLAG`` and ``MISSING_TUBE:tube`` forms."""
    def said(name: str) -> str:
        # a flag may name what it is about after a colon: GATE_UNCERTAIN:CD4pos
        return _esc(FLAG_DESCRIPTIONS.get(name.split(":")[0], "see the README"))

    words = []
    text = "" if _missing(flags) else str(flags)  # no flags: an empty (NaN) cell
    for flag in filter(None, (f.strip() for f in text.split(";"))):
        head, _, tail = flag.partition(":")
        if head == "MISSING_TUBE":
            words.append(f"<b>MISSING_TUBE</b> — the {_esc(tail)} tube is absent or failed; "
                         "its values are empty")
        elif tail:
            words.append(f"<b>{_esc(tail)}</b> — {_esc(head)} tube: {said(tail)}")
        else:
            words.append(f"<b>{_esc(head)}</b> — {said(head)}")
    return words


def _first_existing(*candidates, folder: bool) -> str | None:
    """The first candidate path that exists (a folder, or a file), else the first given."""
    given = [c for c in candidates if c]
    for candidate in given:
        path = Path(candidate)
        if path.is_dir() if folder else path.is_file():
            return str(path)
    return given[0] if given else None


def _plot_inputs(run: dict, samples_dir, manifest, templates) -> tuple:
    """Where the batch's FCS files, manifest and templates are: what the caller gave, else
    what ``run.json`` recorded — the absolute path resolved when ``gate`` ran first, then
    the path as given then (relative to where ``gate`` ran, so it holds only from there)."""
    parameters, recorded = run.get("parameters", {}), run.get("manifest", {})
    if manifest is None and samples_dir is not None \
            and (Path(samples_dir) / "manifest.csv").is_file():
        manifest = str(Path(samples_dir) / "manifest.csv")  # the folder given, as gate
    if samples_dir is None:
        samples_dir = _first_existing(parameters.get("samples_dir_absolute"),
                                      parameters.get("samples_dir"), folder=True)
    if manifest is None:
        manifest = _first_existing(recorded.get("absolute_path"), recorded.get("path"),
                                   folder=False)
    kept = run.get("templates", {})
    if templates is None and kept.get("directory") not in (None, "shipped"):
        templates = _first_existing(kept.get("absolute_directory"), kept["directory"],
                                    folder=True)
    return samples_dir, manifest, templates


def _run_gates(out: Path) -> dict[str, list]:
    """Each tube's gate reports from the run's ``gates.csv`` (sample id → reports in
    order); empty when there is none."""
    from ..gating.placement import GatePlacement

    table = _read_csv(out / "gates.csv")
    if table is None or not {"sample_id", "gate", "method", "status"} <= set(table.columns):
        return {}  # not a file this version wrote: the plots place the gates themselves

    def text(row: dict, column: str) -> str:
        value = row.get(column)
        return "" if value is None or pd.isna(value) else str(value)

    reports: dict[str, list] = {}
    for row in table.to_dict("records"):
        reports.setdefault(str(row["sample_id"]), []).append(GatePlacement(
            str(row["gate"]), str(row["method"]), str(row["status"]),
            position=text(row, "position"), reason=text(row, "reason")))
    return reports


def _same_folder(templates, recorded: dict) -> bool:
    """Whether the templates asked for (None: the run's) are the run's own folder."""
    if templates is None:
        return True
    kept = recorded.get("absolute_directory")
    return kept is not None and Path(templates).resolve() == Path(kept).resolve()


def _run_placement(out: Path, sample_id: str, run_gates: dict[str, list]):
    """The placement the run wrote for one tube (``OUT/gates/<sample_id>.xml`` with its
    ``gates.csv`` rows), or None: the plots place the gates themselves."""
    from ..gating.adaptive_gating import placement_from_run
    from ..io.output_files import gates_xml_path

    if sample_id not in run_gates:
        return None
    path = gates_xml_path(out, sample_id)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    return placement_from_run(text, run_gates[sample_id], source=path.name)


def build_report(out_dir: str | Path, *, samples_dir: str | Path | None = None,
                 manifest: str | Path | None = None, templates: str | Path | None = None,
                 plots: bool = True, cohort_stats: str | Path | None | bool = True,
                 reference_ranges: dict | None = None,
                 notes: list[str] | None = None, gating: str | None = None) -> str:
    """The HTML text of a batch report (see :func:`write_report`).

    ``notes``, when given, receives one line for each thing the report could not show
    (gating plots whose FCS files cannot be found); the report itself says it too.
    """
    from .._version import __version__
    from ..io.manifest import find_manifest, read_manifest
    from .gating_plots import plot_gates

    out = Path(out_dir)
    ranges = reference_ranges or REFERENCE_RANGES

    def note(line: str) -> None:
        if notes is not None:
            notes.append(line)
    run_path = out / "run.json"
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImmunoprofileError(f"{out}: no run.json — is this the output folder of "
                                 "immunoprofile gate?") from None
    except (OSError, ValueError) as exc:
        raise ImmunoprofileError(f"{run_path}: unreadable ({first_line(exc)})") from None
    profiles = _read_csv(out / "profiles.csv")
    samples = _read_csv(out / "samples.csv")
    errors = _read_csv(out / "errors.csv")
    predictions = _read_csv(out / "predictions.csv")
    if profiles is None or samples is None:
        raise ImmunoprofileError(f"{out}: profiles.csv or samples.csv is missing or "
                                 "unreadable — run immunoprofile gate again")
    errors = errors if errors is not None else pd.DataFrame(columns=["file", "error"])

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>immunoprofile report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>immunoprofile report</h1>",
             f'<p class="muted">{_esc(out.resolve())} · run started '
             f'{_esc(run.get("started_utc", "?"))} UTC · immunoprofile {_esc(__version__)}</p>']
    simulated = run.get("simulated_inputs") or []
    if simulated:
        parts.append(f'<div class="banner"><b>Simulated data.</b> {len(simulated)} of the '
                     "tubes carry immunoprofile's simulation keyword: these are not patient "
                     "samples.</div>")
    parts.append('<div class="banner"><b>Research use only.</b> Not for diagnosis or '
                 "treatment decisions.</div>")

    # --- run summary
    counts = run.get("samples", {})
    versions = run.get("versions", {})
    total_events = int(pd.to_numeric(samples.get("events"), errors="coerce").fillna(0).sum()) \
        if "events" in samples else 0
    parts += ["<h2>Run summary</h2>", "<table>",
              f"<tr><th>Tubes listed</th><td>{_esc(counts.get('listed', '?'))}</td></tr>",
              f"<tr><th>Tubes counted</th><td>{_esc(counts.get('counted', '?'))}</td></tr>",
              f"<tr><th>Files failed</th><td>{len(errors)}</td></tr>",
              f"<tr><th>Patients</th><td>{len(profiles)}</td></tr>",
              f"<tr><th>Events read</th><td>{total_events:,}</td></tr>",
              f"<tr><th>Gating engine</th><td>{_esc(run.get('engine', '?'))}</td></tr>",
              f"<tr><th>Templates</th><td>{_esc(run.get('templates', {}).get('directory'))}"
              "</td></tr>",
              f"<tr><th>Manifest</th><td>{_esc(run.get('manifest', {}).get('path'))}</td></tr>",
              "<tr><th>Versions</th><td>" + ", ".join(
                  f"{_esc(k)} {_esc(v)}" for k, v in versions.items()) + "</td></tr>",
              "</table>"]
    if len(errors):
        parts += ["<h2>Failures</h2>", "<table><tr><th>file</th><th>reason</th></tr>"]
        parts += [f'<tr class="fail"><td>{_esc(r.file)}</td><td>{_esc(r.error)}</td></tr>'
                  for r in errors.itertuples()]
        parts.append("</table>")

    # --- gating plots: one call per tube listed in the manifest
    tube_plots: dict[str, list[str]] = {}
    plot_notes: dict[str, str] = {}
    if plots:
        mode = gating or run.get("gating", "fixed")
        asked_templates = templates
        samples_dir, manifest, templates = _plot_inputs(run, samples_dir, manifest, templates)
        # The gates the run placed and counted are drawn as they are (OUT/gates/*.xml and
        # gates.csv), unless the plots are asked for with other templates or another mode.
        run_gates = _run_gates(out) if mode == "adaptive" and run.get("gating") == "adaptive" \
            and _same_folder(asked_templates, run.get("templates", {})) else {}
        try:
            parsed = read_manifest(find_manifest(samples_dir, manifest), samples_dir)
        except (ImmunoprofileError, TypeError) as exc:
            parsed = None
            reason = (f"the FCS files cannot be found: {first_line(exc)} — run the report "
                      "with --samples DIR (and --manifest PATH), or --no-plots")
            parts.append(f'<div class="banner"><b>Gating plots not drawn:</b> {_esc(reason)}'
                         "</div>")
            note(f"gating plots not drawn: {reason}")
        counted = set(samples["sample_id"]) if "sample_id" in samples else set()
        if parsed is not None:
            found = {r.sample_id for r in parsed.requests}
            lost = sorted(s for s in counted if s not in found)
            for sample_id in lost:
                plot_notes[sample_id] = (f"its FCS file is not where {parsed.path} says "
                                         "(moved or deleted?)")
            if lost:
                note(f"gating plots not drawn for {len(lost)} tube(s) whose FCS files "
                     f"cannot be found ({', '.join(lost[:5])}"
                     f"{', …' if len(lost) > 5 else ''}) — see {parsed.path}")
        for request in parsed.requests if parsed else []:
            if request.sample_id not in counted:
                continue
            try:
                placement = _run_placement(out, request.sample_id, run_gates)
                drawn = plot_gates(request.path, tube=request.tube, templates=templates,
                                   gating=mode, placement=placement)
            except ImmunoprofileError as exc:
                plot_notes[request.sample_id] = first_line(exc)
                note(f"{request.sample_id}: gating plots not drawn — {first_line(exc)}")
                continue
            except Exception as exc:  # a bug: one tube's plots are lost, not the report
                plot_notes[request.sample_id] = (f"internal error — please report: "
                                                 f"{type(exc).__name__}: {first_line(exc)}")
                note(f"{request.sample_id}: gating plots not drawn — "
                     f"{plot_notes[request.sample_id]}")
                continue
            tube_plots.setdefault(request.patient_id, []).append(
                f"<details><summary>{_esc(request.sample_id)} — gating "
                f"({len(drawn)} gates)</summary><div class=\"plots\">"
                + "".join(_img(p.png, f"{request.sample_id} {p.gate_id}") for p in drawn)
                + "</div></details>")

    # --- patients
    parts.append("<h2>Patients</h2>")
    pred = predictions.set_index("patient_id") if predictions is not None and \
        "patient_id" in predictions else None
    for row in profiles.itertuples(index=False):
        pid = str(row.patient_id)
        parts.append(f"<h3>Patient {_esc(pid)}</h3><table><tr><th>measure</th><th>value</th>"
                     "<th>reference</th><th></th></tr>")
        for column, (label, lo, hi, unit) in ranges.items():
            value = getattr(row, column, float("nan"))
            digits = 2 if column == "cd4_cd8_ratio" else 0
            state = ""
            try:
                v = float(value)
                state = "low" if v < lo else "high" if v > hi else ""
            except (TypeError, ValueError):
                v = float("nan")
            mark = f'<span class="{state}">{state}</span>' if state else ""
            shown = f"{_num(v, digits)} {_esc(unit, missing='')}".strip()
            parts.append(f"<tr><td>{_esc(label)}</td><td>{shown}</td>"
                         f"<td>{_num(lo, digits)}–{_num(hi, digits)}</td><td>{mark}</td></tr>")
        parts.append("</table>")
        words = _flags_in_words(getattr(row, "qc_flags", ""))
        parts.append("<p><b>QC:</b> " + ("no flags" if not words else "</p><ul>"
                     + "".join(f"<li>{w}</li>" for w in words) + "</ul><p>") + "</p>")
        if pred is not None and pid in pred.index:
            p = pred.loc[pid]
            if pd.notna(p.get("p_tfr_grade_2_or_more")):
                risk = _esc(p.get("risk_class"), missing="")
                interval = ""
                if pd.notna(p.get("p_low_95")) and pd.notna(p.get("p_high_95")):
                    interval = (f" (bootstrap 95 % range {100 * p['p_low_95']:.0f}–"
                                f"{100 * p['p_high_95']:.0f} %)")
                outside = (" <b>Outside the training range</b> "
                           f"({_esc(p.get('outside_features'))}): an extrapolation."
                           if p.get("outside_training_range") is True
                           or str(p.get("outside_training_range")) == "True" else "")
                parts.append(f"<p><b>TFR grade ≥ 2 risk:</b> "
                             f"{100 * p['p_tfr_grade_2_or_more']:.0f} %{interval}, "
                             f'<span class="risk-{risk}">{risk}</span> '
                             f"(threshold {100 * float(p.get('threshold', 0.5)):.0f} %)."
                             f"{outside}</p>")
            else:
                parts.append(f"<p><b>TFR risk:</b> "
                             f"{_esc(p.get('note'), missing='not predicted')}</p>")
        parts += tube_plots.get(pid, [])
    for sample_id, note in plot_notes.items():
        parts.append(f'<p class="muted">{_esc(sample_id)}: plots not drawn — {_esc(note)}</p>')
    if pred is not None:
        parts.append('<p class="muted">TFR risk: the default model is trained on SIMULATED '
                     "data (see MODEL_CARD.md); the bootstrap range shows how the estimate "
                     "moves with the training patients.</p>")

    # --- cohort figures
    stats_dir = (out / "cohort_stats" if cohort_stats is True
                 else Path(cohort_stats) if cohort_stats else None)
    figures = [(stats_dir / name, alt) for name, alt in (
        ("figure2_immune_by_tfr_grade.png", "immune cells by TFR grade"),
        ("figure3_cr_by_tfr_grade.png", "CR by TFR grade"))] if stats_dir else []
    figures = [(f, alt) for f, alt in figures if f.exists()]
    if figures:
        parts.append("<h2>Cohort figures</h2>")
        parts += [_img(f.read_bytes(), alt) for f, alt in figures]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, **options) -> Path:
    """Write ``report.html`` into a gate output folder, atomically.

    Parameters
    ----------
    out_dir : str or Path
        Output folder of ``immunoprofile gate`` (or of the workflow).
    **options
        ``samples_dir``, ``manifest``, ``templates``, ``gating`` (default: as recorded in
        ``run.json``), ``plots`` (False to leave out the gating plots),
        ``cohort_stats`` (folder of ``immunoprofile cohort-stats`` output whose figures to
        embed; True = ``OUT/cohort_stats`` if present, None = none),
        ``reference_ranges`` (see :data:`REFERENCE_RANGES`) and ``notes`` (a list that
        receives one line per thing the report could not show, e.g. gating plots whose
        FCS files cannot be found; the report says it too).

    Returns
    -------
    Path
        The report.

    Raises
    ------
    ImmunoprofileError
        The folder holds no readable run (run.json, profiles.csv, samples.csv).
    """
    from ..io.atomic import atomic_write_text

    text = build_report(out_dir, **options)
    path = Path(out_dir) / "report.html"
    atomic_write_text(path, text)
    return path
