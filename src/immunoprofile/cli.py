"""The ``immunoprofile`` command: a thin shell over the Python API.

Exit status, the same in every command: 0 when everything succeeded; 1 when some samples
failed (tubes, patients, plots: each said in an ``error:`` line naming its file, the rest
complete); 2 when the command could not start — a bad option (click shows the usage), or
an input that is missing or unusable as a whole, or an output that cannot be written (one
``error:`` line naming the file, no usage text, and no output folder left behind).
``tables`` and ``check-errors --summary``, workflow steps, exit 0 with failed tubes so the
workflow goes on; its last step reports them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from ._version import __version__
from .errors import ImmunoprofileError
from .gating.modes import ENGINES, GATING_MODES

EXIT_SAMPLES_FAILED = 1
EXIT_USAGE = 2


class _InputError(click.ClickException):
    """An input that is missing or cannot be used, or an output that cannot be written:
    one line naming the file, exit 2, and no usage text (the call was not the problem)."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Path(click.Path):
    """``click.Path`` whose complaints (a file that does not exist, a folder where a file
    belongs) are input errors: one line, exit 2, no usage text."""

    def fail(self, message: str, param=None, ctx=None):
        name = param.get_error_hint(ctx) if param is not None and ctx is not None else "path"
        raise _InputError(f"{name}: {message[:1].lower()}{message[1:]}")


