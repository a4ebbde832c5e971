"""A tube's gating result as a file (``.npz``): what one workflow job writes and the
assembling step reads — events per gate, or the failure, with the provenance it was made
from (a resume cache entry is the same file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import first_line
from ..gating.panels import Panel
from ..io.manifest import TubeRequest
from ..io.output_files import tube_result_key as tube_result_key
from .tube import GatedTube, TubeFailure

# --- one job per tube (the Snakemake workflow) ------------------------------------------------
#: Format tag of a tube result file (``.npz``) written by :func:`save_tube_result`: events
#: per gate (/3: with the wider panel, the unused markers and the gating plots' views;
#: /4: and the events lymphosum gates share).
#: (The first format, per-event membership bitmasks, was never released.)
TUBE_RESULT_FORMAT = "immunoprofile-tube-result/4"


def save_tube_result(result: GatedTube | TubeFailure, path: str | Path,
                     provenance: dict | None = None, durable: bool = True) -> None:
    """Write one tube's gating result (events per gate, or the failure) atomically as .npz;
    ``provenance`` (what the result depends on) is stored with it. ``durable=False``
    skips flushing it to disk (a resume cache: a damaged entry is gated again)."""
    import io as _io

    from ..io.atomic import atomic_write_bytes

    if isinstance(result, TubeFailure):
        meta = {"format": TUBE_RESULT_FORMAT, "failure": result.error, "file": result.file}
    else:
        meta = {"format": TUBE_RESULT_FORMAT, "sample_id": result.request.sample_id,
                "tube": result.tube, "gate_ids": result.gate_ids, "parents": result.parents,
                "gate_events": [int(e) for e in result.gate_events],
                "events": result.events, "has_spillover": result.has_spillover,
                "simulated": result.simulated, "seconds": result.seconds,
                "keywords": result.keywords, "placements": result.placements,
                "gating_ml": result.gating_ml,
                "panel": result.panel.to_dict() if result.panel is not None else None,
                "wider_panel": result.wider_panel,
                "unused_markers": list(result.unused_markers),
                "shared_events": [list(s) for s in result.shared_events]}
    meta["provenance"] = provenance
    arrays = {}
    if isinstance(result, GatedTube) and result.views is not None:
        arrays["views"] = np.frombuffer(result.views, dtype=np.uint8)  # already compressed
    buffer = _io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write_bytes(path, buffer.getvalue(), durable=durable)


def load_tube_result(path: str | Path, request: TubeRequest,
                     provenance: dict | None = None) -> GatedTube | TubeFailure | None:
    """Read a file written by :func:`save_tube_result` for the manifest row ``request``;
    an unreadable or mismatched file becomes that tube's failure. With ``provenance``,
    a result made from anything else (another file content, template, engine, version)
    gives None: it must be gated again."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            views = data["views"].tobytes() if "views" in data.files else None
        if not isinstance(meta, dict) or meta.get("format") != TUBE_RESULT_FORMAT:
            raise ValueError("wrong format tag")
        if provenance is not None and meta.get("provenance") != provenance:
            return None
        if "failure" in meta:
            return TubeFailure(str(request.path), str(meta["failure"]))
        if meta["sample_id"] != request.sample_id:
            raise ValueError(f"it holds sample {meta['sample_id']}")
        panel = Panel.from_dict(meta["panel"]) if meta.get("panel") else None
        n_gates = len(meta["gate_ids"])
        gate_events = np.array(meta["gate_events"], dtype=np.int64)
        if gate_events.ndim != 1 or gate_events.size != n_gates or np.any(gate_events < 0):
            raise ValueError("its gate counts do not match its gates")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        return TubeFailure(str(request.path), (
            f"{request.path.name}: its gating result {Path(path).name} is unreadable "
            f"({first_line(exc)}) — delete it and run the workflow again"))
    return GatedTube(request=request, tube=meta["tube"], gate_ids=meta["gate_ids"],
                     parents=meta["parents"], gate_events=gate_events,
                     events=int(meta["events"]), has_spillover=bool(meta["has_spillover"]),
                     simulated=bool(meta["simulated"]), seconds=float(meta["seconds"]),
                     keywords=meta.get("keywords"), placements=meta.get("placements"),
                     gating_ml=meta.get("gating_ml"), panel=panel,
                     wider_panel=meta.get("wider_panel"), views=views,
                     unused_markers=tuple(meta.get("unused_markers", ())),
                     shared_events=tuple((str(a), str(b), int(n))
                                         for a, b, n in meta.get("shared_events", ())))
