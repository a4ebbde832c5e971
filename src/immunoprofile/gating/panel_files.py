"""Panel files: a panel a lab runs, described as data (YAML or JSON).

A panel file names the panel's tubes and, for each, its Gating-ML template, which template
channel carries which marker, the gate the tube is for and the populations it reports as
``profiles.csv`` columns (the format: ``gating/README.md``, "Panels"; the schema:
``schemas/panel.schema.yaml``, checked with ``jsonschema``). The shipped panels are in
``gating/panels/``; ``--panels DIR`` adds every ``*.yaml``, ``*.yml`` and ``*.json`` of a
folder. Files are read once per run (cached by folder and file versions).

YAML because a lab writes and comments these files by hand; the schema in JSON Schema so
that the same rules can be checked by any tool, and every refusal names the file, the place
in it and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import PanelError
from ..io.channels import markers_in_label
from .panel_spec import DEFAULT_SCATTER, Panel, PanelQC, PanelSet
from .shipped import template_dir

#: File suffixes read as panel files.
PANEL_SUFFIXES = (".yaml", ".yml", ".json")


def shipped_panel_dir() -> Path:
    """Folder of the shipped panel files (``gating/panels/``)."""
    return template_dir() / "panels"


def default_panels() -> PanelSet:
    """The shipped panels (``gating/panels/``): the study's three tubes by default."""
    return load_panels(())


def resolve_panels(panels: str | Path | Sequence[str | Path] | PanelSet | None
                   ) -> PanelSet | None:
    """The panels of a run: None (the shipped ones) when no folder of a lab's panel files
    is given, else the shipped panels and those (:func:`load_panels`).

    Raises
    ------
    PanelError
        A folder or panel file is not valid, or two files define one tube.
    """
    if panels is None or isinstance(panels, PanelSet):
        return panels
    folders = [panels] if isinstance(panels, str | Path) else list(panels)
    return load_panels(folders) if folders else None


