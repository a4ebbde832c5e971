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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..counting.qc import FLAG_DESCRIPTIONS, describe_flag
from ..errors import GatingError, ImmunoprofileError, first_line
from ..io.output_files import gate_views_path
from ..profile.columns import IMMUNE_PROFILE

if TYPE_CHECKING:
    from ..gating.panel_spec import PanelQC

#: Typical adult reference intervals, cells/µL (ratio unitless), used to mark values low or
#: high. Replace them with your laboratory's: ``write_report(..., reference_ranges=...)``.
REFERENCE_RANGES: dict[str, tuple[str, float, float, str]] = {
    c.name: (c.label, c.reference_low, c.reference_high, c.unit) for c in IMMUNE_PROFILE}
#: What a TBNK result adds (shown when the batch holds a TBNK tube: its profiles carry a
#: lymphosum): T and B cells per µL — typical adult intervals of BD's Multitest 6-colour
#: TBNK package insert, replace them with your laboratory's — and the lymphosum against
#: its expected 95–105 % (README.md, "QC flags").
TBNK_REFERENCE_RANGES: dict[str, tuple[str, float, float, str]] = {
    "cd3_per_ul": ("T cells (CD3+)", 700.0, 2100.0, "cells/µL"),
    "cd19_per_ul": ("B cells (CD3− CD19+)", 100.0, 500.0, "cells/µL"),
    "lymphosum_pct": ("Lymphosum (T + B + NK)", 95.0, 105.0, "% of lymphocytes"),
}

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
.risk-low{color:#1b7a35;font-weight:700}.batch td,.batch th{font-size:.85em;padding:.15em .45em}
tr.flagged td{background:#fff3cd}
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


def _svg_img(svg: str, alt: str) -> str:
    """An SVG drawing as an image (its own document: ids and styles stay inside it)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" alt="{_esc(alt)}">'


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


def _flags_in_words(flags: str, qc_of: Callable[[str | None, str], PanelQC | None]
                    | None = None) -> list[str]:
    """QC flags as sentences: ``FLAG``, ``FLAG:detail``, ``tube:FLAG`` and
    ``tube:FLAG:detail`` forms. ``qc_of(tube, flag)`` gives the limits a flag was raised
    on (tube None: a patient's flag), so that the sentence quotes the panel's own."""
    words = []
    text = "" if _missing(flags) else str(flags)  # no flags: an empty (NaN) cell
    for flag in filter(None, (f.strip() for f in text.split(";"))):
        head, _, tail = flag.partition(":")
        tube = None
        if tail and head not in FLAG_DESCRIPTIONS:  # tube:FLAG[:detail]
            tube, flag = head, tail
        name, _, detail = flag.partition(":")
        qc = qc_of(tube, name) if qc_of is not None else None
        said = _esc(describe_flag(flag, qc))
        label = f"{name}:{detail}" if detail and name != "MISSING_TUBE" else name
        where = f"{_esc(tube)} tube: " if tube is not None else ""
        words.append(f"<b>{_esc(label)}</b> — {where}{said}")
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


def _sample_id(request) -> str:
    """The sample id of a tube to plot (its id itself, or its manifest row)."""
    return request if isinstance(request, str) else str(request.sample_id)


def _recorded_panels(run: dict):
    """The panels a run gated with, as ``run.json`` recorded them (tube → Panel, in the
    panel set's order; their QC limits as the flags were raised on), or None for a run
    of an earlier version."""
    from ..gating.panel_spec import Panel

    recorded = run.get("panel_set")
    if not isinstance(recorded, list) or not recorded:
        return None
    try:
        return {str(d["tube"]): Panel.from_dict(d) for d in recorded}
    except (KeyError, TypeError, ValueError):
        return None


def _run_panels(run: dict):
    """The lab's panels a run used (``run.json`` ``panels``: their folders), or None."""
    from ..gating.panel_files import resolve_panels

    folders = run.get("panels") or []
    return resolve_panels([f["absolute_directory"] for f in folders]) if folders else None


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


#: Patients per page of a large batch's report. Up to this many patients the report is one
#: file; beyond, ``report.html`` holds the run summary and one table row per patient, each
#: linking to the patient's section in ``report_pages/patients-NNNN.html`` (this many
#: patients, with their gating plots, per page), so that no file grows with the batch.
PATIENTS_PER_PAGE = 50
#: Folder of a paged report's pages, beside ``report.html``.
PAGES_DIR = "report_pages"


class _Batch:
    """A gate output folder read for its report: the tables once, the plots per patient."""

    def __init__(self, out_dir, *, samples_dir, manifest, templates, plots, ranges,
                 notes, gating):
        from ..io.manifest import find_manifest, read_manifest

        self.out = Path(out_dir)
        self.ranges = ranges or REFERENCE_RANGES
        #: The reference ranges the caller gave and changed (a lab's own lymphosum range
        #: then stands; else — also when a caller passes the defaults through, as
        #: ``{**REFERENCE_RANGES, ...}`` — the lymphosum is held to its panel's range).
        defaults = {**REFERENCE_RANGES, **TBNK_REFERENCE_RANGES}
        self.given_ranges = {k: v for k, v in (ranges or {}).items() if defaults.get(k) != v}
        #: Where :meth:`note` writes (None: nowhere).
        self.notes = notes
        run_path = self.out / "run.json"
        try:
            self.run = json.loads(run_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ImmunoprofileError(f"{self.out}: no run.json — is this the output folder of "
                                     "immunoprofile gate?") from None
        except (OSError, ValueError) as exc:
            raise ImmunoprofileError(f"{run_path}: unreadable ({first_line(exc)})") from None
        self.profiles = _read_csv(self.out / "profiles.csv")
        if ranges is None and self.profiles is not None and \
                "lymphosum_pct" in self.profiles.columns:
            self.ranges = {**REFERENCE_RANGES, **{
                c: r for c, r in TBNK_REFERENCE_RANGES.items() if c in self.profiles.columns}}
        self.samples = _read_csv(self.out / "samples.csv")
        errors = _read_csv(self.out / "errors.csv")
        predictions = _read_csv(self.out / "predictions.csv")
        if self.profiles is None or self.samples is None:
            raise ImmunoprofileError(f"{self.out}: profiles.csv or samples.csv is missing or "
                                     "unreadable — run immunoprofile gate again")
        self.errors = errors if errors is not None else pd.DataFrame(columns=["file", "error"])
        # one prediction per patient (a hand-edited file may repeat one: the first counts)
        self.pred = predictions.drop_duplicates("patient_id").set_index("patient_id") \
            if predictions is not None and "patient_id" in predictions else None
        # each patient's populations as % of lymphocytes (populations.csv), per tube
        self.pct_lymphocytes: dict[tuple[str, str, str], float] = {}
        # each tube's events per gate and in its parent (the plots' labels), by sample id
        self.gate_events: dict[str, dict[str, tuple[int, int]]] = {}
        populations = _read_csv(self.out / "populations.csv")
        if populations is not None and {"patient_id", "tube", "population",
                                        "pct_lymphocytes"} <= set(populations.columns):
            counted = {"sample_id", "events", "parent_events"} <= set(populations.columns)
            for row in populations.itertuples(index=False):
                value = pd.to_numeric(row.pct_lymphocytes, errors="coerce")
                if pd.notna(value):
                    self.pct_lymphocytes[(str(row.patient_id), str(row.tube),
                                          str(row.population))] = float(value)
                if counted:
                    self.gate_events.setdefault(str(row.sample_id), {})[
                        str(row.population)] = (int(row.events), int(row.parent_events))
        # the limits each patient's flags were raised on (their tubes' panels), so that the
        # flags in words quote them
        self.tubes_of: dict[str, set[str]] = {}
        if {"patient_id", "tube"} <= set(self.samples.columns):
            for patient, tube in zip(self.samples["patient_id"], self.samples["tube"],
                                     strict=True):
                self.tubes_of.setdefault(str(patient), set()).add(str(tube))
        try:
            from ..gating.panels import default_panels

            self.qc_panels = _recorded_panels(self.run) or _run_panels(self.run) or \
                default_panels()
        except (ImmunoprofileError, TypeError):
            self.qc_panels = None  # the flags are then described with the default limits

        # --- what the gating plots need: the manifest's tubes, grouped by patient
        self.plots = plots
        self.banners: list[str] = []
        self.lost: dict[str, str] = {}
        self.requests: dict[str, list] = {}
        self.panels = None
        if not plots:
            return
        self.mode = gating or self.run.get("gating", "fixed")
        samples_dir, manifest, self.templates = _plot_inputs(self.run, samples_dir, manifest,
                                                             templates)
        # The gates the run placed and counted are drawn as they are (OUT/gates/*.xml and
        # gates.csv), unless the plots are asked for with other templates or another mode.
        self.run_gates = _run_gates(self.out) if self.mode == "adaptive" and \
            self.run.get("gating") == "adaptive" and \
            _same_folder(templates, self.run.get("templates", {})) else {}
        counted = list(self.samples["sample_id"].astype(str)) \
            if "sample_id" in self.samples else []
        self.order = {sid: i for i, sid in enumerate(counted)}  # samples.csv's order
        # Tubes whose run binned their plots (OUT/gates/<sample_id>.views.npz) are drawn
        # from those: neither their FCS files nor the manifest are read for them.
        self.views = {sid: path for sid in counted if sid in self.run_gates
                      for path in [gate_views_path(self.out, sid)] if path.is_file()}
        if "patient_id" in self.samples:
            for sid, pid in zip(counted, self.samples["patient_id"].astype(str), strict=True):
                if sid in self.views:
                    self.requests.setdefault(pid, []).append(sid)
        if len(self.views) == len(counted):
            return
        try:
            from ..gating.panels import default_panels

            self.panels = _run_panels(self.run)
            parsed = read_manifest(find_manifest(samples_dir, manifest), samples_dir,
                                   tuple(self.panels or default_panels()))
        except (ImmunoprofileError, TypeError) as exc:
            reason = (f"the FCS files cannot be found: {first_line(exc)} — run the report "
                      "with --samples DIR (and --manifest PATH), or --no-plots")
            missing = [s for s in counted if s not in self.views]
            if self.views:  # those are drawn; the others are named, tube by tube
                for sample_id in missing:
                    self.lost[sample_id] = f"its FCS file cannot be found: {first_line(exc)}"
                what = (f"Gating plots not drawn for {len(missing)} of {len(counted)} tubes "
                        "(those the run binned no plots for):")
            else:
                what = "Gating plots not drawn:"
            self.banners.append(f'<div class="banner"><b>{_esc(what)}</b> '
                                f"{_esc(reason)}</div>")
            self.note(f"{what[0].lower()}{what[1:].rstrip(':')}: {reason}"
                      + (f" ({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''})"
                         if self.views else ""))
            return
        found = {r.sample_id for r in parsed.requests}
        for sample_id in sorted(s for s in counted if s not in found and s not in self.views):
            self.lost[sample_id] = (f"its FCS file is not where {parsed.path} says "
                                    "(moved or deleted?)")
        if self.lost:
            lost = list(self.lost)
            self.note(f"gating plots not drawn for {len(lost)} tube(s) whose FCS files "
                      f"cannot be found ({', '.join(lost[:5])}"
                      f"{', …' if len(lost) > 5 else ''}) — see {parsed.path}")
        drawn = set(counted) - set(self.views)
        for request in parsed.requests:
            if request.sample_id in drawn:
                self.requests.setdefault(str(request.patient_id), []).append(request)

    def note(self, line: str) -> None:
        if self.notes is not None:
            self.notes.append(line)

    # ------------------------------------------------------------------ parts
    def head(self, title: str) -> list[str]:
        from .._version import __version__

        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 f"<title>{_esc(title)}</title>", f"<style>{_CSS}</style></head><body>",
                 f"<h1>{_esc(title)}</h1>",
                 f'<p class="muted">{_esc(self.out.resolve())} · run started '
                 f'{_esc(self.run.get("started_utc", "?"))} UTC · immunoprofile '
                 f"{_esc(__version__)}</p>"]
        simulated = self.run.get("simulated_inputs") or []
        if simulated:
            parts.append(f'<div class="banner"><b>Simulated data.</b> {len(simulated)} of '
                         "the tubes carry immunoprofile's simulation keyword: these are not "
                         "patient samples.</div>")
        parts.append('<div class="banner"><b>Research use only.</b> Not for diagnosis or '
                     "treatment decisions.</div>")
        return parts

    def summary(self) -> list[str]:
        """The run summary, the failures and why plots are missing."""
        counts = self.run.get("samples", {})
        versions = self.run.get("versions", {})
        samples = self.samples
        total_events = int(pd.to_numeric(samples.get("events"), errors="coerce").fillna(0)
                           .sum()) if "events" in samples else 0
        parts = ["<h2>Run summary</h2>", "<table>",
                 f"<tr><th>Tubes listed</th><td>{_esc(counts.get('listed', '?'))}</td></tr>",
                 f"<tr><th>Tubes counted</th><td>{_esc(counts.get('counted', '?'))}</td></tr>",
                 f"<tr><th>Files failed</th><td>{len(self.errors)}</td></tr>",
                 f"<tr><th>Patients</th><td>{len(self.profiles)}</td></tr>",
                 f"<tr><th>Events read</th><td>{total_events:,}</td></tr>",
                 f"<tr><th>Gating engine</th><td>{_esc(self.run.get('engine', '?'))}</td></tr>",
                 f"<tr><th>Templates</th><td>"
                 f"{_esc(self.run.get('templates', {}).get('directory'))}</td></tr>",
                 f"<tr><th>Manifest</th><td>"
                 f"{_esc(self.run.get('manifest', {}).get('path'))}</td></tr>",
                 "<tr><th>Versions</th><td>" + ", ".join(
                     f"{_esc(k)} {_esc(v)}" for k, v in versions.items()) + "</td></tr>",
                 "</table>"]
        if len(self.errors):
            parts += ["<h2>Failures</h2>", "<table><tr><th>file</th><th>reason</th></tr>"]
            parts += [f'<tr class="fail"><td>{_esc(r.file)}</td><td>{_esc(r.error)}</td></tr>'
                      for r in self.errors.itertuples()]
            parts.append("</table>")
        parts += self.banners
        parts += [f'<p class="muted">{_esc(sample_id)}: plots not drawn — {_esc(why)}</p>'
                  for sample_id, why in self.lost.items()]
        return parts

    def _risk(self, pid: str) -> tuple[str, str]:
        """The patient's TFR risk: a short cell for the batch table, and a sentence."""
        if self.pred is None or pid not in self.pred.index:
            return "—", ""
        p = self.pred.loc[pid]
        if not pd.notna(p.get("p_tfr_grade_2_or_more")):
            return "—", (f"<p><b>TFR risk:</b> "
                         f"{_esc(p.get('note'), missing='not predicted')}</p>")
        risk = _esc(p.get("risk_class"), missing="")
        interval = ""
        if pd.notna(p.get("p_low_95")) and pd.notna(p.get("p_high_95")):
            interval = (f" (bootstrap 95 % range {100 * p['p_low_95']:.0f}–"
                        f"{100 * p['p_high_95']:.0f} %)")
        outside = (" <b>Outside the training range</b> "
                   f"({_esc(p.get('outside_features'))}): an extrapolation."
                   if p.get("outside_training_range") is True
                   or str(p.get("outside_training_range")) == "True" else "")
        percent = f"{100 * p['p_tfr_grade_2_or_more']:.0f} %"
        cell = f'{percent} <span class="risk-{risk}">{risk}</span>'
        return cell, (f"<p><b>TFR grade ≥ 2 risk:</b> {percent}{interval}, "
                      f'<span class="risk-{risk}">{risk}</span> '
                      f"(threshold {100 * float(p.get('threshold', 0.5)):.0f} %).{outside}</p>")

    def _values(self, row) -> list[tuple[str, str, str, float, float, int]]:
        """Per profile column: label, value text, state (low/high/""), range, digits.

        The lymphosum is held to the warning range of the patient's panel (a lab's panel
        file may set its own), not the default 95–105 % — unless the caller's
        ``reference_ranges`` give one."""
        values = []
        ranges = dict(self.ranges)
        if "lymphosum_pct" in ranges and self.qc_panels is not None and \
                "lymphosum_pct" not in self.given_ranges:
            qc = self._qc_of(str(row.patient_id))(None, "LYMPHOSUM_WARNING")
            if qc is not None and qc.lymphosum_gates:
                label, _, _, unit = ranges["lymphosum_pct"]
                ranges["lymphosum_pct"] = (label, *qc.lymphosum_warn, unit)
        for column, (label, lo, hi, unit) in ranges.items():
            value = getattr(row, column, float("nan"))
            digits = 2 if column == "cd4_cd8_ratio" else 1 if column.endswith("_pct") else 0
            state = ""
            try:
                v = float(value)
                state = "low" if v < lo else "high" if v > hi else ""
            except (TypeError, ValueError):
                v = float("nan")
            shown = f"{_num(v, digits)} {_esc(unit, missing='')}".strip()
            values.append((label, shown, state, lo, hi, digits))
        return values

    def batch_table(self, href) -> list[str]:
        """One row per patient, linking to its section (``href(i)`` for the i-th row,
        0-based: sections are found by position, as ids may repeat or hold any
        character): the profile, its QC flags (highlighted) and the TFR risk."""
        labels = [label for label, *_ in self.ranges.values()]
        parts = ["<h2>Patients at a glance</h2>",
                 '<table class="batch"><tr><th>patient</th>'
                 + "".join(f"<th>{_esc(label)}</th>" for label in labels)
                 + "<th>QC flags</th><th>TFR risk</th></tr>"]
        for i, row in enumerate(self.profiles.itertuples(index=False)):
            pid = str(row.patient_id)
            cells = "".join(f'<td class="{state}">{shown}</td>' if state else f"<td>{shown}</td>"
                            for _, shown, state, *_ in self._values(row))
            flags = getattr(row, "qc_flags", "")
            flagged = not _missing(flags)
            row_class = ' class="flagged"' if flagged else ""
            parts.append(
                f"<tr{row_class}><td>"
                f'<a href="{html.escape(href(i), quote=True)}">{_esc(pid)}</a></td>{cells}'
                f"<td>{_esc(str(flags).replace(';', '; ') if flagged else '', missing='')}</td>"
                f"<td>{self._risk(pid)[0]}</td></tr>")
        parts.append("</table>")
        return parts

    def patient(self, i: int, row) -> list[str]:
        """The i-th patient's section (0-based, its anchor ``patient-{i + 1}``): the
        profile beside reference intervals, QC in words, the TFR risk, and each tube's
        gating plots (drawn now: one tube's events at a time)."""
        pid = str(row.patient_id)
        pct = self._pct_of_lymphocytes(pid)
        pct_head = "<th>% of lymphocytes</th>" if pct else ""
        parts = [f'<h3 id="{anchor(i)}">Patient {_esc(pid)}</h3><table><tr>'
                 f"<th>measure</th><th>value</th>{pct_head}<th>reference</th><th></th></tr>"]
        for column, (label, shown, state, lo, hi, digits) in zip(
                self.ranges, self._values(row), strict=True):
            mark = f'<span class="{state}">{state}</span>' if state else ""
            share = f"<td>{_num(pct.get(column, float('nan')), 1)}</td>" if pct else ""
            parts.append(f"<tr><td>{_esc(label)}</td><td>{shown}</td>{share}"
                         f"<td>{_num(lo, digits)}–{_num(hi, digits)}</td><td>{mark}</td></tr>")
        parts.append("</table>")
        words = _flags_in_words(getattr(row, "qc_flags", ""), self._qc_of(pid))
        parts.append("<p><b>QC:</b> " + ("no flags" if not words else "</p><ul>"
                     + "".join(f"<li>{w}</li>" for w in words) + "</ul><p>") + "</p>")
        risk = self._risk(pid)[1]
        if risk:
            parts.append(risk)
        parts += self._tube_plots(pid)
        return parts

    def _pct_of_lymphocytes(self, pid: str) -> dict[str, float]:
        """Profile column → its population as % of lymphocytes (``populations.csv``), from
        the tube whose count the profile gives — the first of the patient's tubes, in the
        panel set's order, that reports it — and for CD3+ the mean over the tubes, as the
        profile's ``cd3_per_ul`` is; empty when the panels or the populations are not
        known."""
        from ..profile.tables import reported_columns

        if self.qc_panels is None or not self.pct_lymphocytes:
            return {}
        mine = self.tubes_of.get(pid, set())
        shares: dict[str, float] = {}
        cd3: list[float] = []
        for tube in (t for t in self.qc_panels if t in mine):
            panel = self.qc_panels[tube]
            for gate, column in reported_columns(panel, tube):
                value = self.pct_lymphocytes.get((pid, tube, gate))
                if column != "cd3_per_ul" and column not in shares and value is not None:
                    shares[column] = value
            value = self.pct_lymphocytes.get((pid, tube, panel.t_cell_gate))
            if value is not None:
                cd3.append(value)
        if cd3:
            shares["cd3_per_ul"] = sum(cd3) / len(cd3)
        return shares

    def _qc_of(self, pid: str):
        """``qc_of(tube, flag)`` for :func:`_flags_in_words`: the limits of the tube's panel,
        or those a patient's flag was raised on (:func:`~immunoprofile.profile.patient_qc`)."""
        from ..profile.tables import patient_qc

        panels, tubes = self.qc_panels, self.tubes_of.get(pid, set())

        def qc_of(tube: str | None, flag: str) -> PanelQC | None:
            if panels is None:
                return None
            if tube is not None:
                return panels[tube].qc if tube in panels else None
            return patient_qc(tubes, panels, flag)

        return qc_of

    def _tube_plots(self, pid: str) -> list[str]:

        parts = []
        for request in sorted(self.requests.get(pid, []),
                              key=lambda r: self.order.get(_sample_id(r), 0)):
            try:
                drawn = self._plots_of(request)
            except ImmunoprofileError as exc:
                why = first_line(exc)
            except Exception as exc:  # a bug: one tube's plots are lost, not the report
                why = f"internal error — please report: {type(exc).__name__}: {first_line(exc)}"
            else:
                parts.append(
                    f"<details><summary>{_esc(_sample_id(request))} — gating "
                    f"({len(drawn)} gates)</summary><div class=\"plots\">"
                    + "".join(_svg_img(p.svg, f"{_sample_id(request)} {p.gate_id}")
                              for p in drawn)
                    + "</div></details>")
                continue
            self.note(f"{_sample_id(request)}: gating plots not drawn — {why}")
            parts.append(f'<p class="muted">{_esc(_sample_id(request))}: plots not drawn — '
                         f"{_esc(why)}</p>")
        return parts

    def _plots_of(self, request) -> list:
        """One tube's plots: from the views its run binned (``request`` is then its sample
        id), or drawn from its FCS file (a manifest row)."""
        from ..gating.gate_views import gates_digest, unpack_views
        from ..io.output_files import gates_xml_path
        from .gating_plots import plot_gates, plots_from_views

        if isinstance(request, str):
            path = self.views[request]
            xml = gates_xml_path(self.out, request)
            try:
                gates = xml.read_bytes().decode("utf-8")  # as written: no newline translation
            except (OSError, UnicodeDecodeError) as exc:
                raise ImmunoprofileError(f"{xml.name}: the tube's placed gates cannot be read "
                                         f"({first_line(exc)}) — run immunoprofile gate "
                                         "again") from None
            try:
                views = unpack_views(path.read_bytes(), gates_digest(gates))
            except (OSError, ValueError) as exc:
                raise ImmunoprofileError(f"{path.name}: {first_line(exc)} — run immunoprofile "
                                         "gate again") from None
            placed = [r.gate_id for r in self.run_gates[request]]
            if [v.gate_id for v in views] != [g for g in placed if g in
                                              {v.gate_id for v in views}]:
                raise ImmunoprofileError(f"{path.name}: its gates are not those of gates.csv "
                                         "(a file of another run?)")
            try:
                return plots_from_views(views, self.gate_events.get(request, {}))
            except GatingError as exc:
                raise ImmunoprofileError(f"{path.name}: {first_line(exc)} in "
                                         "populations.csv") from None
        placement = _run_placement(self.out, request.sample_id, self.run_gates)
        return plot_gates(request.path, tube=request.tube, templates=self.templates,
                          gating=self.mode, placement=placement, panels=self.panels)

    def footnote(self) -> list[str]:
        if self.pred is None:
            return []
        return ['<p class="muted">TFR risk: the default model is trained on SIMULATED '
                "data (see MODEL_CARD.md); the bootstrap range shows how the estimate "
                "moves with the training patients.</p>"]

    def cohort_figures(self, cohort_stats) -> list[str]:
        stats_dir = (self.out / "cohort_stats" if cohort_stats is True
                     else Path(cohort_stats) if cohort_stats else None)
        figures = [(stats_dir / name, alt) for name, alt in (
            ("figure2_immune_by_tfr_grade.png", "immune cells by TFR grade"),
            ("figure3_cr_by_tfr_grade.png", "CR by TFR grade"))] if stats_dir else []
        figures = [(f, alt) for f, alt in figures if f.exists()]
        if not figures:
            return []
        return ["<h2>Cohort figures</h2>"] + [_img(f.read_bytes(), alt) for f, alt in figures]


def build_report(out_dir: str | Path, *, samples_dir: str | Path | None = None,
                 manifest: str | Path | None = None, templates: str | Path | None = None,
                 plots: bool = True, cohort_stats: str | Path | None | bool = True,
                 reference_ranges: dict | None = None,
                 notes: list[str] | None = None, gating: str | None = None) -> str:
    """The HTML text of a batch report as one document, every patient in it (see
    :func:`write_report`, which pages a large batch instead).

    ``notes``, when given, receives one line for each thing the report could not show
    (gating plots whose FCS files cannot be found); the report itself says it too.
    """
    batch = _Batch(out_dir, samples_dir=samples_dir, manifest=manifest, templates=templates,
                   plots=plots, ranges=reference_ranges, notes=notes, gating=gating)
    return _one_document(batch, cohort_stats)


def _one_document(batch: _Batch, cohort_stats) -> str:
    parts = batch.head("immunoprofile report") + batch.summary()
    parts += batch.batch_table(lambda i: "#" + anchor(i))
    parts.append("<h2>Patients</h2>")
    for i, row in enumerate(batch.profiles.itertuples(index=False)):
        parts += batch.patient(i, row)
    parts += batch.footnote() + batch.cohort_figures(cohort_stats)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, *, samples_dir: str | Path | None = None,
                 manifest: str | Path | None = None, templates: str | Path | None = None,
                 plots: bool = True, cohort_stats: str | Path | None | bool = True,
                 reference_ranges: dict | None = None, notes: list[str] | None = None,
                 gating: str | None = None, jobs: int = 1) -> Path:
    """Write ``report.html`` into a gate output folder, atomically.

    A batch of up to :data:`PATIENTS_PER_PAGE` patients gets one self-contained file. A
    larger one is paged: ``report.html`` holds the run summary and one row per patient
    (profile, QC flags, TFR risk) linking to its section in ``report_pages/``, where each
    page holds :data:`PATIENTS_PER_PAGE` patients with their gating plots; the summary
    states the report's size. Each page is written atomically as soon as it is drawn (one
    tube's events in memory at a time), ``jobs`` pages at once, and ``report.html`` last;
    pages of an earlier, larger report are removed.

    Parameters
    ----------
    out_dir : str or Path
        Output folder of ``immunoprofile gate`` (or of the workflow).
    samples_dir, manifest, templates, gating
        Where the FCS files, manifest and templates are and the gating mode of the plots
        (default: as recorded in ``run.json``).
    plots : bool
        False to leave out the gating plots.
    cohort_stats : str, Path, bool or None
        Folder of ``immunoprofile cohort-stats`` output whose figures to embed; True =
        ``OUT/cohort_stats`` if present, None = none.
    reference_ranges : dict, optional
        See :data:`REFERENCE_RANGES`.
    notes : list, optional
        Receives one line per thing the report could not show, e.g. gating plots whose
        FCS files cannot be found (the report says it too).
    jobs : int
        Processes drawing the pages of a paged report (one page each at a time).

    Returns
    -------
    Path
        The report (its first page, for a paged one).

    Raises
    ------
    ImmunoprofileError
        The folder holds no readable run (run.json, profiles.csv, samples.csv).
    """
    from ..io.atomic import atomic_write_text

    out = Path(out_dir)
    path = out / "report.html"
    batch_options = {"samples_dir": samples_dir, "manifest": manifest, "templates": templates,
                     "plots": plots, "ranges": reference_ranges, "gating": gating}
    batch = _Batch(out, notes=notes, **batch_options)
    pages_dir = out / PAGES_DIR
    written: set[Path] = set()
    if len(batch.profiles) <= PATIENTS_PER_PAGE:
        atomic_write_text(path, _one_document(batch, cohort_stats))
    else:
        n_pages = -(-len(batch.profiles) // PATIENTS_PER_PAGE)
        pages_dir.mkdir(exist_ok=True)
        if jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(jobs, n_pages)) as pool:
                done = list(pool.map(_page_in_worker,
                                     [(str(out), batch_options, k, n_pages, PATIENTS_PER_PAGE)
                                      for k in range(1, n_pages + 1)]))
            for *_, page_notes in done:
                for line in page_notes:
                    batch.note(line)
        else:
            done = [_write_page(batch, k, n_pages, PATIENTS_PER_PAGE)
                    for k in range(1, n_pages + 1)]
        written = {Path(target) for target, *_ in done}
        size = sum(page_size for _, page_size, *_ in done)
        parts = batch.head("immunoprofile report") + batch.summary()
        parts.append(f"<p><b>This report is paged:</b> this summary and {n_pages} pages of "
                     f"up to {PATIENTS_PER_PAGE} patients in <code>{PAGES_DIR}/</code> "
                     f"({size / 1e6:,.1f} MB of pages, the gating plots included); each "
                     "patient's name below links to its section.</p>")
        parts += batch.batch_table(
            lambda i: f"{_page_name(i // PATIENTS_PER_PAGE + 1)}#{anchor(i)}")
        parts += batch.cohort_figures(cohort_stats) + batch.footnote()
        parts.append("</body></html>")
        atomic_write_text(path, "\n".join(parts))
    if pages_dir.is_dir():  # pages of an earlier, larger report
        for stale in pages_dir.glob("patients-*.html"):
            if stale not in written:
                stale.unlink()
    return path


def _page_name(k: int) -> str:
    """Page ``k`` (1-based) of a paged report, relative to the output folder."""
    return f"{PAGES_DIR}/patients-{k:04d}.html"


def anchor(i: int) -> str:
    """The HTML id of the i-th patient's section (0-based)."""
    return f"patient-{i + 1}"


def _write_page(batch: _Batch, k: int, n_pages: int, per_page: int) -> tuple[str, int]:
    """Draw and write page ``k`` (1-based, ``per_page`` patients) of a paged report: its
    path and its size in bytes (what its plots could not show goes to ``batch.note``)."""
    from ..io.atomic import atomic_write_text

    start = (k - 1) * per_page
    page = batch.profiles.iloc[start:start + per_page]
    parts = batch.head(f"immunoprofile report — patients {start + 1}–{start + len(page)} "
                       f"of {len(batch.profiles)}")
    parts.append(f'<p><a href="../report.html">← summary of the batch</a> · page {k} '
                 f"of {n_pages}</p><h2>Patients</h2>")
    for i, row in enumerate(page.itertuples(index=False), start):
        parts += batch.patient(i, row)
    parts += batch.footnote()
    parts.append("</body></html>")
    text = "\n".join(parts)
    target = batch.out / _page_name(k)
    atomic_write_text(target, text)
    return str(target), len(text.encode("utf-8"))


def _page_in_worker(job: tuple) -> tuple[str, int, list[str]]:
    """:func:`_write_page` in a worker process, which reads the run's tables itself; the
    notes its page gave come back with it (those of reading the tables the parent has)."""
    out, batch_options, k, n_pages, per_page = job
    batch = _Batch(out, notes=None, **batch_options)
    batch.notes = []
    return (*_write_page(batch, k, n_pages, per_page), batch.notes)
