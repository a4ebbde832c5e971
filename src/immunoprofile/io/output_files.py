"""Where a gate run puts a tube's own files in its output folder, decided once: the report
reads them from where the batch wrote them.

- ``OUT/gates/<sample_id>.xml``: the gates adaptive gating placed for the tube, as
  Gating-ML 2.0 (:func:`gates_xml_path`), and ``OUT/gates/<sample_id>.views.npz``: each
  gate's parent binned on the gate's axes, what the report's plots draw
  (:func:`gate_views_path`);
- ``OUT/.work/tubes/<key>.npz`` and the workflow's per-tube results: named by
  :func:`tube_result_key`, a file-name-safe key of the sample id.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def tube_result_key(sample_id: str) -> str:
    """File-name-safe key of a tube's result file: the sample id's letters, digits, ``-``
    and ``_`` (others become ``_``), then 10 hex digits of its SHA-1, so ids that clean up
    alike (``a b`` and ``a_b``) stay apart and ``../`` cannot leave the folder."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", sample_id).strip("_")[:60] or "tube"
    return f"{stem}-{hashlib.sha1(sample_id.encode('utf-8')).hexdigest()[:10]}"


def gates_xml_path(out_dir: str | Path, sample_id: str) -> Path:
    """``OUT/gates/<sample_id>.xml``: a tube's placed gates (a sample id that would leave
    the folder, with ``..`` or an absolute path, is written under its safe key)."""
    return _in_gates(out_dir, sample_id, ".xml")


def gate_views_path(out_dir: str | Path, sample_id: str) -> Path:
    """``OUT/gates/<sample_id>.views.npz``: what a tube's gating plots show (named as
    :func:`gates_xml_path` names its gates)."""
    return _in_gates(out_dir, sample_id, ".views.npz")


def _in_gates(out_dir: str | Path, sample_id: str, suffix: str) -> Path:
    parts = Path(sample_id).parts
    if not parts or Path(sample_id).is_absolute() or ".." in parts:
        return Path(out_dir) / "gates" / f"{tube_result_key(sample_id)}{suffix}"
    return Path(out_dir) / "gates" / f"{sample_id}{suffix}"