def panel_schema_path() -> Path:
    """The panel file schema: ``schemas/panel.schema.yaml`` in a checkout, its copy inside
    the package (``immunoprofile/_schemas``) in a built wheel."""
    shipped = resources.files("immunoprofile") / "_schemas" / "panel.schema.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[3] / "schemas" / "panel.schema.yaml"


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = _yaml_load(panel_schema_path().read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def read_panel_file(path: str | Path, *, shipped: bool = False) -> list[Panel]:
    """The tubes of one panel file.

    Parameters
    ----------
    path : str or Path
    shipped : bool
        A shipped panel: its templates are the shipped ones (``gating/``, or
        ``gating/adaptive/`` for adaptive gating, or ``--templates``); a lab's panel finds
        its templates beside the file.

    Returns
    -------
    list of Panel
        One per tube, in the file's order.

    Raises
    ------
    PanelError
        Naming the file: not readable, not YAML/JSON, or not what the schema allows (the
        place in the file and the rule broken).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PanelError(f"{path}: panel file cannot be read: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = _yaml_load(text)
    except Exception as exc:  # yaml's and json's parse errors, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PanelError(f"{path}: not a valid panel file: {first}") from None
    # The shipped files too: the README lets a lab edit gating/panels/study.yaml in place.
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        worst = errors[0]
        where = "/".join(str(p) for p in worst.absolute_path) or "(top level)"
        raise PanelError(f"{path}: not a valid panel file: at {where}: {worst.message} "
                         "(the format: gating/README.md, Panels)")
    gates = data.get("gates", {})
    qc = PanelQC.from_file(data.get("qc", {}))
    aliases = tuple((marker, tuple(spellings))
                    for marker, spellings in data.get("aliases", {}).items())
    panels = []
    for tube, spec in data["tubes"].items():
        if not isinstance(tube, str):
            raise PanelError(f"{path}: tube name {tube!r} is not text — quote it")
        channels = tuple((str(c), str(m)) for c, m in spec["channels"].items())
        for _, marker in channels:
            if markers_in_label(marker) != [marker] and marker not in dict(aliases):
                canonical = ", ".join(markers_in_label(marker)) or "no CD marker"
                raise PanelError(
                    f"{path}: tube {tube}: marker {marker!r} is not how immunoprofile names "
                    f"it (a $PnS of {marker!r} reads as {canonical}) — write the canonical "
                    "name (CD4, CD16/56) or give its spellings under aliases")
        scatter = tuple(spec.get("scatter", DEFAULT_SCATTER))
        overlap = set(dict(channels)) & set(scatter)
        if overlap:
            raise PanelError(f"{path}: tube {tube}: {', '.join(sorted(overlap))} is named "
                             "both as a fluorescence and as a scatter channel")
        markers = [m for _, m in channels]
        if len(set(markers)) != len(markers):
            raise PanelError(f"{path}: tube {tube}: a marker is named on two channels")
        columns = [c for c in spec["reports"].values()]
        if len(set(columns)) != len(columns):
            raise PanelError(f"{path}: tube {tube}: two gates report the same column")
        panels.append(Panel(
            tube=tube, markers=tuple(markers), population=spec["population"],
            panel=data["panel"], template=spec["template"], channels=channels,
            scatter=scatter, reports=tuple(spec["reports"].items()),
            bead_gate=gates.get("beads", "Beads"),
            lymphocyte_gate=gates.get("lymphocytes", "Lymphocytes"),
            t_cell_gate=gates.get("t_cells", "CD3pos"),
            folder=None if shipped else str(path.parent.resolve()),
            aliases=aliases, qc=qc))
    _check_qc_gates(path, panels, qc, data.get("qc", {}))
    return panels


def _check_qc_gates(path: Path, panels: Sequence[Panel], qc: PanelQC,
                    given: Mapping | None = None) -> None:
    """The lymphosum must be a sum that means something: each gate one that some tube
    counts within the lymphocytes (its T-cell gate, population or a reported gate; not
    the lymphocyte gate itself), and its ranges in order, the warning range inside the
    failure range. A misspelt gate would sum nothing, a reversed range flag every
    patient. ``given``: the file's ``qc`` as written, so that a message says which of
    the limits it quotes are defaults the file left out."""
    given = given or {}
    lymphosum = given.get("lymphosum") or {}
    events_given = given.get("lymphocyte_events") or {}

    def shown(value, written: bool) -> str:
        return f"{value}" if written else f"{value} (the default: the file gives none)"

    known = {g for p in panels for g in p.within_lymphocytes if g != p.lymphocyte_gate}
    missing = [g for g in qc.lymphosum_gates if g not in known]
    if missing:
        raise PanelError(f"{path}: qc: lymphosum gate {missing[0]!r} is not a gate any tube "
                         "of the panel counts within the lymphocytes (its t_cells, "
                         "population or reports)")
    (warn_lo, warn_hi), (fail_lo, fail_hi) = qc.lymphosum_warn, qc.lymphosum_fail
    warn = shown(list(qc.lymphosum_warn), "warn" in lymphosum)
    fail = shown(list(qc.lymphosum_fail), "fail" in lymphosum)
    if not (warn_lo < warn_hi and fail_lo < fail_hi):
        raise PanelError(f"{path}: qc: lymphosum ranges must be [low, high] with low < high "
                         f"(warn {warn}, fail {fail})")
    if not (fail_lo <= warn_lo and warn_hi <= fail_hi):
        raise PanelError(f"{path}: qc: the lymphosum's warn range {warn} must lie within "
                         f"its fail range {fail}")
    events = (qc.lymphocyte_events_warn, qc.lymphocyte_events_fail)
    if None not in events and events[1] > events[0]:
        raise PanelError(f"{path}: qc: lymphocyte_events fail "
                         f"{shown(events[1], 'fail' in events_given)} is above warn "
                         f"{shown(events[0], 'warn' in events_given)}: the floor must be "
                         "the lower limit")


def load_panels(folders: Iterable[str | Path] = ()) -> PanelSet:
    """The shipped panels and every panel file in ``folders`` (``--panels``).

    Parameters
    ----------
    folders : iterable of str or Path
        Folders of a lab's panel files (``*.yaml``, ``*.yml``, ``*.json``).

    Returns
    -------
    PanelSet

    Raises
    ------
    PanelError
        A folder is missing or holds no panel file; a file is not valid
        (:func:`read_panel_file`); two files define the same tube, or two of a lab's
        files the same panel. A lab's file that names a shipped panel (``panel:
        tbnk6``) replaces that panel: its limits and its templates (beside the file).
    """
    key = _shipped_key()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise PanelError(f"{folder}: no such folder of panel files (--panels)")
        mine = _panel_files(folder)
        if not mine:
            raise PanelError(f"{folder}: holds no panel file (*.yaml, *.yml, *.json)")
        key += tuple((str(p.resolve()), False, *_version(p)) for p in mine)
    return _load(key)


#: Stat signature of each shipped panel file → its part of :func:`load_panels`' key.
_SHIPPED_SEEN: dict[tuple, tuple] = {}


def _shipped_key() -> tuple:
    """The shipped panel files' part of :func:`load_panels`' key: resolved path, and the
    SHA-256 of the content. The hash is taken again only when a file's stat signature
    (inode, size, modification and change times) differs from the last one seen: every
    tube of a batch asks for the panels, and installed package data change between runs,
    not within one."""
    key = []
    for path in _panel_files(shipped_panel_dir()):
        st = path.stat()
        signature = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if signature not in _SHIPPED_SEEN:
            _SHIPPED_SEEN[signature] = (str(path.resolve()), True, *_version(path))
        key.append(_SHIPPED_SEEN[signature])
    return tuple(key)


def _yaml_load(text: str):
    """YAML through libyaml's parser where PyYAML was built with it (the same documents,
    several times faster), else PyYAML's own."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _panel_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in PANEL_SUFFIXES)


