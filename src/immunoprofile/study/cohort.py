"""Cohort tables: the clinical data of a study's patients, joined with their immune profiles.

A cohort CSV has one row per patient: ``patient_id`` and the clinical columns below. Any
column may be blank where an analysis does not need it; a value of the wrong type, an
unknown TFR grade or response, or a repeated patient is a :class:`CohortError` that names
the CSV line and the patient.

=====================  =====================================================  ============
column                 meaning                                                unit / values
=====================  =====================================================  ============
``patient_id``         patient identifier, as in ``profiles.csv``             text
``regimen``            ``A`` (25 mg, no prophylaxis) or ``B`` (10 mg,          A / B
                       escalation, prednisone)
``age``                age at baseline                                        years
``sex``                ``M`` or ``F``                                         M / F
``rai_stage``          Rai stage                                              0-4
``alc``                baseline absolute lymphocyte count                     ×10⁹/L
``zap70``              ZAP-70 status (optional)                               positive /
                                                                              negative
``tfr_grade``          tumour flare reaction grade, 0 = no TFR                0-4
``tfr_onset_days``     first dose to TFR onset                                days
``tfr_duration_days``  TFR onset to resolution (every TFR is taken as         days
                       resolved: durations are not censored)
``response``           best response                                          CR/PR/SD/PD
``pfs_months``         progression-free survival (or follow-up if censored)   months
``pfs_event``          1 = progressed or died, 0 = censored                   0 / 1
=====================  =====================================================  ============

Immune columns (``nk_per_ul``, ``cd4_per_ul``, ``cd8_per_ul``, ``cd4_cd8_ratio``, cells/µL)
come from ``profiles.csv`` of ``immunoprofile gate`` through :func:`join_profiles`, or are
in the cohort table itself (as in :func:`immunoprofile.study.reference_cohort.reference_cohort`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CohortError, first_line
from ..profile.columns import IMMUNE_COLUMNS

NUMERIC_RANGES = {  # column: (lowest, highest) allowed
    "age": (0.0, 120.0),
    "rai_stage": (0, 4),
    "alc": (0.0, 5000.0),
    "tfr_grade": (0, 4),
    "tfr_onset_days": (0.0, 3650.0),
    "tfr_duration_days": (0.0, 3650.0),
    "pfs_months": (0.0, 600.0),
    "pfs_event": (0, 1),
    "nk_per_ul": (0.0, 1e6),
    "cd4_per_ul": (0.0, 1e6),
    "cd8_per_ul": (0.0, 1e6),
    "cd4_cd8_ratio": (0.0, 1e6),
}
INTEGER_COLUMNS = {"rai_stage", "tfr_grade", "pfs_event"}
CATEGORIES = {
    "regimen": {"A": "A", "B": "B"},
    "sex": {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"},
    "response": {"CR": "CR", "PR": "PR", "SD": "SD", "PD": "PD"},
    "zap70": {"POSITIVE": "positive", "POS": "positive", "+": "positive",
              "NEGATIVE": "negative", "NEG": "negative", "-": "negative"},
}
_RAI_ROMAN = {"0": 0, "I": 1, "II": 2, "III": 3, "IV": 4}
_MISSING = {"", "NA", "N/A", "NAN", "NONE", "."}


def read_cohort(path: str | Path) -> pd.DataFrame:
    """Read and validate a cohort CSV.

    Parameters
    ----------
    path : str or Path
        CSV with a header row; ``patient_id`` is required, every other known column
        optional. Unknown columns are kept as text.

    Returns
    -------
    pandas.DataFrame
        One row per patient, typed: numbers as float (NaN = missing), ``regimen``,
        ``sex``, ``response`` and ``zap70`` normalised (``A``/``B``, ``M``/``F``, ``CR``…,
        ``positive``/``negative``), ``tfr_grade`` as a nullable integer.

    Raises
    ------
    CohortError
        Unreadable file, no ``patient_id`` column, or a bad value (the message names the
        CSV line and patient).
    """
    path = Path(path)
    _check_csv_shape(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                          index_col=False)
    except FileNotFoundError:
        raise CohortError(f"{path}: no such cohort file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: not a readable CSV table ({first_line(exc)})") from None
    except OSError as exc:
        raise CohortError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return validate_cohort(raw, source=str(path))


def _check_csv_shape(path: Path) -> None:
    """Refuse what pandas would silently repair: a repeated column name (renamed ``x.1``)
    or a line with more fields than the header (its first field taken as an index)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise CohortError(f"{path}: empty file (no header row)")
            names = [h.strip() for h in header]
            repeated = sorted({n for n in names if n and names.count(n) > 1})
            if repeated:
                raise CohortError(f"{path}: column {repeated[0]} appears twice in the header")
            for row in reader:
                if len(row) > len(header):
                    raise CohortError(f"{path} line {reader.line_num}: {len(row)} fields but "
                                      f"the header has {len(header)} — a stray comma?")
    except FileNotFoundError:
        raise CohortError(f"{path}: no such cohort file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CohortError(f"{path}: not a readable CSV table ({first_line(exc)})") from None
    except OSError as exc:
        raise CohortError(f"{path}: cannot read ({exc.strerror or exc})") from None


def validate_cohort(table: pd.DataFrame, source: str = "cohort") -> pd.DataFrame:
    """Type and check a cohort table (see :func:`read_cohort`); returns a new table.

    Parameters
    ----------
    table : pandas.DataFrame
        Raw cohort, values as text or numbers.
    source : str
        Name used in error messages (the file).
    """
    raw = table.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    if "patient_id" not in raw.columns:
        raise CohortError(f"{source}: no patient_id column (columns: "
                          f"{', '.join(raw.columns) or 'none'})")
    out = pd.DataFrame(index=raw.index)

    def where(i: int) -> str:
        pid = str(raw.at[i, "patient_id"]).strip()
        return f"{source} line {int(i) + 2} (patient {pid or '?'})"

    ids = raw["patient_id"].astype(str).str.strip()
    for i, pid in ids.items():
        if pid == "" or pid.upper() in _MISSING:
            raise CohortError(f"{where(i)}: patient_id is blank")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise CohortError(f"{where(dup.index[0])}: patient {dup.iloc[0]} appears twice")
    out["patient_id"] = ids

    for column in raw.columns:
        if column == "patient_id":
            continue
        values = raw[column]
        if column in NUMERIC_RANGES:
            out[column] = _numeric_column(values, column, where)
        elif column in CATEGORIES:
            out[column] = _category_column(values, column, where)
        else:
            out[column] = values
    if "tfr_grade" in out:
        out["tfr_grade"] = out["tfr_grade"].astype("Int64")
    return out.reset_index(drop=True)


def _is_missing(value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return str(value).strip().upper() in _MISSING


def _numeric_column(values: pd.Series, column: str, where) -> pd.Series:
    lo, hi = NUMERIC_RANGES[column]
    result = np.full(len(values), np.nan)
    for k, (i, value) in enumerate(values.items()):
        if _is_missing(value):
            continue
        text = str(value).strip()
        if column == "rai_stage" and text.upper() in _RAI_ROMAN:
            number = float(_RAI_ROMAN[text.upper()])
        else:
            try:
                number = float(text)
            except ValueError:
                raise CohortError(f"{where(i)}: {column} {text!r} is not a number") from None
        if not np.isfinite(number):
            raise CohortError(f"{where(i)}: {column} {text!r} is not a finite number")
        if column in INTEGER_COLUMNS and not number.is_integer():
            raise CohortError(f"{where(i)}: {column} {text!r} is not a whole number")
        if not lo <= number <= hi:
            what = {"tfr_grade": "a TFR grade (0-4)", "rai_stage": "a Rai stage (0-4)",
                    "pfs_event": "an event flag (1 = progressed, 0 = censored)"}.get(
                column, f"within {lo:g}-{hi:g}")
            raise CohortError(f"{where(i)}: {column} {text!r} is not {what}")
        result[k] = number
    return pd.Series(result, index=values.index, dtype=float)


def _category_column(values: pd.Series, column: str, where) -> pd.Series:
    allowed = CATEGORIES[column]
    result: list[object] = []
    for i, value in values.items():
        if _is_missing(value):
            result.append(np.nan)
            continue
        key = str(value).strip().upper()
        if key not in allowed:
            choices = "/".join(dict.fromkeys(allowed.values()))
            raise CohortError(f"{where(i)}: {column} {str(value).strip()!r} is not one of "
                              f"{choices}")
        result.append(allowed[key])
    return pd.Series(result, index=values.index, dtype=object)


def join_profiles(cohort: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """Add each patient's immune profile to the cohort, matched on ``patient_id``.

    Parameters
    ----------
    cohort : pandas.DataFrame
        From :func:`read_cohort`.
    profiles : pandas.DataFrame
        ``profiles.csv`` of ``immunoprofile gate`` (at least ``patient_id`` and the
        immune columns, cells/µL).

    Returns
    -------
    pandas.DataFrame
        The cohort with ``nk_per_ul``, ``cd4_per_ul``, ``cd8_per_ul``, ``cd4_cd8_ratio``
        and ``qc_flags`` from the profiles (NaN for patients without a profile).
        ``attrs["profiles_without_cohort_row"]`` lists profiled patients the cohort lacks.

    Raises
    ------
    CohortError
        The profiles lack ``patient_id`` or the immune columns, or the cohort already
        holds immune columns (two sources for one number).
    """
    missing = [c for c in ["patient_id", *IMMUNE_COLUMNS] if c not in profiles.columns]
    if missing:
        raise CohortError(f"profiles table lacks {', '.join(missing)} — is it the "
                          "profiles.csv of immunoprofile gate?")
    clash = [c for c in IMMUNE_COLUMNS if c in cohort.columns]
    if clash:
        raise CohortError(f"the cohort already has {', '.join(clash)}; drop them from the "
                          "cohort or do not join profiles, so each value has one source")
    keep = ["patient_id", *IMMUNE_COLUMNS] + (["qc_flags"] if "qc_flags" in profiles else [])
    prof = profiles[keep].copy()
    prof["patient_id"] = prof["patient_id"].astype(str).str.strip()
    if prof["patient_id"].duplicated().any():
        dup = prof.loc[prof["patient_id"].duplicated(), "patient_id"].iloc[0]
        raise CohortError(f"profiles table has patient {dup} twice")
    joined = cohort.merge(prof, on="patient_id", how="left", validate="one_to_one")
    joined.attrs["profiles_without_cohort_row"] = sorted(
        set(prof["patient_id"]) - set(cohort["patient_id"]))
    return joined


def read_profiles(path: str | Path) -> pd.DataFrame:
    """Read ``profiles.csv`` from ``immunoprofile gate`` (cells/µL), with a clear error.

    Parameters
    ----------
    path : str or Path
        The file, or the gate output folder that holds it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "profiles.csv"
    try:
        table = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False,
                            na_values=[""])
    except FileNotFoundError:
        raise CohortError(f"{path}: no such profiles file (run immunoprofile gate "
                          "first)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            OSError) as exc:
        raise CohortError(f"{path}: not a readable profiles table ({first_line(exc)})") \
            from None
    missing = [c for c in ["patient_id", *IMMUNE_COLUMNS] if c not in table.columns]
    if missing:
        raise CohortError(f"{path}: lacks {', '.join(missing)} — is it the profiles.csv of "
                          "immunoprofile gate?")
    if table.empty:
        raise CohortError(f"{path}: no patients (header only)")
    for column in IMMUNE_COLUMNS:
        if not pd.api.types.is_numeric_dtype(table[column]):
            raise CohortError(f"{path}: {column} holds non-numbers")
        values = table[column]
        bad = values.notna() & ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            pid = table.loc[bad, "patient_id"].iloc[0]
            raise CohortError(f"{path}: {column} of patient {pid} is {values[bad].iloc[0]}, "
                              "not a finite count >= 0")
    dup = table["patient_id"].duplicated()
    if dup.any():
        raise CohortError(f"{path}: patient {table.loc[dup, 'patient_id'].iloc[0]} appears "
                          "twice")
    return table
