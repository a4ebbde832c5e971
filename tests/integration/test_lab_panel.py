"""A lab's own panel, written from gating/README.md ("Panels") alone, end to end.

The panel file is the README's own example (read out of the README, so the documentation
is what is tested) and its template is made as the README says: the shipped adaptive CD4
template with its CD4 gate turned into a B-cell gate on the PE channel, inside the
lymphocytes. The tubes are SIMULATED (CD3 FITC / CD19 PE / CD45 PerCP-Cy5.5); the B-cell
count is held to the truth within max(5 %, 3 counting SD).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from immunoprofile.cli import main
from immunoprofile.datasets.evaluation import count_tolerance
from immunoprofile.datasets.simulate import LABEL_CODE, PatientSpec, simulate_tube
from immunoprofile.datasets.tube_files import write_tube
from immunoprofile.errors import PanelError
from immunoprofile.gating.panel_files import load_panels
from immunoprofile.gating.templates import adaptive_template_dir, template_dir
from immunoprofile.pipeline.batch import gate_batch

README = Path(__file__).resolve().parents[2] / "gating" / "README.md"
PATIENTS = [PatientSpec("P1", b_cells_per_ul=400, cd4_per_ul=800, cd8_per_ul=400,
                        nk_per_ul=250),
            PatientSpec("P2", b_cells_per_ul=9_000, cd4_per_ul=600, cd8_per_ul=500,
                        nk_per_ul=200)]


def documented_panel() -> str:
    """The YAML example under "## Panels" in gating/README.md."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Panels", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def documented_template() -> str:
    """The README's recipe: the adaptive CD4 template, its CD4 gate a CD19 gate within
    the lymphocytes."""
    text = (adaptive_template_dir() / "cd4_tube.xml").read_text(encoding="utf-8")
    text = text.replace('gating:id="CD4pos" gating:parent_id="CD3pos"',
                        'gating:id="CD19pos" gating:parent_id="Lymphocytes"')
    assert 'gating:id="CD19pos"' in text
    return text


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab_panel")
    panels = root / "my_panels"
    panels.mkdir()
    (panels / "b_cells.yaml").write_text(documented_panel(), encoding="utf-8")
    (panels / "bcell_tube.xml").write_text(documented_template(), encoding="utf-8")
    samples = root / "samples"
    samples.mkdir()
    truth = {}
    rows = ["file,patient_id,tube,beads_per_test,volume_ul"]
    for i, patient in enumerate(PATIENTS):
        tube = simulate_tube(patient, "cd19", events=30_000, seed=40 + i)
        write_tube(tube, samples / f"{patient.patient_id}_b.fcs")
        # tube blank for P2: detected by its markers among the shipped and the lab's panels
        rows.append(f"{patient.patient_id}_b.fcs,{patient.patient_id},"
                    f"{'bcell' if i == 0 else ''},50000,50")
        b_events = int(np.count_nonzero(tube.labels == LABEL_CODE["b_cell"]))
        bead_events = int(np.count_nonzero(tube.labels == LABEL_CODE["bead"]))
        truth[patient.patient_id] = (patient.b_cells_per_ul,
                                     count_tolerance(patient.b_cells_per_ul, b_events,
                                                     bead_events))
    (samples / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root, panels, samples, truth


def test_the_documented_panel_file_is_valid():
    import yaml

    assert yaml.safe_load(documented_panel())["tubes"]["bcell"]["reports"] == {
        "CD19pos": "cd19_per_ul"}


def test_a_labs_panel_runs_end_to_end_without_code_changes(batch):
    root, panels, samples, truth = batch
    result = gate_batch(samples, panels=panels)
    assert result.ok, result.errors
    profiles = result.profiles.set_index("patient_id")
    for patient, (true, tolerance) in truth.items():
        measured = profiles.loc[patient, "cd19_per_ul"]
        assert abs(measured - true) <= tolerance, (patient, measured, true, tolerance)
        assert np.isnan(profiles.loc[patient, "cd19_per_ul_dual"])  # no ALC: no dual count
        assert "MISSING_TUBE" not in profiles.loc[patient, "qc_flags"]
        assert "GATE_UNCERTAIN" not in profiles.loc[patient, "qc_flags"]
    assert set(result.samples["tube"]) == {"bcell"}
    assert set(result.samples["population"]) == {"CD19pos"}
    assert result.run["panels"][0]["tubes"] == ["bcell"]
    assert "bcell" in result.run["templates"]["sha256"]


def test_the_command_line_takes_panels_and_the_report_draws_them(batch, tmp_path):
    root, panels, samples, truth = batch
    out = tmp_path / "out"
    run = CliRunner().invoke(main, ["gate", str(samples), "-o", str(out), "--panels",
                                    str(panels), "-q"])
    assert run.exit_code == 0, run.output
    with open(out / "profiles.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["patient_id"] for r in rows] == ["P1", "P2"]
    assert all(float(r["cd19_per_ul"]) > 0 for r in rows)
    report = CliRunner().invoke(main, ["report", str(out)])
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "CD19pos" in html and "Gating plots not drawn" not in html


def test_the_study_tubes_count_as_before_beside_a_labs_panel(batch):
    sample_data = Path(__file__).resolve().parents[2] / "sample_data"
    _, panels, _, _ = batch
    plain = gate_batch(sample_data, jobs=2)
    beside = gate_batch(sample_data, jobs=2, panels=panels)
    for name in ("populations", "profiles", "samples", "errors"):
        assert beside.tables[name].to_csv() == plain.tables[name].to_csv(), name


def test_without_the_panels_the_tube_is_refused_with_its_markers(batch):
    root, panels, samples, truth = batch
    result = gate_batch(samples)
    assert not result.ok
    reasons = " ".join(result.errors["error"])
    assert "unknown tube 'bcell'" in reasons  # the manifest names a tube no panel has
    assert "CD19" in reasons  # the detected one: its markers named


def test_a_panel_file_with_a_mistake_names_the_file_and_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(documented_panel().replace("cd19_per_ul", "cd19 count"),
                   encoding="utf-8")
    with pytest.raises(PanelError, match=r"bad\.yaml: not a valid panel file: at "
                                         r"tubes/bcell/reports/CD19pos"):
        load_panels([tmp_path])


def test_a_tube_name_defined_twice_is_refused(tmp_path):
    study = (template_dir() / "panels" / "study.yaml").read_text(encoding="utf-8")
    assert "panel: study" in study
    (tmp_path / "a.yaml").write_text(study.replace("panel: study", "panel: copy"),
                                     encoding="utf-8")
    with pytest.raises(PanelError, match="tube 'nk' is also defined by"):
        load_panels([tmp_path])


def test_a_marker_immunoprofile_would_never_find_is_refused(tmp_path):
    (tmp_path / "p.yaml").write_text(documented_panel().replace("PE-A: CD19", "PE-A: CD56"),
                                     encoding="utf-8")
    with pytest.raises(PanelError, match="marker 'CD56' is not how immunoprofile names it"):
        load_panels([tmp_path])


def test_a_lab_file_named_as_a_shipped_panel_replaces_it(tmp_path):
    # a lab keeping the shipped six-colour TBNK panel with its own lymphosum limits: the
    # panel file, named as the shipped one, and its template beside it
    shipped = (template_dir() / "panels" / "tbnk6.yaml").read_text(encoding="utf-8")
    assert "warn: [95, 105]" in shipped
    (tmp_path / "tbnk6.yaml").write_text(shipped.replace("warn: [95, 105]", "warn: [97, 103]"),
                                         encoding="utf-8")
    (tmp_path / "tbnk_tube.xml").write_bytes(
        (adaptive_template_dir() / "tbnk_tube.xml").read_bytes())
    panels = load_panels([tmp_path])
    assert [t for t, p in panels.items() if p.panel == "tbnk6"] == ["tbnk"]
    assert panels["tbnk"].qc.lymphosum_warn == (97, 103)
    assert panels["tbnk"].folder == str(tmp_path.resolve())
    assert panels["cd4"] == load_panels()["cd4"]  # the other panels stay as shipped
    assert list(panels) == list(load_panels())  # and in their order: the study first


def test_a_replaced_panel_keeps_its_place_among_the_panels(tmp_path):
    # the order decides whose limits a patient with tubes of several panels is held to
    (tmp_path / "tbnk4.yaml").write_text(
        (template_dir() / "panels" / "tbnk4.yaml").read_text(encoding="utf-8"),
        encoding="utf-8")
    for name in ("tbnk4_t_tube.xml", "tbnk4_bnk_tube.xml"):
        (tmp_path / name).write_bytes((adaptive_template_dir() / name).read_bytes())
    panels = load_panels([tmp_path])
    assert list(panels) == list(load_panels()) == ["nk", "cd4", "cd8", "tbnk4_t",
                                                   "tbnk4_bnk", "tbnk"]
    assert panels["tbnk4_t"].folder == str(tmp_path.resolve())


def test_two_lab_files_of_one_panel_are_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "p.yaml").write_text(
            documented_panel().replace("bcell:", f"bcell{folder}:"), encoding="utf-8")
    with pytest.raises(PanelError, match="panel 'b_cells' is also defined by"):
        load_panels([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize("qc, message", [
    ("lymphosum: {gates: [CD19pos, Beads]}", "lymphosum gate 'Beads' is not a gate"),
    ("lymphosum: {gates: [CD19pos, CD3pos], warn: [105, 95]}", "low < high"),
    ("lymphosum: {gates: [CD19pos, CD3pos], warn: [80, 120]}",
     "must lie within its fail range [90.0, 110.0] (the default: the file gives none)"),
    ("lymphosum: {gates: [CD19pos, CD3pos], warn: [80, 120], fail: [85, 115]}",
     "warn range [80, 120] must lie within its fail range [85, 115]"),
    ("lymphocyte_events: {warn: 500, fail: 1000}", "the floor must be the lower limit"),
    ("lymphocyte_events: {warn: 500}",
     "fail 1000 (the default: the file gives none) is above warn 500"),
    ("lymphocyte_events: null", "not a valid panel file: at qc/lymphocyte_events"),
])
def test_qc_limits_that_would_mislead_are_refused(tmp_path, qc, message):
    (tmp_path / "p.yaml").write_text(documented_panel() + f"qc:\n  {qc}\n", encoding="utf-8")
    with pytest.raises(PanelError, match=re.escape(message)):
        load_panels([tmp_path])


def test_the_report_quotes_the_limits_of_the_labs_panel(tmp_path):
    # a lab's six-colour TBNK panel with a narrower lymphosum and a higher bead minimum: a
    # SIMULATED tube with ~5,000 bead events and monocytes in the lymphocyte cluster trips
    # both, and the report gives the lab's limits (not the defaults) for them and for the
    # lymphosum's reference column; a tube population's flag names its gate
    from immunoprofile.datasets.cohort import write_listed, write_manifest
    from immunoprofile.datasets.simulate import Layout

    lab = tmp_path / "lab"
    lab.mkdir()
    shipped = (template_dir() / "panels" / "tbnk6.yaml").read_text(encoding="utf-8")
    assert "warn: [95, 105]" in shipped and shipped.rstrip().endswith("fail: [90, 110]}")
    (lab / "tbnk6.yaml").write_text(
        shipped.replace("warn: [95, 105]", "warn: [99, 101]").rstrip()
        + "\n  bead_events: 20000\n", encoding="utf-8")
    (lab / "tbnk_tube.xml").write_bytes((adaptive_template_dir() / "tbnk_tube.xml").read_bytes())
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    patient = PatientSpec("M", 1_500, 800, 400, 200, monocytes_per_ul=60)
    sim = simulate_tube(patient, "tbnk", layout=Layout(monocyte_ssc_ratio=1.3), seed=1)
    write_manifest(data, [write_listed(sim, data)])
    runner = CliRunner()
    gated = runner.invoke(main, ["gate", str(data), "-o", str(out), "-q", "--panels",
                                 str(lab)])
    assert gated.exit_code == 0, gated.output
    with open(out / "profiles.csv", newline="", encoding="utf-8") as handle:
        flags = set(next(csv.DictReader(handle))["qc_flags"].split(";"))
    assert {"LYMPHOSUM_WARNING", "tbnk:LOW_BEAD_EVENTS"} <= flags, flags
    report = runner.invoke(main, ["report", str(out), "--no-plots"])
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "not 99–101 % of the lymphocytes" in html
    assert "not 95–105 %" not in html
    assert "fewer than 20,000 bead events" in html
    assert "<td>99.0–101.0</td>" in html  # the lymphosum's reference column

    # the lab edits its panel file after the run: the report still quotes the limits the
    # flags were raised on (run.json keeps the panels as they were read)
    (lab / "tbnk6.yaml").write_text(shipped, encoding="utf-8")
    report = runner.invoke(main, ["report", str(out), "--no-plots"])
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "not 99–101 % of the lymphocytes" in html and "not 95–105 %" not in html
    assert "fewer than 20,000 bead events" in html


def test_the_cd3_pct_flag_is_described_with_the_limits_of_the_pair_that_raised_it():
    # a patient with the study's tubes and a lab's 4-colour TBNK pair: the CD3 % agreement
    # is checked on the pair's limits, and the report's words quote those, not the study's
    from dataclasses import replace

    from immunoprofile.counting.qc import describe_flag
    from immunoprofile.gating.panels import default_panels
    from immunoprofile.profile.tables import patient_qc

    panels = dict(default_panels())
    for tube in ("tbnk4_t", "tbnk4_bnk"):
        panels[tube] = replace(panels[tube], qc=replace(panels[tube].qc, cd3_pct_points=5.0,
                                                        counting_sds=1.0))
    present = {"nk", "cd4", "cd8", "tbnk4_t", "tbnk4_bnk"}
    qc = patient_qc(present, panels, "CD3_PCT_TUBE_DISAGREEMENT")
    assert (qc.cd3_pct_points, qc.counting_sds) == (5.0, 1.0)
    words = describe_flag("CD3_PCT_TUBE_DISAGREEMENT", qc)
    assert "5 percentage points" in words and "3 percentage points" not in words, words
    assert patient_qc(present, panels) is panels["nk"].qc  # the rest: the first tube's


def test_the_reports_pct_of_lymphocytes_comes_from_the_tube_the_count_comes_from():
    # CD4+ of a patient with a study CD4 tube and a six-colour TBNK tube: the profile's
    # cd4_per_ul is the CD4 tube's (the first in panel order), so is its % of lymphocytes;
    # CD3+ is the mean over the tubes, as cd3_per_ul is
    from types import SimpleNamespace

    from immunoprofile.gating.panels import default_panels
    from immunoprofile.report.html import _Batch

    batch = SimpleNamespace(
        qc_panels=default_panels(), tubes_of={"P": {"cd4", "tbnk"}},
        pct_lymphocytes={("P", "cd4", "CD4pos"): 40.0, ("P", "tbnk", "CD4pos"): 50.0,
                         ("P", "cd4", "CD3pos"): 70.0, ("P", "tbnk", "CD3pos"): 74.0,
                         ("P", "tbnk", "CD8pos"): 20.0})
    shares = _Batch._pct_of_lymphocytes(batch, "P")
    assert shares["cd4_per_ul"] == 40.0 and shares["cd8_per_ul"] == 20.0
    assert shares["cd3_per_ul"] == 72.0


def test_the_default_reference_ranges_passed_back_leave_the_panels_lymphosum_range(tmp_path):
    # a lab's six-colour panel with its own lymphosum warning range: the report holds the
    # lymphosum to it, also when a caller passes the report's own default ranges back
    # (only a range the caller changed replaces it)
    from immunoprofile.datasets.cohort import write_listed, write_manifest
    from immunoprofile.pipeline.assemble import write_results
    from immunoprofile.report.html import REFERENCE_RANGES, TBNK_REFERENCE_RANGES, _Batch

    lab = tmp_path / "lab"
    lab.mkdir()
    shipped = (template_dir() / "panels" / "tbnk6.yaml").read_text(encoding="utf-8")
    (lab / "tbnk6.yaml").write_text(shipped.replace("warn: [95, 105]", "warn: [97, 103]"),
                                    encoding="utf-8")
    (lab / "tbnk_tube.xml").write_bytes((adaptive_template_dir() / "tbnk_tube.xml").read_bytes())
    samples = tmp_path / "samples"
    samples.mkdir()
    sim = simulate_tube(PatientSpec("L", 1_500, 800, 400, 200), "tbnk", seed=2)
    write_manifest(samples, [write_listed(sim, samples)])
    out = tmp_path / "out"
    write_results(gate_batch(samples, panels=[lab]), out)

    def lymphosum_range(ranges):
        batch = _Batch(out, samples_dir=None, manifest=None, templates=None, plots=False,
                       ranges=ranges, notes=None, gating=None)
        row = next(batch.profiles.itertuples(index=False))
        return batch._values(row)[list(batch.ranges).index("lymphosum_pct")][3:5]

    assert lymphosum_range(None) == (97, 103)
    assert lymphosum_range({**REFERENCE_RANGES, **TBNK_REFERENCE_RANGES}) == (97, 103)
    own = {**REFERENCE_RANGES, **TBNK_REFERENCE_RANGES,
           "lymphosum_pct": ("Lymphosum", 96.0, 104.0, "%")}
    assert lymphosum_range(own) == (96.0, 104.0)


def test_shipped_panel_files_follow_the_schema(tmp_path):
    """Every shipped panel file follows the schema, and reads as a lab's file would."""
    import jsonschema
    import yaml

    from immunoprofile.gating.panel_files import (
        panel_schema_path,
        read_panel_file,
        shipped_panel_dir,
    )

    schema = yaml.safe_load(panel_schema_path().read_text(encoding="utf-8"))
    files = sorted(shipped_panel_dir().glob("*.yaml"))
    assert files
    for path in files:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
        checked = read_panel_file(path)
        assert [p.tube for p in checked] == [p.tube for p in read_panel_file(path,
                                                                           shipped=True)]


def test_an_edited_panel_file_is_read_again(tmp_path):
    """A lab's panel file edited between two loads is read again (its content is hashed),
    even with its modification time put back."""
    import os

    folder = tmp_path / "panels"
    folder.mkdir()
    (folder / "lab.yaml").write_text(documented_panel(), encoding="utf-8")
    stat = (folder / "lab.yaml").stat()
    first = load_panels([folder])
    bad = documented_panel() + "\nnot_a_key: 1\n"
    (folder / "lab.yaml").write_text(bad, encoding="utf-8")
    os.utime(folder / "lab.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(PanelError, match="lab.yaml: not a valid panel file"):
        load_panels([folder])
    assert first