def _version(path: Path) -> tuple[str]:
    """The file's content (a SHA-256): an edit is seen whatever its timestamps say."""
    import hashlib

    return (hashlib.sha256(path.read_bytes()).hexdigest(),)


@lru_cache(maxsize=16)
def _load(files: Sequence[tuple]) -> PanelSet:
    tubes: dict[str, tuple[Panel, str]] = {}
    names: dict[str, tuple[str, bool]] = {}  # panel name → (its file, shipped)
    for path, shipped, *_ in files:
        panels = read_panel_file(path, shipped=shipped)
        if not panels:
            continue
        name = panels[0].panel
        if name in names:
            first, first_shipped = names[name]
            if not first_shipped or shipped:
                raise PanelError(f"{path}: panel {name!r} is also defined by {first} — "
                                 "a panel name must be unique")
            # a lab's file named as a shipped panel replaces it (its own limits, templates)
            # in its place: the order of the panel set (whose limits a patient with tubes
            # of several panels is held to) stays the shipped one
            items = list(tubes.items())
            slot = next(i for i, (_, v) in enumerate(items) if v[0].panel == name)
            tubes = {t: v for t, v in items[:slot] if v[0].panel != name}
            after = {t: v for t, v in items[slot:] if v[0].panel != name}
        else:
            after = {}
        names[name] = (path, shipped)
        for panel in panels:
            taken = tubes.get(panel.tube) or after.get(panel.tube)
            if taken is not None:
                raise PanelError(f"{path}: tube {panel.tube!r} is also defined by "
                                 f"{taken[1]} — a tube name must be unique")
            tubes[panel.tube] = (panel, path)
        tubes.update(after)
    return PanelSet(p for p, _ in tubes.values())
