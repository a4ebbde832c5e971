"""The manifest: which FCS file is which patient's which tube, with the counting inputs.

``manifest.csv`` columns:

============== ========================================================================
file           path of the FCS file, relative to the manifest (required)
patient_id     the patient's identifier in the outputs (required)
tube           ``nk``, ``cd4`` or ``cd8``; blank = detect from the file's markers
beads_per_test counting beads in the tube, from the bead lot (blank = no beads: the
               tube is counted by the dual-platform method only, which needs ``alc``)
volume_ul      blood volume stained, µL (default 50)
alc            absolute lymphocyte count from the haematology analyser, ×10⁹/L (optional)
x_…            any column whose name starts with ``x_`` (``x_lab_number``, ``x_comment``)
               is the lab's own: kept in the file, never read
============== ========================================================================

Column names are matched ignoring case and the spaces around them (``Volume_uL `` is
``volume_ul``); nothing else is guessed. Any other column is refused (a
:class:`~immunoprofile.errors.ManifestError`, naming the column, the file and the nearest
known name): a misspelt optional column would otherwise be ignored without a word — a
``volume`` column left every tube at the default 50 µL, a ``beads_per_tube`` column left
every bead count empty. A header cell left empty (a trailing comma) is allowed only when
its column holds no values.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import ManifestError
from .tubes import TUBES

REQUIRED_COLUMNS = ("file", "patient_id")
OPTIONAL_COLUMNS = ("tube", "beads_per_test", "volume_ul", "alc")
#: Columns whose names start with this are the lab's own: passed through, never read.
PASS_THROUGH_PREFIX = "x_"
DEFAULT_VOLUME_UL = 50.0


@dataclass(frozen=True)
class TubeRequest:
    """One manifest row: a tube to gate and count.

    Attributes
    ----------
    path : Path
        The FCS file.
    sample_id : str
        Name of the sample in the outputs (the file's path relative to the manifest,
        without ``.fcs``).
    patient_id : str
    tube : str or None
        ``nk``, ``cd4``, ``cd8``, or None to detect from the markers.
    beads_per_test : float
        Beads in the tube; NaN when the tube has no beads.
    volume_ul : float
        Blood stained, µL.
    alc : float
        Absolute lymphocyte count, ×10⁹/L; NaN when unknown.
    """

    path: Path
    sample_id: str
    patient_id: str
    tube: str | None
    beads_per_test: float
    volume_ul: float
    alc: float


@dataclass
class Manifest:
    """A parsed manifest: valid rows, and the problems found with files and rows.

    Attributes
    ----------
    path : Path
    requests : list of TubeRequest
        Rows that can be processed.
    problems : list of (str, str)
        ``(file, reason)`` for rows that cannot be processed and for FCS files in the samples
        folder that no row names; each becomes a row of ``errors.csv``.
    patients : list of str
        Every patient named by the manifest, in order of first appearance.
    sha256 : str
        Checksum of the manifest file.
    """

    path: Path
    requests: list[TubeRequest] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    sha256: str = ""


def _number(value, column: str, row_label: str, *, default: float = math.nan,
            positive: bool = False) -> float:
    if value is None or str(value).strip() in ("", "nan", "NaN"):
        return default
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{row_label}: {column} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"{row_label}: {column} must be {'positive' if positive else '≥ 0'}, "
                         f"not {value!r}")
    return number


def _read_csv(raw: bytes, name: str) -> tuple[list[str], list[dict[str, str]]]:
    """Column names (stripped, lower case) and rows of a manifest, every field text.

    As a spreadsheet writes CSV: UTF-8 with or without a byte-order mark, any line ends,
    quoted fields, spaces after commas ignored. A short row is padded with blanks, a long
    one cut to the header; a blank line is a blank row; a header cell left empty (a
    trailing comma) is a column named ``unnamed: N``.
    """
    try:
        text = raw.decode("utf-8-sig")
        records = list(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{name}: not a readable CSV file ({exc})") from None
    if not records:
        raise ManifestError(f"{name}: not a readable CSV file (no columns: it is empty)")
    columns = [cell.strip().lower() or f"{_UNNAMED}{i}" for i, cell in enumerate(records[0])]
    width = len(columns)
    rows = [dict(zip(columns, (record + [""] * width)[:width], strict=True))
            for record in records[1:]]
    return columns, rows


_UNNAMED = "unnamed: "


def _check_columns(columns: list[str], rows: list[dict[str, str]], path: Path) -> None:
    """Refuse a column the manifest does not define, naming the nearest known one."""
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    for column in columns:
        if column.startswith(_UNNAMED):
            filled = next((i for i, row in enumerate(rows) if str(row[column]).strip()), None)
            if filled is not None:
                raise ManifestError(
                    f"{path}: column {int(column[len(_UNNAMED):]) + 1} has no name but holds "
                    f"values (line {filled + 2}) — name it (e.g. "
                    f"{PASS_THROUGH_PREFIX}comment) or delete it")
    unknown = [c for c in columns if c not in known and not c.startswith(_UNNAMED)
               and not c.startswith(PASS_THROUGH_PREFIX)]
    if not unknown:
        return
    reasons = []
    for column in unknown:
        near = [k for k in known if min(len(k), len(column)) >= 3
                and (column.startswith(k) or k.startswith(column))]  # alc_10e9, volume
        near = near or difflib.get_close_matches(column, known, n=1, cutoff=0.6)
        reasons.append(f"{column!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    raise ManifestError(
        f"{path}: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(reasons)} — "
        f"the columns are {', '.join(known)}; start a column's name with "
        f"{PASS_THROUGH_PREFIX!r} to keep your own notes in the manifest")


def find_manifest(samples_dir: str | Path, manifest: str | Path | None = None) -> Path:
    """Locate the manifest of a samples folder.

    Parameters
    ----------
    samples_dir : str or Path
    manifest : str or Path, optional
        Explicit manifest path (``--manifest``).

    Raises
    ------
    ManifestError
        No manifest where expected.
    """
    if manifest is not None:
        path = Path(manifest)
        if not path.is_file():
            raise ManifestError(f"{path}: manifest not found")
        return path
    path = Path(samples_dir) / "manifest.csv"
    if not path.is_file():
        raise ManifestError(
            f"no manifest.csv in {samples_dir} — write one (columns: file, patient_id, tube, "
            "beads_per_test, volume_ul, alc) or pass --manifest PATH"
        )
    return path


def read_manifest(path: str | Path, samples_dir: str | Path | None = None,
                  tubes: Sequence[str] = TUBES) -> Manifest:
    """Read and check a manifest CSV.

    Parameters
    ----------
    path : str or Path
        The manifest; its ``file`` entries are relative to its folder.
    samples_dir : str or Path, optional
        Folder whose ``*.fcs`` files must all be listed; files not listed are reported.
    tubes : sequence of str
        Tube names the ``tube`` column may hold: the study's by default, a run's panels'
        (``--panels``) otherwise.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        The file is not a CSV with at least the ``file`` and ``patient_id`` columns, or it
        has a column that is neither known nor named ``x_…``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    columns, rows = _read_csv(raw, path.name)
    if len(set(columns)) != len(columns):
        raise ManifestError(f"{path.name}: a column name appears twice "
                            f"({', '.join(columns)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(
            f"{path.name}: missing column(s) {', '.join(missing)} (columns found: "
            f"{', '.join(columns) or 'none'}); expected file, patient_id, tube, "
            "beads_per_test, volume_ul, alc"
        )
    _check_columns(columns, rows, path)
    result = Manifest(path=path, sha256=hashlib.sha256(raw).hexdigest())
    base = path.parent
    listed: set[Path] = set()
    for position, row in enumerate(rows):
        line = position + 2  # header is line 1
        file_text = str(row["file"]).strip()
        row_label = f"{path.name} line {line}"
        if not file_text:
            if any(str(v).strip() for v in row.values()):
                result.problems.append((row_label, "the 'file' column is empty"))
            continue
        patient = str(row["patient_id"]).strip()
        if patient and patient not in result.patients:
            result.patients.append(patient)
        fcs = (base / file_text).resolve()
        if not patient:
            result.problems.append((file_text, f"{row_label}: patient_id is empty"))
            continue
        if fcs in listed:
            result.problems.append((file_text, f"listed twice in {path.name} (line {line})"))
            continue
        listed.add(fcs)
        tube = str(row.get("tube", "") or "").strip().lower() or None
        if tube is not None and tube not in tubes:
            names = list(tubes)
            choice = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            result.problems.append(
                (file_text, f"{row_label}: unknown tube {tube!r} — use {choice}, or "
                            "leave it blank to detect it from the markers"))
            continue
        try:
            beads = _number(row.get("beads_per_test"), "beads_per_test", row_label, positive=True)
            volume = _number(row.get("volume_ul"), "volume_ul", row_label,
                             default=DEFAULT_VOLUME_UL, positive=True)
            alc = _number(row.get("alc"), "alc", row_label)
        except ValueError as exc:
            result.problems.append((file_text, str(exc)))
            continue
        if math.isnan(beads) and math.isnan(alc):
            result.problems.append(
                (file_text, f"{row_label}: neither beads_per_test nor alc is given — one is "
                            "needed for an absolute count"))
            continue
        if not fcs.is_file():
            result.problems.append((file_text, f"listed in {path.name} but not found"))
            continue
        sample_id = str(PurePosixPath(file_text).with_suffix(""))
        result.requests.append(TubeRequest(fcs, sample_id, patient, tube, beads, volume, alc))
    if samples_dir is not None:
        root = Path(samples_dir)
        try:
            found = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".fcs")
        except OSError as exc:
            raise ManifestError(f"{root}: cannot list the samples folder "
                                f"({exc.strerror or exc})") from None
        for fcs in found:
            if fcs.resolve() not in listed:
                result.problems.append(
                    (fcs.relative_to(root).as_posix(),
                     f"not listed in {path.name} — add a row for it or move it out of the folder"))
    return result