def _input_error(exc: ImmunoprofileError) -> _InputError:
    """A user's input error as an exit-2 line (the command could not start its work)."""
    from .errors import first_line

    return _InputError(first_line(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="immunoprofile")
def main() -> None:
    """Immune profiles of CLL blood from flow-cytometry tubes: NK, CD4+ and CD8+ T cells
    per µL and the CD4/CD8 ratio."""


def _allow_kernel_builds(quiet: bool) -> None:
    """Let this command compile missing kernels ahead of time (once per machine), so that
    later runs start without Numba (see :mod:`immunoprofile._compile.aot`)."""
    from ._compile import aot as _aot

    _aot.allow_builds(None if quiet else lambda message: click.echo(f"note: {message}",
                                                                    err=True))


@contextlib.contextmanager
def _output_folder(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` for a command, failing first (exit 2) when it cannot be written;
    when the command then stops on an error, the folders it created and left empty are
    removed again, so a run refused at the start leaves nothing behind."""
    import tempfile

    created = None  # the topmost folder this command creates
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            break
        created = folder
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        _remove_empty_folders(created)
        raise _InputError(f"cannot write results to {out_dir}: {exc.strerror or exc}") \
            from None
    try:
        yield
    except BaseException:
        _remove_empty_folders(created)
        raise


def _remove_empty_folders(top: Path | None) -> None:
    """Remove ``top`` and the folders below it that hold no file (never a file)."""
    if top is None or not top.is_dir():
        return
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _error_lines(files: Sequence[str], errors: Sequence[str],
                 manifest: str | None = None) -> list[str]:
    """One console line per failed file, each naming the file it is about (the reasons of
    errors.csv say ``manifest.csv``; the console names the manifest by its path)."""
    import re

    lines = []
    for file, error in zip(files, errors, strict=True):
        error = str(error)
        if manifest and Path(manifest).name != str(manifest):
            error = re.sub(rf"(?<![\w/\\.-]){re.escape(Path(manifest).name)}\b",
                           lambda _: str(manifest), error, count=1)
        named = file and (str(file) in error or Path(str(file)).name in error)
        lines.append(f"error: {error}" if named else f"error: {file}: {error}")
    return lines


def _failed_summary(files: Sequence[str], errors_csv: Path) -> str:
    """The last line of a run with failures: how many, which, and where the reasons are."""
    shown = ", ".join(str(f) for f in files[:5]) + (f" and {len(files) - 5} more"
                                                    if len(files) > 5 else "")
    return (f"{len(files)} file(s) failed ({shown}) — reasons in {errors_csv}; every other "
            "result is written")


def _panels_option(func):
    """``--panels DIR`` (repeatable): folders of a lab's own panel files."""
    return click.option(
        "--panels", "panels", multiple=True,
        type=_Path(exists=True, file_okay=False, path_type=Path),
        help="Folder of a lab's own panel files (YAML/JSON, see gating/README.md, Panels), "
             "beside the shipped panels; the manifest's tube column may name their tubes. "
             "Repeatable.")(func)


@main.command()
@click.argument("samples_dir", type=_Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=_Path(file_okay=False, path_type=Path),
              required=True, help="Folder for populations.csv, profiles.csv, samples.csv, "
                                  "errors.csv and run.json.")
@click.option("--manifest", type=_Path(dir_okay=False, path_type=Path), default=None,
              help="Manifest CSV (default: SAMPLES_DIR/manifest.csv).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tubes gated side by side (threads for the compiled engine, processes "
                   "for FlowKit).")
@click.option("--templates", type=_Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of Gating-ML templates to use instead of the "
                                 "shipped ones (nk_tube.xml, cd4_tube.xml, cd8_tube.xml).")
@click.option("--engine", type=click.Choice(ENGINES), default="compiled",
              show_default=True,
              help="Gating engine: the compiled Numba engine, or FlowKit (the reference).")
@click.option("--gating", type=click.Choice(GATING_MODES), default="adaptive",
              show_default=True,
              help="adaptive: place each gate from the tube's own events (the shipped "
                   "adaptive templates, or --templates that declare it); fixed: every gate "
                   "where its template puts it.")
@click.option("--keep-keywords", is_flag=True,
              help="Copy each file's FCS TEXT keywords into samples.csv. They often hold "
                   "names, record numbers or dates of birth: off by default.")
@click.option("--no-resume", is_flag=True,
              help="Gate every tube again, even those a stopped run already finished.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@_panels_option
def gate(samples_dir: Path, out_dir: Path, manifest: Path | None, jobs: int,
         templates: Path | None, engine: str, gating: str, keep_keywords: bool,
         no_resume: bool, quiet: bool, panels: tuple[Path, ...] = ()) -> None:
    """Gate and count every tube in SAMPLES_DIR listed in its manifest."""
    with _output_folder(out_dir):
        result = _gate_into(out_dir, samples_dir, manifest, jobs, templates, engine,
                            keep_keywords, no_resume, quiet, gating, panels)
    if not quiet:
        run = result.run["samples"]
        resumed = f", {run['resumed']} kept from the stopped run" if run["resumed"] else ""
        click.echo(f"{run['counted']} tubes counted{resumed}, "
                   f"{len(result.tables['profiles'])} patients, {run['failed']} failed — "
                   f"results in {out_dir}", err=True)
    if not result.ok:
        errors = result.tables["errors"]
        for line in _error_lines(errors["file"], errors["error"],
                                 result.run.get("manifest", {}).get("path")):
            click.echo(line, err=True)
        click.echo(_failed_summary(errors["file"], out_dir / "errors.csv"), err=True)
        sys.exit(EXIT_SAMPLES_FAILED)


def _gate_into(out_dir: Path, samples_dir: Path, manifest: Path | None, jobs: int,
               templates: Path | None, engine: str, keep_keywords: bool, no_resume: bool,
               quiet: bool, gating: str = "adaptive", panels: Sequence[Path] = ()):
    """The body of ``gate``: gate the batch and write its tables into ``out_dir``."""
    import shutil

    from .io.lock import OutputLock
    from .pipeline.assemble import write_results
    from .pipeline.batch import gate_batch

    _allow_kernel_builds(quiet)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="gating tubes", file=sys.stderr)
            bar.__enter__()
        bar.update(1)

    resume_dir = out_dir / ".work" / "resume"  # not .work/tubes: the workflow's
    try:
        with OutputLock(out_dir) as lock:
            if no_resume:  # only once the folder is ours
                shutil.rmtree(resume_dir, ignore_errors=True)
            if lock.took_over is not None and not quiet:
                click.echo(f"note: the previous run (pid {lock.took_over}) stopped without "
                           "finishing; resuming", err=True)
            try:
                result = gate_batch(samples_dir, manifest, jobs=jobs, templates=templates,
                                    engine=engine, progress=progress,
                                    keep_keywords=keep_keywords, resume_dir=resume_dir,
                                    gating=gating, panels=list(panels) or None)
            finally:
                if bar is not None:
                    bar.__exit__(None, None, None)
            try:
                write_results(result, out_dir)
            except OSError as exc:
                click.echo(f"error: cannot write results to {out_dir}: "
                           f"{exc.strerror or exc}", err=True)
                sys.exit(EXIT_SAMPLES_FAILED)
            shutil.rmtree(resume_dir, ignore_errors=True)  # done: nothing left to resume
            with contextlib.suppress(OSError):
                resume_dir.parent.rmdir()  # .work, when nothing else lives there
    except ImmunoprofileError as exc:
        raise _input_error(exc) from None
    return result


@main.command()
@click.argument("out_dir", type=_Path(file_okay=False, path_type=Path))
@click.option("--events", type=click.IntRange(min=100), default=25_000, show_default=True,
              help="Events per tube.")
@click.option("--seed", type=int, default=2026, show_default=True, help="Random seed.")
@click.option("--beads-per-test", type=click.FloatRange(min=0), default=50_000.0,
              show_default=True, help="Counting beads per tube.")
@click.option("--volume-ul", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True, help="Most blood stained per tube, µL (less for "
                                      "patients with lymphocytosis, as labs dilute).")
@click.option("--other-cytometer", is_flag=True,
              help="Acquire on randomly set-up instruments (gains ±0.15 decade, spillover "
                   "across its realistic range).")
@click.option("--envelope", type=click.IntRange(min=1), default=None, metavar="N",
              help="Instead of the cohort, N random patients across the layout envelope "
                   "(gains ±0.5 decade, beads anywhere, dim CLL CD45, ...), each acquired on "
                   "its own instrument; 30,000 events per tube unless --events is given.")
@click.option("--panel", type=click.Choice(["study", "tbnk6", "tbnk4"]), default="study",
              show_default=True,
              help="Each patient's tubes: the study's NK, CD4 and CD8 tubes; the BD "
                   "Multitest 6-colour TBNK tube; or the 4-colour TBNK pair.")
@click.pass_context
def simulate(ctx: click.Context, out_dir: Path, events: int, seed: int, beads_per_test: float,
             volume_ul: float, other_cytometer: bool, envelope: int | None,
             panel: str) -> None:
    """Write a SIMULATED cohort (6 CLL patients × NK, CD4, CD8 tubes, or the tubes of
    --panel) with truth files and manifest.csv into OUT_DIR; with --envelope N, N random
    patients across the layout envelope instead."""
    if envelope is not None:
        given = [f"--{name.replace('_', '-')}" for name in ("beads_per_test", "volume_ul")
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        given += ["--other-cytometer"] if other_cytometer else []
        if given:
            raise click.UsageError(f"--envelope draws beads, blood volume and instrument "
                                   f"for every case itself: drop {', '.join(given)}")
        if ctx.get_parameter_source("events") is click.core.ParameterSource.DEFAULT:
            events = 30_000
    from .datasets.cohort import write_cohort
    from .datasets.envelope import write_envelope

    with _output_folder(out_dir):
        try:
            if envelope is None:
                manifest = write_cohort(out_dir, events=events, seed=seed,
                                        beads_per_test=beads_per_test, volume_ul=volume_ul,
                                        other_cytometer=other_cytometer, panel=panel)
            else:
                manifest = write_envelope(out_dir, envelope, seed=seed, events=events,
                                          panel=panel)
        except OSError as exc:
            raise _InputError(f"cannot write the cohort to {out_dir}: "
                              f"{exc.strerror or exc}") from None
    if envelope is None:
        click.echo(f"simulated cohort written: {manifest}", err=True)
    else:
        from .datasets.cohort import panel_tubes

        n_tubes = len(panel_tubes(panel))
        click.echo(f"simulated envelope cases written ({envelope} patients × {n_tubes} "
                   f"tube{'s' if n_tubes != 1 else ''}): {manifest}", err=True)


def _fail(exc: ImmunoprofileError) -> None:
    """Report a user's error in one line and exit 1: the inputs were there, and what is in
    them cannot be used (a bad row, a tampered model, an unreadable tube)."""
    from .errors import first_line

    click.echo(f"error: {first_line(exc)}", err=True)
    sys.exit(EXIT_SAMPLES_FAILED)


@main.command("cohort-stats")
@click.argument("cohort_csv", type=_Path(exists=True, dir_okay=False, allow_dash=True,
                                          path_type=Path))
@click.option("-o", "--out", "out_dir", type=_Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the tables (CSV, Markdown) and figures (PNG).")
@click.option("--profiles", type=_Path(exists=True, path_type=Path), default=None,
              help="profiles.csv (or the output folder) of immunoprofile gate, joined on "
                   "patient_id for the immune-marker tables.")
@click.option("--reference", is_flag=True,
              help="Ignore COHORT_CSV's contents and use the built-in SIMULATED reference "
                   "cohort (pass - as COHORT_CSV).")
def cohort_stats(cohort_csv: Path, out_dir: Path, profiles: Path | None,
                 reference: bool) -> None:
    """The study's statistics on a cohort: Table 2 (groups A vs B), TFR risk factors,
    immune markers by TFR grade (Figure 2) and CR by TFR grade (Figure 3)."""
    from .report.cohort_stats_files import write_cohort_stats
    from .study.cohort import IMMUNE_COLUMNS, join_profiles, read_cohort, read_profiles
    from .study.reference_cohort import reference_cohort

    with _output_folder(out_dir):
        try:
            cohort = reference_cohort() if reference else read_cohort(cohort_csv)
            if profiles is not None:
                if any(c in cohort.columns for c in IMMUNE_COLUMNS):
                    click.echo("note: the cohort has its own immune columns; profiles not "
                               "joined", err=True)
                else:
                    cohort = join_profiles(cohort, read_profiles(profiles))
            written = write_cohort_stats(cohort, out_dir)
        except ImmunoprofileError as exc:
            _fail(exc)
    click.echo(f"{len(cohort)} patients — wrote {', '.join(p.name for p in written.values())} "
               f"in {out_dir}", err=True)


@main.command()
@click.argument("cohort_csv", type=_Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "model_path", type=_Path(dir_okay=False, path_type=Path),
              required=True, help="Model file to write (JSON).")
@click.option("--profiles", type=_Path(exists=True, path_type=Path), default=None,
              help="profiles.csv (or gate output folder) joined on patient_id, when the "
                   "cohort table has no immune columns.")
@click.option("--with-regimen", is_flag=True, help="Also use the regimen (A/B).")
@click.option("--with-age", is_flag=True, help="Also use age (years).")
@click.option("-C", "c_value", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Inverse regularisation strength.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.5, show_default=True,
              help="P(TFR grade >= 2) from which the risk class is 'high'.")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Print cross-validated AUC and Brier score next to the baselines.")
def train(cohort_csv: Path, model_path: Path, profiles: Path | None, with_regimen: bool,
          with_age: bool, c_value: float, threshold: float, evaluate: bool) -> None:
    """Train the TFR classifier on COHORT_CSV (tfr_grade + immune profiles)."""
    from .predict.evaluation import evaluate, too_few_to_evaluate
    from .predict.features import IMMUNE_FEATURES, features_label
    from .predict.model import train
    from .predict.model_file import save_model
    from .study.cohort import join_profiles, read_cohort, read_profiles

    features = list(IMMUNE_FEATURES)
    features += ["regimen_b"] if with_regimen else []
    features += ["age"] if with_age else []
    try:
        cohort = read_cohort(cohort_csv)
        if profiles is not None:
            cohort = join_profiles(cohort, read_profiles(profiles))
        model = train(cohort, features, C=c_value, threshold=threshold,
                         description=f"trained on {cohort_csv.name}")
        if evaluate:
            result = evaluate(cohort, features, C=c_value)
    except ImmunoprofileError as exc:
        _fail(exc)
    try:
        save_model(model, model_path)
    except OSError as exc:
        raise _InputError(f"cannot write {model_path}: {exc.strerror or exc}") from None
    t = model.training
    label = features_label(features)
    click.echo(f"model trained on {t['patients']} patients ({t['grade_2_or_more']} with TFR "
               f"grade >= 2; {t['rows_left_out_missing_values']} left out for missing "
               f"values){'; ' + label if label else ''} -> {model_path}", err=True)
    small = too_few_to_evaluate(t["patients"], t["grade_2_or_more"])
    if small:
        click.echo(f"warning: {small}", err=True)
    if evaluate:
        for row in result.summary.itertuples():
            click.echo(f"  {row.model:20s} AUC {row.auc:.2f} ({row.auc_ci_low:.2f}-"
                       f"{row.auc_ci_high:.2f})  Brier {row.brier:.3f}", err=True)


@main.command("predict")
@click.argument("profiles", type=_Path(exists=True, path_type=Path))
@click.option("--model", "model_path", type=_Path(exists=True, dir_okay=False,
                                                          path_type=Path),
              default=None, help="Model JSON from immunoprofile train (default: the shipped "
                                 "model, trained on SIMULATED data; research use only).")
@click.option("--cohort", "cohort_csv", type=_Path(exists=True, dir_okay=False,
                                                           path_type=Path),
              default=None, help="Cohort CSV with regimen/age, for models that use them.")
@click.option("-o", "--out", "out_path", type=_Path(dir_okay=False, path_type=Path),
              required=True, help="predictions.csv to write.")
@click.option("--allow-missing", is_flag=True,
              help="Exit 0 even when some patients cannot be predicted (their rows say why).")
def predict_command(profiles: Path, model_path: Path | None, cohort_csv: Path | None,
                    out_path: Path, allow_missing: bool) -> None:
    """P(TFR grade >= 2) per patient from PROFILES (profiles.csv or the gate output folder)."""
    from .io.atomic import atomic_write_csv
    from .predict.model import predict_patients
    from .predict.model_file import DEFAULT_MODEL_NOTE, load_model
    from .study.cohort import read_cohort, read_profiles

    if model_path is None:
        click.echo(f"note: {DEFAULT_MODEL_NOTE}", err=True)
    try:
        model = load_model(model_path)
        table = read_profiles(profiles)
        if cohort_csv is not None:
            clinical = read_cohort(cohort_csv)
            table = table.merge(clinical.drop(columns=[c for c in clinical.columns
                                                       if c in table.columns
                                                       and c != "patient_id"]),
                                on="patient_id", how="left")
        predictions = predict_patients(model, table)
    except ImmunoprofileError as exc:
        _fail(exc)
    try:
        atomic_write_csv(out_path, predictions)
    except OSError as exc:
        raise _InputError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    done = predictions["p_tfr_grade_2_or_more"].notna()
    click.echo(f"{int(done.sum())} of {len(predictions)} patients predicted "
               f"({int((predictions['risk_class'] == 'high').sum())} high risk, "
               f"{int(predictions['outside_training_range'].sum())} outside the training "
               f"range) -> {out_path}", err=True)
    if not done.all():
        for row in predictions[~done].itertuples():
            click.echo(f"error: {row.patient_id}: {row.note}", err=True)
        if not allow_missing:
            sys.exit(EXIT_SAMPLES_FAILED)


@main.command("gate-tube")
@click.argument("fcs_file", type=_Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample-id", required=True, help="The tube's sample id in the manifest.")
@click.option("--tube", default=None,
              help="The tube: nk, cd4, cd8, tbnk, tbnk4_t, tbnk4_bnk or one of --panels "
                   "(default: detected from the "
                   "markers).")
@click.option("-o", "--out", "out_path", type=_Path(dir_okay=False, path_type=Path),
              required=True, help="Tube result file to write (.npz).")
@click.option("--templates", type=_Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of Gating-ML templates instead of the shipped ones.")
@click.option("--engine", type=click.Choice(ENGINES), default="compiled",
              show_default=True, help="Gating engine.")
@click.option("--gating", type=click.Choice(GATING_MODES), default="adaptive",
              show_default=True,
              help="adaptive: place each gate from the tube's own events (the shipped "
                   "adaptive templates, or --templates that declare it); fixed: every gate "
                   "where its template puts it.")
@_panels_option
def gate_tube_command(fcs_file: Path, sample_id: str, tube: str | None, out_path: Path,
                      templates: Path | None, engine: str, gating: str,
                      panels: tuple[Path, ...] = ()) -> None:
    """Gate one FCS file (a workflow step; see the Snakefile).

    A tube that cannot be read or gated is recorded in the result file with its reason
    (and printed), and the command exits 1 as every command does for a failed sample; the
    workflow's rule accepts that status, so one bad tube does not stop the run, and
    ``immunoprofile tables`` then lists it in errors.csv.
    A template that cannot give the counts (a gate missing, a channel no file is fitted
    to) is a usage error (exit 2).
    """
    try:  # a template that cannot give the counts stops the workflow, not each tube
        panel_set = _check_tubes([(str(fcs_file), tube)], templates, gating, panels)
    except ImmunoprofileError as exc:
        raise _input_error(exc) from None
    _allow_kernel_builds(quiet=False)
    if not _gate_one_tube(fcs_file, sample_id, tube, out_path, templates, engine, gating,
                          panel_set):
        sys.exit(EXIT_SAMPLES_FAILED)


def _check_tubes(tubes: Sequence[tuple[str, str | None]], templates: Path | None,
                 gating: str, panels: Sequence[Path]):
    """The run's panels, once each named tube is known and the templates of the tubes
    (all, where one is to be detected) can give their counts."""
    from .gating.panels import default_panels
    from .gating.templates import check_templates
    from .pipeline.tube import resolve_panels, resolve_templates

    panel_set = resolve_panels(list(panels)) if panels else None
    known = panel_set or default_panels()
    tubes = [(fcs, tube.strip().lower() if tube else tube) for fcs, tube in tubes]
    names = [t for _, t in tubes]
    for fcs, tube in tubes:
        if tube is not None and tube not in known:
            raise _InputError(f"{fcs}: unknown tube {tube!r} (one of {', '.join(known)}, "
                              "or - to detect it)")
    check_templates(resolve_templates(templates, gating),
                    None if None in names else tuple(sorted(set(names))), panels=known)
    return panel_set


def _gate_one_tube(fcs_file: Path, sample_id: str, tube: str | None, out_path: Path,
                   templates: Path | None, engine: str, gating: str, panels=None) -> bool:
    """Gate one tube into its result file and say so; False when the tube failed (its
    failure recorded in the file)."""
    from .pipeline.tube import TubeFailure, gate_tube_file
    from .pipeline.tube_result import save_tube_result

    result = gate_tube_file(fcs_file, sample_id, tube=tube, templates=templates,
                            engine=engine, gating=gating, panels=panels)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        save_tube_result(result, out_path)
    except OSError as exc:
        raise _InputError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    if isinstance(result, TubeFailure):
        click.echo(_error_lines([str(fcs_file)], [result.error])[0], err=True)
        return False
    click.echo(f"{sample_id}: {result.tube} tube, {result.events} events gated "
               f"in {result.seconds:.2f} s", err=True)
    return True


@main.command("gate-tubes")
@click.option("--item", "items", nargs=4, multiple=True, required=True,
              metavar="FCS SAMPLE_ID TUBE OUT",
              help="A tube to gate: its FCS file, its sample id, its panel (- to detect it "
                   "from the markers) and the result file (.npz) to write. Repeat per tube.")
@click.option("--templates", type=_Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of Gating-ML templates instead of the shipped ones.")
@click.option("--engine", type=click.Choice(ENGINES), default="compiled",
              show_default=True, help="Gating engine.")
@click.option("--gating", type=click.Choice(GATING_MODES), default="adaptive",
              show_default=True, help="As for gate-tube.")
@_panels_option
def gate_tubes_command(items: tuple, templates: Path | None, engine: str,
                       gating: str, panels: tuple[Path, ...] = ()) -> None:
    """Gate several FCS files in one process, one result file each, exactly as gate-tube
    gates each (the workflow's step when `tubes_per_job` is above 1: one job, one start).

    Each failed tube is recorded in its own result file and printed; the command then
    exits 1 once all are written.
    """
    tubes = [None if tube == "-" else tube for _, _, tube, _ in items]
    try:
        panel_set = _check_tubes([(fcs, t) for (fcs, *_), t in zip(items, tubes, strict=True)],
                                 templates, gating, panels)
    except ImmunoprofileError as exc:
        raise _input_error(exc) from None
    _allow_kernel_builds(quiet=False)
    failed = 0
    for (fcs, sample_id, _, out), tube in zip(items, tubes, strict=True):
        if not Path(fcs).is_file():
            raise _InputError(f"{fcs}: no such file")
        failed += not _gate_one_tube(Path(fcs), sample_id, tube, Path(out), templates,
                                     engine, gating, panel_set)
    if failed:
        sys.exit(EXIT_SAMPLES_FAILED)


@main.command("tables")
@click.argument("samples_dir", type=_Path(exists=True, file_okay=False, path_type=Path))
@click.argument("results_dir", type=_Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=_Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the tables of immunoprofile gate.")
@click.option("--manifest", type=_Path(dir_okay=False, path_type=Path), default=None,
              help="Manifest CSV (default: SAMPLES_DIR/manifest.csv).")
@click.option("--templates", type=_Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Template folder used by gate-tube (for run.json).")
@click.option("--engine", type=click.Choice(ENGINES), default="compiled",
              show_default=True, help="Engine used by gate-tube (for run.json).")
@click.option("--gating", type=click.Choice(GATING_MODES), default="adaptive",
              show_default=True,
              help="adaptive: place each gate from the tube's own events (the shipped "
                   "adaptive templates, or --templates that declare it); fixed: every gate "
                   "where its template puts it.")
@_panels_option
def tables_command(samples_dir: Path, results_dir: Path, out_dir: Path,
                   manifest: Path | None, templates: Path | None, engine: str,
                   gating: str, panels: tuple[Path, ...] = ()) -> None:
    """Count gated tubes and write every patient's profile (workflow step).

    Writes what ``immunoprofile gate`` writes, from the tube results of ``gate-tube``. Exits
    0 even when tubes failed (they are in errors.csv), so the workflow goes on to the report.
    """
    from .pipeline.assemble import assemble_tube_results, write_results

    with _output_folder(out_dir):
        try:
            result = assemble_tube_results(samples_dir, results_dir, manifest,
                                           templates=templates, engine=engine,
                                           gating=gating, panels=list(panels) or None)
        except ImmunoprofileError as exc:
            raise _input_error(exc) from None
        write_results(result, out_dir)
    run = result.run["samples"]
    click.echo(f"{run['counted']} tubes counted, {len(result.tables['profiles'])} patients, "
               f"{run['failed']} failed — results in {out_dir}", err=True)
    errors = result.tables["errors"]
    for line in _error_lines(errors["file"], errors["error"],
                             result.run.get("manifest", {}).get("path")):
        click.echo(line, err=True)


@main.command("report")
@click.argument("out_dir", type=_Path(exists=True, file_okay=False, path_type=Path))
@click.option("--samples", "samples_dir", type=_Path(exists=True, file_okay=False,
                                                          path_type=Path), default=None,
              help="Samples folder (default: as recorded in OUT_DIR/run.json).")
@click.option("--manifest", type=_Path(dir_okay=False, path_type=Path), default=None,
              help="Manifest CSV (default: as recorded in run.json).")
@click.option("--templates", type=_Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Template folder (default: as recorded in run.json).")
@click.option("--gating", type=click.Choice(GATING_MODES), default=None,
              help="Gating mode of the plots (default: as recorded in OUT_DIR/run.json).")
@click.option("--no-plots", is_flag=True, help="Leave out the gating plots.")
@click.option("--cohort-stats", "cohort_stats", type=_Path(file_okay=False,
                                                                path_type=Path),
              default=None, help="Folder of immunoprofile cohort-stats output whose figures "
                                 "to include (default: OUT_DIR/cohort_stats if present).")
@click.option("--no-cohort-stats", is_flag=True, help="Include no cohort figures.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes drawing the pages of a large (paged) report.")
def report_command(out_dir: Path, samples_dir: Path | None, manifest: Path | None,
                   templates: Path | None, gating: str | None, no_plots: bool,
                   cohort_stats: Path | None, no_cohort_stats: bool, jobs: int) -> None:
    """Write OUT_DIR/report.html: a self-contained HTML report of a gated batch (beyond 50
    patients, a summary linking to pages in OUT_DIR/report_pages/)."""
    from .report import write_report

    stats = None if no_cohort_stats else cohort_stats if cohort_stats is not None else True
    notes: list[str] = []
    try:
        path = write_report(out_dir, samples_dir=samples_dir, manifest=manifest,
                            templates=templates, plots=not no_plots, cohort_stats=stats,
                            notes=notes, gating=gating, jobs=jobs)
    except ImmunoprofileError as exc:  # not a gate output folder: nothing to report on
        raise _input_error(exc) from None
    for line in notes:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"report written: {path}", err=True)
    if notes:  # some tubes' plots are missing: the report says which, and so does the status
        sys.exit(EXIT_SAMPLES_FAILED)


@main.command("plot")
@click.argument("fcs_file", type=_Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=_Path(file_okay=False, path_type=Path),
              required=True, help="Folder for one PNG per gate.")
@click.option("--tube", default=None, metavar="TUBE",
              help="The tube (nk, cd4, cd8, tbnk, … or a --panels tube; default: detected "
                   "from the markers).")
@click.option("--templates", type=_Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of Gating-ML templates instead of the shipped ones.")
@click.option("--gating", type=click.Choice(GATING_MODES), default="adaptive",
              show_default=True, help="Draw the gates placed for this tube (adaptive) or the "
                                      "templates' fixed gates.")
@_panels_option
def plot_command(fcs_file: Path, out_dir: Path, tube: str | None,
                 templates: Path | None, gating: str, panels: tuple[Path, ...]) -> None:
    """Draw FCS_FILE's gates: each gate's parent events with the gate over them (PNG)."""
    from .report import write_gate_plots

    try:
        panel_set = _check_tubes([(fcs_file, tube)], templates, gating, panels)
    except ImmunoprofileError as exc:
        raise _input_error(exc) from None
    with _output_folder(out_dir):
        try:
            written = write_gate_plots(fcs_file, out_dir, tube=tube, templates=templates,
                                       gating=gating, panels=panel_set)
        except ImmunoprofileError as exc:
            _fail(exc)
    click.echo(f"{len(written)} gate plots written to {out_dir}", err=True)


@main.command("check-errors")
@click.argument("errors_csv", type=_Path(dir_okay=False, path_type=Path))
@click.option("--summary", "summary_path", type=_Path(dir_okay=False, path_type=Path),
              default=None, help="Write the one-line summary of the failures (empty when "
                                 "none failed) to this file and exit 0 (the workflow's "
                                 "last step reads it).")
def check_errors_command(errors_csv: Path, summary_path: Path | None) -> None:
    """Exit 1 when ERRORS_CSV lists failed files (the workflow's last step), else 0."""
    import json

    import pandas as pd

    try:
        errors = pd.read_csv(errors_csv, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) \
            as exc:
        click.echo(f"error: cannot read {errors_csv}: {exc}", err=True)
        sys.exit(EXIT_SAMPLES_FAILED)
    if not {"file", "error"} <= set(errors.columns):
        click.echo(f"error: {errors_csv} is not an errors.csv (needs columns file, error)",
                   err=True)
        sys.exit(EXIT_SAMPLES_FAILED)
    manifest = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        run = json.loads((errors_csv.parent / "run.json").read_text(encoding="utf-8"))
        manifest = run.get("manifest", {}).get("path")
    for line in _error_lines(list(errors["file"]), list(errors["error"]), manifest):
        click.echo(line, err=True)
    summary = _failed_summary(list(errors["file"]), errors_csv) if len(errors) else ""
    if summary:
        click.echo(summary, err=True)
    if summary_path is not None:
        from .io.atomic import atomic_write_text

        atomic_write_text(summary_path, summary + "\n" if summary else "")
    elif summary:
        sys.exit(EXIT_SAMPLES_FAILED)


@main.command("inspect")
@click.argument("fcs_file", type=_Path(exists=True, dir_okay=False, path_type=Path))
def inspect_command(fcs_file: Path) -> None:
    """What a user needs to know about FCS_FILE: version, cytometer, events, channels and
    markers, spillover, the panel immunoprofile sees, and any warnings."""
    from .errors import PanelError
    from .gating.panels import detect_panel
    from .io.channels import marker_channels
    from .io.fcs_reader import read_fcs

    try:
        data = read_fcs(fcs_file)
    except ImmunoprofileError as exc:
        _fail(exc)
    keys = data.keywords
    spill = next((k for k in ("spill", "spillover", "comp") if keys.get(k)), None)
    markers = marker_channels(data.channels, data.markers)
    try:
        panel = detect_panel(markers, source=fcs_file.name).tube
    except PanelError as exc:
        panel = f"none ({exc})"
    lines = [f"file          {fcs_file}",
             f"FCS version   {data.version}",
             f"cytometer     {keys.get('cyt', 'not stated')}",
             f"events        {data.event_count:,} ($TOT {keys.get('tot')})",
             f"channels      {len(data.channels)}",
             f"spillover     {'$' + spill.upper() if spill else 'none in the file'}",
             f"panel         {panel}"]
    lines += [f"  P{i + 1:<3} {name:<24} {marker}"
              for i, (name, marker) in enumerate(zip(data.channels, data.markers,
                                                     strict=True))]
    lines += [f"warning       {w}" for w in data.warnings]
    click.echo("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    main()
