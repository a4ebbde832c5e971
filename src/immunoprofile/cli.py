"""The ``immunoprofile`` command: a thin shell over the Python API.

Exit status: 0 when every sample succeeded, 1 when some failed (their rows are in
``errors.csv``; the rest are complete), 2 for a usage error (bad option, no manifest).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import ImmunoprofileError

EXIT_SAMPLES_FAILED = 1
EXIT_USAGE = 2


class _UsageError(click.UsageError):
    exit_code = EXIT_USAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="immunoprofile")
def main() -> None:
    """Immune profiles of CLL blood from flow-cytometry tubes: NK, CD4+ and CD8+ T cells
    per µL and the CD4/CD8 ratio."""


def _check_writable(out_dir: Path) -> None:
    """Fail before any gating when the output folder cannot be written (exit 2)."""
    import tempfile

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise _UsageError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None


@main.command()
@click.argument("samples_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for populations.csv, profiles.csv, samples.csv, "
                                  "errors.csv and run.json.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Manifest CSV (default: SAMPLES_DIR/manifest.csv).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tubes gated side by side (threads for the compiled engine, processes "
                   "for FlowKit).")
@click.option("--templates", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of Gating-ML templates to use instead of the "
                                 "shipped ones (nk_tube.xml, cd4_tube.xml, cd8_tube.xml).")
@click.option("--engine", type=click.Choice(["compiled", "flowkit"]), default="compiled",
              show_default=True,
              help="Gating engine: the compiled Numba engine, or FlowKit (the reference).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def gate(samples_dir: Path, out_dir: Path, manifest: Path | None, jobs: int,
         templates: Path | None, engine: str, quiet: bool) -> None:
    """Gate and count every tube in SAMPLES_DIR listed in its manifest."""
    from .pipeline import gate_batch, write_results

    _check_writable(out_dir)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="gating tubes", file=sys.stderr)
            bar.__enter__()
        bar.update(1)

    try:
        result = gate_batch(samples_dir, manifest, jobs=jobs, templates=templates,
                            engine=engine, progress=progress)
    except ImmunoprofileError as exc:
        raise _UsageError(str(exc)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    try:
        write_results(result, out_dir)
    except OSError as exc:
        click.echo(f"error: cannot write results to {out_dir}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_SAMPLES_FAILED)
    if not quiet:
        run = result.run["samples"]
        click.echo(f"{run['counted']} tubes counted, {len(result.profiles)} patients, "
                   f"{run['failed']} failed — results in {out_dir}", err=True)
    if not result.ok:
        for row in result.errors.itertuples():
            click.echo(f"error: {row.error}", err=True)
        sys.exit(EXIT_SAMPLES_FAILED)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
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
def simulate(out_dir: Path, events: int, seed: int, beads_per_test: float, volume_ul: float,
             other_cytometer: bool) -> None:
    """Write a SIMULATED cohort (6 CLL patients × NK, CD4, CD8 tubes) with truth files and
    manifest.csv into OUT_DIR."""
    from .simulate import write_cohort

    manifest = write_cohort(out_dir, events=events, seed=seed, beads_per_test=beads_per_test,
                            volume_ul=volume_ul, other_cytometer=other_cytometer)
    click.echo(f"simulated cohort written: {manifest}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
