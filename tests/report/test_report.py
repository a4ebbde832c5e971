"""Gating plots that match their gates, and a self-contained HTML report that opens in a
headless browser with every image loaded."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as MplPath

from immunoprofile.report import plot_gates, write_report

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "sample_data"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "results"
    assert run_cli("gate", SAMPLE_DATA, "-o", out, "-q").returncode == 0
    assert run_cli("predict", out, "-o", out / "predictions.csv").returncode == 0
    return out


@pytest.fixture(scope="module")
def report(gated) -> Path:
    return write_report(gated)


def _check_plot(plot, populations: pd.DataFrame, sample_id: str) -> None:
    lo_x, hi_x = plot.xlim
    lo_y, hi_y = plot.ylim
    outline = plot.outline
    assert np.isfinite(outline).all(), plot.gate_id
    # The gate lies on the plotted axes (with a hair of tolerance for the outline's width).
    tol_x, tol_y = 1e-9 * (hi_x - lo_x), 1e-9 * (hi_y - lo_y)
    assert (outline[:, 0] >= lo_x - tol_x).all() and (outline[:, 0] <= hi_x + tol_x).all()
    assert (outline[:, 1] >= lo_y - tol_y).all() and (outline[:, 1] <= hi_y + tol_y).all()
    # What is drawn inside the outline is what the engine counted in the gate.
    if plot.y.size:
        inside = MplPath(outline).contains_points(np.column_stack([plot.x, plot.y]))
    else:
        inside = (plot.x >= outline[:, 0].min()) & (plot.x < outline[:, 0].max())
    agree = np.mean(inside == plot.in_gate)
    assert agree > 0.999, (sample_id, plot.gate_id, agree)
    # Most parent events are on screen, so the picture shows the population gated.
    on_screen = (plot.x >= lo_x) & (plot.x <= hi_x)
    if plot.y.size:
        on_screen &= (plot.y >= lo_y) & (plot.y <= hi_y)
    assert on_screen.mean() > 0.99, (sample_id, plot.gate_id)
    # The count in the corner is the count in populations.csv.
    row = populations[(populations.sample_id == sample_id)
                      & (populations.population == plot.gate_id)]
    assert int(row.events.iloc[0]) == plot.events
    assert int(row.parent_events.iloc[0]) == plot.parent_events
    assert plot.png[:8] == b"\x89PNG\r\n\x1a\n"
    _check_svg(plot)


def _check_svg(plot) -> None:
    """The report's SVG drawing: well-formed, the red outline where the gate is (mapped
    back from pixels to the plot's units), the density embedded for a 2-D gate."""
    import xml.etree.ElementTree as ET

    from immunoprofile.report.plot_svg import AREA, RED

    svg = ET.fromstring(plot.svg)
    ns = "{http://www.w3.org/2000/svg}"
    red = [e for e in svg.iter(f"{ns}polyline") if e.get("stroke") == RED]
    assert len(red) == 1, plot.gate_id
    points = np.array([[float(v) for v in pair.split(",")]
                       for pair in red[0].get("points").split()])
    left, top, right, bottom = AREA
    (x0, x1), (y0, y1) = plot.xlim, plot.ylim
    x = x0 + (points[:, 0] - left) / (right - left) * (x1 - x0)
    assert np.allclose(x, plot.outline[:, 0], atol=0.01 * (x1 - x0)), plot.gate_id
    if plot.y.size:
        y = y0 + (bottom - points[:, 1]) / (bottom - top) * (y1 - y0)
        assert np.allclose(y, plot.outline[:, 1], atol=0.01 * (y1 - y0)), plot.gate_id
        images = list(svg.iter(f"{ns}image"))
        assert len(images) == 1 and images[0].get("href").startswith("data:image/png;base64,")
    texts = " ".join(t.text or "" for t in svg.iter(f"{ns}text"))
    assert f"{plot.events:,} events" in texts and plot.gate_id in texts


@pytest.mark.slow
def test_gating_plots_of_sample_data_match_their_gates(gated):
    populations = pd.read_csv(gated / "populations.csv")
    manifest = pd.read_csv(SAMPLE_DATA / "manifest.csv")
    seen = 0
    for row in manifest.itertuples():
        plots = plot_gates(SAMPLE_DATA / row.file, tube=row.tube)
        assert [p.gate_id for p in plots][:3] == ["Beads", "Singlets", "Lymphocytes"]
        for plot in plots:
            _check_plot(plot, populations, Path(row.file).stem)
            seen += 1
    assert seen == 18 * 5


