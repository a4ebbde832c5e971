"""Resuming a stopped batch: tubes already gated with the same file, template, engine and
version are read back from the output folder's cache, not gated again."""

from __future__ import annotations

from pathlib import Path

from ..gating.panels import PanelSet
from ..io.manifest import TubeRequest
from .tube import GatedTube, TubeFailure, gate_request_or_failure
from .tube_result import load_tube_result, save_tube_result, tube_result_key


class ResumeCache:
    """Per-tube results kept as they finish, reused when nothing they depend on changed."""

    def __init__(self, folder: Path, checksums: dict, engine: str, keep_keywords: bool,
                 gating: str = "fixed", panels: PanelSet | None = None):
        from .._version import __version__

        self.folder = folder
        self.common = {"templates": checksums, "engine": engine, "gating": gating,
                       "immunoprofile": __version__, "keep_keywords": keep_keywords}
        if panels is not None:  # a lab's panel: which channels carry which markers
            self.common["panels"] = repr(sorted(panels.values(), key=lambda p: p.tube))
        self.engine, self.keep_keywords, self.gating = engine, keep_keywords, gating
        self.panels = panels

    #: Bytes at the start of a file whose checksum identifies it with its size and
    #: modification time: its HEADER and TEXT (acquisition date and times, $TOT, the
    #: spillover) and the first events.
    HEAD_BYTES = 1 << 16

    def provenance(self, request: TubeRequest) -> dict:
        """What a kept tube must match: the file (size, modification time and a SHA-256 of
        its first 64 KiB), the templates, engine, version, options and the manifest's tube.

        Not the whole file's checksum: hashing every byte of every tube took longer than
        gating them. A file rewritten in any way gets a new modification time.
        """
        import hashlib

        stat = request.path.stat()
        with open(request.path, "rb") as handle:
            head = hashlib.sha256(handle.read(self.HEAD_BYTES)).hexdigest()
        return {**self.common, "file": [stat.st_size, stat.st_mtime_ns, head],
                "tube": request.tube}

    def gate(self, request: TubeRequest, template_arg: str | None) -> GatedTube | TubeFailure:
        try:
            provenance = self.provenance(request)
        except OSError:  # unreadable: the reader reports why
            return gate_request_or_failure(request, template_arg, self.engine,
                                           self.keep_keywords, self.gating, self.panels)
        path = self.folder / f"{tube_result_key(request.sample_id)}.npz"
        if path.exists():
            kept = load_tube_result(path, request, provenance)
            if isinstance(kept, GatedTube):
                kept.resumed = True
                return kept
        result = gate_request_or_failure(request, template_arg, self.engine,
                                         self.keep_keywords, self.gating, self.panels)
        if isinstance(result, GatedTube):
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                save_tube_result(result, path, provenance, durable=False)
            except OSError:
                pass  # keeping it only saves time on a rerun
        return result


def gate_resumable(resume: ResumeCache | None, request: TubeRequest, template_arg: str | None,
                   engine: str, keep_keywords: bool,
                   gating: str = "fixed",
                   panels: PanelSet | None = None) -> GatedTube | TubeFailure:
    """Gate one tube, reusing a kept result when there is one (module level, so worker
    processes can take it)."""
    if resume is None:
        return gate_request_or_failure(request, template_arg, engine, keep_keywords, gating,
                                       panels)
    return resume.gate(request, template_arg)