def test_plot_command_writes_one_png_per_gate(tmp_path):
    result = run_cli("plot", SAMPLE_DATA / "P01_cd4.fcs", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == sorted(f"P01_cd4_{g}.png" for g in
                           ("Beads", "Singlets", "Lymphocytes", "CD3pos", "CD4pos"))
    bad = tmp_path / "bad.fcs"
    bad.write_bytes(b"not an FCS file at all" * 10)
    result = run_cli("plot", bad, "-o", tmp_path / "bad")
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_report_is_self_contained(report, gated):
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # No network: every image is embedded, nothing is fetched.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == 18 * 5
    # the gating plots as SVG drawings (their densities embedded in them as PNG)
    assert all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    profiles = pd.read_csv(gated / "profiles.csv")
    for pid in profiles.patient_id:
        assert f"Patient {pid}" in text
    assert "TFR grade ≥ 2 risk" in text and "bootstrap 95 % range" in text
    # QC flags in words: the profile's "nk:LOW_POPULATION_EVENTS" becomes a sentence.
    flags = ";".join(profiles.qc_flags.fillna(""))
    if "nk:LOW_POPULATION_EVENTS" in flags:
        assert "<b>LOW_POPULATION_EVENTS</b> — nk tube: the tube&#x27;s reported" in text
    assert "Simulated data" in text and "Research use only" in text


def test_report_needs_a_gate_output_folder(tmp_path):
    result = run_cli("report", tmp_path)
    assert result.returncode == 2  # a missing input, as in every command
    assert "no run.json" in result.stderr and "Traceback" not in result.stderr
    assert "Usage:" not in result.stderr


CHECK_IMAGES = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", ok.length + "/" + images.length);
});
</script></body>"""


def test_report_opens_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian's chromium package; .ci/run "
                    "installs it)")
    page = tmp_path / "report.html"
    page.write_text(report.read_text().replace("</body>", CHECK_IMAGES))
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    match = re.search(r'data-images="(\d+)/(\d+)"', result.stdout)
    assert match, "the page did not finish loading"
    loaded, total = map(int, match.groups())
    assert total == 18 * 5 and loaded == total


class _Text(HTMLParser):
    """Every piece of visible text and every attribute value of a page (embedded images'
    data left out: base64 may spell anything)."""

    def __init__(self):
        super().__init__()
        self.pieces: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.pieces += [v for _, v in attrs if v and not v.startswith("data:image/")]

    def handle_data(self, data):
        self.pieces.append(data)


EMPTY_WORDS = re.compile(r"\b(nan|NaN|NAN|None|null|undefined)\b")


def _empty_words(html_text: str) -> list[str]:
    parser = _Text()
    parser.feed(html_text)
    return [piece.strip() for piece in parser.pieces if EMPTY_WORDS.search(piece)]


def test_report_of_sample_data_says_no_nan_or_none(report):
    text = report.read_text()
    assert "no flags" in text  # patients without flags (an empty qc_flags cell)
    assert _empty_words(text) == []


def test_report_with_a_failed_and_a_missing_tube_says_no_nan_or_none(tmp_path, small_cohort):
    """A tube that cannot be read and a patient without a CD8 tube: empty cells everywhere
    (counts, ratio, flags, predictions), none of them written as nan or None."""
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    data = (folder / "P01_nk.fcs").read_bytes()
    (folder / "P01_nk.fcs").write_bytes(data[: len(data) // 3])  # truncated
    manifest = folder / "manifest.csv"
    rows = [r for r in manifest.read_text().splitlines() if not r.startswith("P02_cd8")]
    manifest.write_text("\n".join(rows) + "\n")
    (folder / "P02_cd8.fcs").unlink()
    for tube in ("nk", "cd4", "cd8"):  # and a patient whose profile raises no flag
        shutil.copy(SAMPLE_DATA / f"P01_{tube}.fcs", folder / f"P09_{tube}.fcs")
        rows.append(f"P09_{tube}.fcs,P09,{tube},50000,50,2.43")
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "results"
    assert run_cli("gate", folder, "-o", out, "-q").returncode == 1
    assert run_cli("predict", out, "-o", out / "predictions.csv",
                   "--allow-missing").returncode == 0
    result = run_cli("report", out)
    assert result.returncode == 0, result.stderr
    text = (out / "report.html").read_text()
    assert "MISSING_TUBE" in text and "Failures" in text and "no flags" in text
    assert _empty_words(text) == []


def test_report_from_another_folder_finds_the_tubes(tmp_path, small_cohort):
    """gate run with relative paths; report run from elsewhere still draws every tube; with
    the tubes gone it draws them from the views the run binned, and without those it says
    so — exit 1, on the terminal and in the page."""
    work = tmp_path / "lab"
    shutil.copytree(small_cohort, work / "batch")
    gated = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "gate", "batch", "-o",
                            "results", "-q"], cwd=work, capture_output=True, text=True,
                           timeout=600)
    assert gated.returncode == 0, gated.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "report",
                             work / "results"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (work / "results" / "report.html").read_text().count("<details>") == 6

    (work / "batch").rename(work / "moved")
    result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "report",
                             work / "results"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr  # drawn from OUT/gates/*.views.npz
    assert (work / "results" / "report.html").read_text().count("<details>") == 6

    for views in (work / "results" / "gates").glob("*.views.npz"):
        views.unlink()  # as a run of an earlier version left them
    result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "report",
                             work / "results"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "warning: gating plots not drawn: the FCS files cannot be found" in result.stderr
    page = (work / "results" / "report.html").read_text()
    assert "Gating plots not drawn" in page and "--samples" in page
    result = run_cli("report", work / "results", "--samples", work / "moved")
    assert result.returncode == 0, result.stderr
    assert (work / "results" / "report.html").read_text().count("<details>") == 6


def test_report_draws_the_gates_the_run_placed(tmp_path, small_cohort, monkeypatch):
    """The report draws each tube's gates from the run's files (``OUT/gates/*.xml`` and
    ``gates.csv``), the gates that were counted, not placed a second time: with placing
    made impossible every plot is still drawn, and a gate moved in the file moves in the
    plot."""
    from immunoprofile.gating import adaptive_gating
    from immunoprofile.report.html import build_report

    out = tmp_path / "out"
    assert run_cli("gate", small_cohort, "-o", out, "-q").returncode == 0

    def refuse(*args, **kwargs):
        raise AssertionError("the report placed the gates again")

    monkeypatch.setattr(adaptive_gating, "place_tube", refuse)
    notes: list[str] = []
    html = build_report(out, cohort_stats=False, notes=notes)
    assert not notes and html.count("<img") >= 6 * 5

    gates = pd.read_csv(out / "gates.csv")
    sample = gates.sample_id.iloc[0]
    reports = [adaptive_gating.GatePlacement(r.gate, r.method, r.status)
               for r in gates[gates.sample_id == sample].itertuples()]
    text = (out / "gates" / f"{sample}.xml").read_text(encoding="utf-8")
    fcs = small_cohort / f"{sample}.fcs"
    before = {p.gate_id: p.events for p in plot_gates(
        fcs, placement=adaptive_gating.placement_from_run(text, reports))}
    cd3 = [g for g in adaptive_gating.placement_from_run(text, reports).gates
           if g.gate_id == "CD3pos"][0]
    lo = cd3.bounds[0][0]
    moved = text.replace(f'gating:min="{lo!r}"', f'gating:min="{lo * 4!r}"')
    assert moved != text
    after = {p.gate_id: p.events for p in plot_gates(
        fcs, placement=adaptive_gating.placement_from_run(moved, reports))}
    assert after["CD3pos"] < before["CD3pos"] and after["Beads"] == before["Beads"]


def test_the_reports_plots_are_drawn_from_the_views_the_run_binned(tmp_path, small_cohort,
                                                                   monkeypatch):
    """A gate run bins every placed gate's parent on the gate's axes
    (``OUT/gates/<sample_id>.views.npz``); the report draws from those without reading an
    FCS file, and — on tubes small enough that placement saw every event — they are the
    plots drawn from the file itself: the same axes, density, outlines and counts."""
    from immunoprofile.gating.gate_views import unpack_views
    from immunoprofile.io import fcs
    from immunoprofile.report.gating_plots import plots_from_views
    from immunoprofile.report.html import build_report

    out = tmp_path / "out"
    assert run_cli("gate", small_cohort, "-o", out, "-q").returncode == 0
    populations = pd.read_csv(out / "populations.csv")
    for path in sorted(small_cohort.glob("*.fcs")):
        sample = path.stem
        views = unpack_views((out / "gates" / f"{sample}.views.npz").read_bytes())
        rows = populations[populations.sample_id == sample]
        counts = {r.population: (r.events, r.parent_events) for r in rows.itertuples()}
        from_views = plots_from_views(views, counts)
        from_file = plot_gates(path)
        assert [p.gate_id for p in from_views] == [p.gate_id for p in from_file]
        for a, b in zip(from_views, from_file, strict=True):
            assert a.events == b.events and a.parent_events == b.parent_events
            assert a.spec.label == b.spec.label and a.spec.title == b.spec.title
            np.testing.assert_allclose(a.xlim, b.xlim, rtol=1e-12)
            np.testing.assert_allclose(a.ylim, b.ylim, rtol=1e-12)
            np.testing.assert_array_equal(a.spec.density, b.spec.density)
            np.testing.assert_allclose(a.outline, b.outline, rtol=1e-9, atol=1e-12)
            assert a.spec.x_label == b.spec.x_label and a.spec.corner == b.spec.corner

    def unread(*args, **kwargs):
        raise AssertionError("the report read an FCS file")

    monkeypatch.setattr(fcs, "read_tube", unread)
    notes: list[str] = []
    html = build_report(out, cohort_stats=False, notes=notes)
    assert not notes and html.count("<details>") == len(list(small_cohort.glob("*.fcs")))

    damaged = out / "gates" / f"{sorted(small_cohort.glob('*.fcs'))[0].stem}.views.npz"
    damaged.write_bytes(b"not a zip")
    notes = []
    build_report(out, cohort_stats=False, notes=notes)
    assert len(notes) == 1 and damaged.name in notes[0] and "gate again" in notes[0], notes


def test_gate_plot_shows_as_an_image_in_a_notebook():
    plot = plot_gates(SAMPLE_DATA / "P01_cd4.fcs")[0]
    text = repr(plot)
    assert len(text) < 300 and ".png" in text and ".svg" in text and "\\x89" not in text, text
    assert plot.gate_id in text and f"{plot.events:,}" in text
    assert plot._repr_png_() == plot.png and plot.png[:4] == b"\x89PNG"


def test_a_large_batch_report_is_paged_with_a_summary_first(gated, tmp_path, monkeypatch):
    """Beyond PATIENTS_PER_PAGE patients: report.html holds the summary and one linked
    row per patient, the pages hold the sections and plots; a smaller batch later gets one
    file again and the old pages go."""
    from immunoprofile.report import html as report_html

    out = tmp_path / "results"
    shutil.copytree(gated, out)
    profiles = pd.read_csv(out / "profiles.csv", dtype={"patient_id": str})
    monkeypatch.setattr(report_html, "PATIENTS_PER_PAGE", 4)
    path = write_report(out)
    main = path.read_text()
    pages = sorted((out / "report_pages").glob("patients-*.html"))
    assert [p.name for p in pages] == ["patients-0001.html", "patients-0002.html"]
    assert "data:image/" not in main  # no gating plots in the summary
    assert "This report is paged" in main and "MB of pages" in main
    links = re.findall(r'<a href="(report_pages/patients-\d{4}\.html)#(patient-\d+)">([^<]+)</a>',
                       main)
    assert [pid for _, _, pid in links] == list(profiles.patient_id)
    for page, anchor, pid in links:
        text = (out / page).read_text()
        assert f'<h3 id="{anchor}">Patient {pid}</h3>' in text
        assert text.count("<h3 id=") <= 4 and "data:image/svg+xml" in text
    # every tube's plots are on the page of its patient
    assert sum(p.read_text().count("<details>") for p in pages) == 18
    # drawn by two processes, the pages are the same (the workers page as the parent does)
    texts = [p.read_text() for p in pages]
    assert write_report(out, jobs=2).read_text() == main
    assert [p.read_text() for p in pages] == texts
    monkeypatch.setattr(report_html, "PATIENTS_PER_PAGE", 50)
    one = write_report(out).read_text()
    assert not list((out / "report_pages").glob("patients-*.html"))
    assert one.count("<details>") == 18 and 'href="#patient-1"' in one


def test_report_summary_table_marks_flags_and_values(tmp_path, gated):
    out = tmp_path / "results"
    shutil.copytree(gated, out)
    profiles = pd.read_csv(out / "profiles.csv", dtype={"patient_id": str},
                           keep_default_na=False)
    profiles.loc[0, "qc_flags"] = "LOW_BEAD_EVENTS"
    profiles.loc[1, "cd4_per_ul"] = 5.0
    profiles.to_csv(out / "profiles.csv", index=False)
    text = build_report_text(out)
    table = text.split("<h2>Patients at a glance</h2>")[1].split("</table>")[0]
    rows = table.split("<tr")[2:]
    assert len(rows) == len(profiles)
    assert rows[0].startswith(' class="flagged"') and "LOW_BEAD_EVENTS" in rows[0]
    assert '<td class="low">5 cells/µL</td>' in rows[1]
    for row, flags in zip(rows, profiles.qc_flags, strict=True):
        assert row.startswith(' class="flagged"') == bool(flags), row


def build_report_text(out: Path) -> str:
    from immunoprofile.report.html import build_report

    return build_report(out, plots=False, cohort_stats=False)


def test_report_links_each_row_to_its_own_section_when_ids_repeat(tmp_path, gated,
                                                                   monkeypatch):
    """Sections are found by position: a hand-edited profiles.csv that repeats an id loses
    no page and links no row to another row's section."""
    from immunoprofile.report import html as report_html

    out = tmp_path / "results"
    shutil.copytree(gated, out)
    profiles = pd.read_csv(out / "profiles.csv", dtype={"patient_id": str})
    profiles["patient_id"] = ["A", "B", "C", "D", "A", "F"]
    profiles.to_csv(out / "profiles.csv", index=False)
    monkeypatch.setattr(report_html, "PATIENTS_PER_PAGE", 3)
    main = write_report(out, plots=False).read_text()
    links = re.findall(r'<a href="(report_pages/patients-\d{4}\.html)#(patient-\d+)">([^<]+)</a>',
                       main)
    assert [pid for *_, pid in links] == ["A", "B", "C", "D", "A", "F"]
    assert len({(page, anchor) for page, anchor, _ in links}) == 6
    for page, anchor, pid in links:
        assert f'<h3 id="{anchor}">Patient {pid}</h3>' in (out / page).read_text()


def test_a_tube_without_views_whose_file_is_gone_is_named(tmp_path, small_cohort):
    """Views for all tubes but one, and the FCS files moved away: the others are drawn from
    their views, the one is named as not drawn (not left out in silence)."""
    from immunoprofile.report.html import build_report

    out = tmp_path / "out"
    assert run_cli("gate", small_cohort, "-o", out, "-q").returncode == 0
    first = sorted(small_cohort.glob("*.fcs"))[0].stem
    (out / "gates" / f"{first}.views.npz").unlink()
    moved = tmp_path / "moved"
    small_cohort.rename(moved)
    try:
        notes: list[str] = []
        html = build_report(out, cohort_stats=False, notes=notes)
    finally:
        moved.rename(small_cohort)
    assert len(notes) == 1 and first in notes[0], notes
    assert "Gating plots not drawn for 1 of" in html
    assert html.count("<details>") == len(list(small_cohort.glob("*.fcs"))) - 1
    assert first in html


def test_a_view_binned_from_a_subsample_says_how_many_events_it_shows():
    from immunoprofile.gating.gate_views import GateView
    from immunoprofile.report.gating_plots import _spec

    view = GateView(gate_id="CD3pos", title="CD3pos", parent_id="Lymphocytes",
                    x_label="CD3", y_label="events", xlim=(0.0, 1.0), ylim=(0.5, 10.0),
                    x_ticks=None, y_ticks=None, density=np.ones(128, dtype=np.int64),
                    outline=np.zeros((5, 2)), seed_outline=None, corner=(0.98, 0.98),
                    binned_events=3_000)
    spec = _spec(view, 12_000, 30_000)
    assert "plotted: 3,000 of 30,000" in spec.label and spec.y_label == "events plotted"
    whole = _spec(view, 1_200, 3_000)
    assert "plotted" not in whole.label and whole.y_label == "events"


def test_views_binned_for_other_gates_are_not_drawn(tmp_path, small_cohort):
    """A views file names the placed gates it was binned with: one beside another tube's
    (or another run's) gates, though its gate IDs are the same, is refused, by name."""
    from immunoprofile.report.html import build_report

    out = tmp_path / "out"
    assert run_cli("gate", small_cohort, "-o", out, "-q").returncode == 0
    cd4 = sorted(p.stem for p in small_cohort.glob("*_cd4.fcs"))
    (out / "gates" / f"{cd4[1]}.views.npz").write_bytes(
        (out / "gates" / f"{cd4[0]}.views.npz").read_bytes())
    notes: list[str] = []
    build_report(out, cohort_stats=False, notes=notes)
    assert len(notes) == 1 and f"{cd4[1]}.views.npz" in notes[0] \
        and "another run" in notes[0], notes
