"""The Gating-ML 2.0 templates in ``gating/`` and how a tube's channels are fitted to them.

A template names the channels of a BD FACSCanto three-colour tube (``FITC-A``, ``PE-A``,
``PerCP-Cy5-5-A`` and the scatter channels). A file from another instrument carries the
same markers on other channels: its channels are found by marker (``$PnS``) and scatter
name (``$PnN``), and the template's channel names are rewritten to the file's before
FlowKit parses it. The gates themselves are never changed.

A template is checked before any tube is gated (:func:`check_template`): it must define
the gates its panel's counts are read from (:attr:`~immunoprofile.gating.panels.Panel.gate_ids`),
the tube's own population and ``CD3pos`` within ``Lymphocytes``, and gate only on the
channels fitted to a file (``FITC-A``, ``PE-A``, ``PerCP-Cy5-5-A``, ``FSC-A``, ``FSC-H``,
``SSC-A``). Otherwise a renamed ``CD4pos`` gives an empty ``cd4_per_ul`` for every patient,
and a gate on a channel no file is fitted to fails tube by tube. The check reads the XML
with the standard library, so a run whose compiled programs are cached still starts
without FlowKit; FlowKit parses a template once per template text and FlowKit version (a
marker in the cache remembers it) to refuse, once, what is well-formed XML but not valid
Gating-ML.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PanelError, TemplateError
from .panel_files import default_panels
from .panel_spec import Panel, within_gate
from .shipped import adaptive_template_dir as adaptive_template_dir
from .shipped import template_dir as template_dir

if TYPE_CHECKING:  # FlowKit is imported only when a template is parsed
    import flowkit as fk

SCATTER_TEMPLATE_CHANNELS = ("FSC-A", "FSC-H", "SSC-A")
#: Gate that needs each scatter channel in the study's templates, for error messages.
_SCATTER_USERS = {"FSC-A": "Singlets", "FSC-H": "Singlets", "SSC-A": "Lymphocytes"}

#: Every channel the study's templates may gate on: those :func:`channel_map` fits to a
#: file's (a panel's own: its ``channels`` and ``scatter``).
TEMPLATE_CHANNELS = ("FITC-A", "PerCP-Cy5-5-A", "PE-A", *SCATTER_TEMPLATE_CHANNELS)

def as_panel(tube: str | Panel) -> Panel:
    """A tube's :class:`Panel`: itself, or a shipped tube by name (``nk``, ``cd4``, …)."""
    if isinstance(tube, Panel):
        return tube
    return default_panels()[tube]

_GATING = "{http://www.isac-net.org/std/Gating-ML/v2.0/gating}"
_TRANSFORMS = "{http://www.isac-net.org/std/Gating-ML/v2.0/transformations}"
_DATATYPES = "{http://www.isac-net.org/std/Gating-ML/v2.0/datatypes}"

_NAME_RE = re.compile(r'(data-type:name=")([^"]*)(")')


def uses_adaptation(tube: str | Panel, directory: str | Path | None = None) -> bool:
    """Whether a tube's template declares any adaptive placement (else adaptive gating
    gates it exactly as written, by the fixed path)."""
    path = template_path(tube, directory)
    stat = path.stat()
    return _declares_adaptation(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _declares_adaptation(path: str, mtime_ns: int, size: int) -> bool:
    """Read once per template file version, not once per tube."""
    from .adaptive_template import declares_adaptation

    return declares_adaptation(path)


def template_path(tube: str | Panel, directory: str | Path | None = None) -> Path:
    """Path of the Gating-ML template of a tube.

    Parameters
    ----------
    tube : str or Panel
        A shipped tube's name (``nk``, ``cd4``, ``cd8``) or a panel's tube.
    directory : str or Path, optional
        A folder of templates to use instead of the shipped ones (``--templates``, or the
        shipped adaptive ones). A lab's panel (``--panels``) finds its templates beside
        its panel file whatever this says.
    """
    panel = as_panel(tube)
    if panel.folder is not None:
        folder = Path(panel.folder)
    else:
        folder = Path(directory) if directory is not None else template_dir()
    path = folder / panel.template_file
    if not path.is_file():
        raise TemplateError(f"{path}: gating template not found")
    return path


def template_checksums(directory: str | Path | None = None,
                       panels: Mapping[str, Panel] | None = None) -> dict[str, str]:
    """SHA-256 of every tube's template, for provenance in ``run.json`` (the shipped
    panels' tubes, and a lab's when ``panels`` holds them)."""
    panels = panels if panels is not None else default_panels()
    return {
        tube: hashlib.sha256(template_path(panel, directory).read_bytes()).hexdigest()
        for tube, panel in panels.items()
    }


def check_templates(directory: str | Path | None = None,
                    tubes: tuple[str | Panel, ...] | None = None,
                    panels: Mapping[str, Panel] | None = None) -> None:
    """Check the templates of a batch once, before any tube is gated.

    Parameters
    ----------
    directory : str or Path, optional
        Folder of templates (``--templates``); the shipped ones when None.
    tubes : tuple of str or Panel, optional
        The tubes to check; every tube of ``panels`` by default.
    panels : mapping, optional
        The run's panels (the shipped ones when None).

    Raises
    ------
    TemplateError
        A template is missing, unparsable, lacks a gate its panel needs, or gates on a
        channel no file is fitted to (see :func:`check_template`).
    """
    panels = panels if panels is not None else default_panels()
    for tube in tubes or tuple(panels.values()):
        check_template(panels[tube] if isinstance(tube, str) and tube in panels else tube,
                       directory)


def check_template(tube: str | Panel, directory: str | Path | None = None) -> None:
    """Refuse a tube's template that cannot give its panel's counts.

    Parameters
    ----------
    tube : str or Panel
        A shipped tube's name (``nk``, ``cd4``, ``cd8``) or a panel's tube.
    directory : str or Path, optional
        Folder of templates; the shipped ones when None.

    Raises
    ------
    TemplateError
        Naming the template file and, where it is about one, the gate: not well-formed
        XML or not Gating-ML 2.0 (FlowKit's parse, once per template text); a gate of
        :attr:`~immunoprofile.gating.panels.Panel.gate_ids` missing; the tube's population or
        ``CD3pos`` outside ``Lymphocytes``; a gate on a channel its panel does not fit
        (:data:`TEMPLATE_CHANNELS` for the study's tubes); a gate ID used twice; a
        ``parent_id``, transformation or compensation the template does not define.
    """
    panel = as_panel(tube)
    path = template_path(panel, directory)
    stat = path.stat()
    _check_template(str(path), stat.st_mtime_ns, stat.st_size, panel)


def fitted_channels(panel: Panel) -> tuple[str, ...]:
    """The template channels :func:`channel_map` fits to a file's: a template gates on
    these only."""
    return (*panel.template_channels, *panel.scatter)


@lru_cache(maxsize=64)
def _check_template(path: str, mtime_ns: int, size: int, panel: Panel) -> None:
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8")
        root = ET.fromstring(text)
    except (OSError, UnicodeDecodeError, ET.ParseError) as exc:
        raise TemplateError(f"{path}: not a valid Gating-ML 2.0 template: {exc}") from None
    if root.tag != f"{_GATING}Gating-ML":
        raise TemplateError(f"{path}: not a Gating-ML 2.0 template (its root element is "
                            f"{root.tag.rsplit('}', 1)[-1]}, not gating:Gating-ML)")
    parents, channels, refs = _template_gates(root, path)
    missing = [g for g in panel.gate_ids if g not in parents]
    if missing:
        raise TemplateError(
            f"{path}: no gate {', '.join(missing)} — the {panel.description} tube's counts "
            f"are read from gates {', '.join(panel.gate_ids)} (gates in {name}: "
            f"{', '.join(parents) or 'none'})")
    for gate_id, parent in parents.items():
        if parent is not None and parent not in parents:
            raise TemplateError(f"{path}: gate {gate_id} has parent_id {parent}, which is no "
                                "gate of the template")
    for gate_id in panel.within_lymphocytes:
        if not within_gate(gate_id, parents, panel.lymphocyte_gate):
            raise TemplateError(
                f"{path}: gate {gate_id} is not within {panel.lymphocyte_gate} — its "
                f"absolute count and % of lymphocytes are made only for gates within it")
    fitted = fitted_channels(panel)
    for gate_id, used in channels.items():
        unknown = [c for c in used if c not in fitted]
        if unknown:
            raise TemplateError(
                f"{path}: gate {gate_id} uses channel {', '.join(unknown)}, which is not "
                f"fitted to a tube's channels — a template gates on "
                f"{', '.join(fitted)}")
    defined = {t.get(f"{_TRANSFORMS}id") for t in root.iter(f"{_TRANSFORMS}transformation")}
    matrices = {m.get(f"{_TRANSFORMS}id") for m in root.iter(f"{_TRANSFORMS}spectrumMatrix")}
    for gate_id, (transforms, compensations) in refs.items():
        for ref in transforms:
            if ref not in defined:
                raise TemplateError(f"{path}: gate {gate_id} refers to transformation {ref}, "
                                    "which the template does not define")
        for ref in compensations:
            if ref not in matrices | {"FCS", "uncompensated"}:
                raise TemplateError(
                    f"{path}: gate {gate_id} refers to compensation {ref}, which is neither "
                    "FCS (the file's spillover), uncompensated, nor a spectrumMatrix of the "
                    "template")
    _flowkit_check(path, mtime_ns, text)


def _template_gates(root: ET.Element, path: str) -> tuple[
        dict[str, str | None], dict[str, list[str]], dict[str, tuple[list[str], list[str]]]]:
    """``{gate ID: parent ID}``, ``{gate ID: channels it gates on}`` and
    ``{gate ID: (transformation IDs, compensation IDs) its dimensions refer to}``."""
    ratios = {t.get(f"{_TRANSFORMS}id"): [d.get(f"{_DATATYPES}name")
                                         for d in t.iter(f"{_DATATYPES}fcs-dimension")]
              for t in root.iter(f"{_TRANSFORMS}transformation")}
    parents: dict[str, str | None] = {}
    channels: dict[str, list[str]] = {}
    refs: dict[str, tuple[list[str], list[str]]] = {}
    for gate in root:
        if not isinstance(gate.tag, str) or not (gate.tag.startswith(_GATING)
                                                 and gate.tag.endswith("Gate")):
            continue
        gate_id = gate.get(f"{_GATING}id") or "(no id)"
        ids = [gate_id] + [q.get(f"{_GATING}id") or "(no id)"
                           for q in gate.iter(f"{_GATING}Quadrant")]
        used = [d.get(f"{_DATATYPES}name") or "(no name)"
                for d in gate.iter(f"{_DATATYPES}fcs-dimension")]
        for derived in gate.iter(f"{_DATATYPES}new-dimension"):
            used += ratios.get(derived.get(f"{_DATATYPES}transformation-ref"), [])
        axes = [*gate.iter(f"{_GATING}dimension"), *gate.iter(f"{_GATING}divider")]
        transforms = [a.get(f"{_GATING}transformation-ref") for a in axes]
        compensations = [a.get(f"{_GATING}compensation-ref") for a in axes]
        for one in ids:
            if one in parents:
                raise TemplateError(f"{path}: gate ID {one} is used twice")
            parents[one] = gate.get(f"{_GATING}parent_id")
            channels[one] = list(dict.fromkeys(used))
            refs[one] = ([t for t in dict.fromkeys(transforms) if t is not None],
                         [c for c in dict.fromkeys(compensations) if c is not None])
    return parents, channels, refs


def _flowkit_check(path: str, mtime_ns: int, text: str) -> None:
    """FlowKit's parse of a template, once per template text and FlowKit version: a marker
    in the cache remembers a success, so later runs need not import FlowKit."""
    from importlib.metadata import PackageNotFoundError, version

    from .._compile.aot import cache_root
    from ..io.atomic import atomic_write_text

    try:
        flowkit_version = version("flowkit")
    except PackageNotFoundError:
        flowkit_version = "unknown"
    digest = hashlib.sha256(f"{flowkit_version}\x00{text}".encode()).hexdigest()
    marker = cache_root() / "templates" / f"{digest}.ok"
    if marker.is_file():
        return
    _parse(path, mtime_ns, ())  # raises TemplateError
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, f"{path}\n")


@dataclass(frozen=True)
class ChannelMap:
    """How a template's channel names map onto one file's channels."""

    pairs: tuple[tuple[str, str], ...]


def channel_map(panel: Panel, markers: dict[str, str], scatter: dict[str, str],
                source: str = "") -> ChannelMap:
    """Fit a tube's channels to its panel's template.

    Parameters
    ----------
    panel : Panel
    markers : dict
        ``{marker: file channel}`` from the file's ``$PnS``.
    scatter : dict
        ``{template scatter channel: file channel}``.
    source : str
        File name for error messages.

    Returns
    -------
    ChannelMap

    Raises
    ------
    PanelError
        A marker or scatter channel the gates need is absent.
    """
    prefix = f"{source}: " if source else ""
    pairs: list[tuple[str, str]] = []
    for template_channel, marker in panel.template_channels.items():
        if marker not in markers:
            found = ", ".join(sorted(markers)) or "none"
            raise PanelError(f"{prefix}no {marker} channel (markers found: {found}) — "
                             f"is this a {panel.description} tube?")
        pairs.append((template_channel, markers[marker]))
    for template_channel in panel.scatter:
        if template_channel not in scatter:
            user = (f"the {_SCATTER_USERS[template_channel]} gate needs it"
                    if not panel.folder and template_channel in _SCATTER_USERS
                    else f"the {panel.tube} template gates on it")
            raise PanelError(
                f"{prefix}no {template_channel} channel — {user} (scatter channels found: "
                f"{', '.join(scatter.values()) or 'none'})"
            )
        pairs.append((template_channel, scatter[template_channel]))
    used: dict[str, str] = {}
    for template_channel, file_channel in pairs:
        if file_channel in used:
            raise PanelError(
                f"{prefix}channel {file_channel} would serve as both {used[file_channel]} and "
                f"{template_channel} — its $PnS names several of the panel's markers")
        used[file_channel] = template_channel
    return ChannelMap(tuple(pairs))


def _fit_text(path: str, pairs: tuple[tuple[str, str], ...]) -> str:
    text = Path(path).read_text(encoding="utf-8")
    mapping = dict(pairs)
    return _NAME_RE.sub(lambda m: m.group(1) + mapping.get(m.group(2), m.group(2)) + m.group(3),
                        text)


@lru_cache(maxsize=64)
def _parse(path: str, mtime_ns: int, pairs: tuple[tuple[str, str], ...]) -> fk.GatingStrategy:
    import flowkit as fk

    text = _fit_text(path, pairs)
    try:
        return fk.parse_gating_xml(io.BytesIO(text.encode("utf-8")))
    except Exception as exc:
        raise TemplateError(
            f"{Path(path).name}: not a valid Gating-ML 2.0 template: {exc}") from None


def fitted_template(tube: str | Panel, mapping: ChannelMap | None = None,
                    directory: str | Path | None = None) -> str:
    """The Gating-ML text of a tube's template with its channel names fitted to a file.

    This is exactly what :func:`load_strategy` parses (a compiled plan's cache key).
    """
    path = template_path(tube, directory)
    return _fit_text(str(path), mapping.pairs if mapping is not None else ())


def load_strategy(tube: str | Panel, mapping: ChannelMap | None = None,
                  directory: str | Path | None = None) -> fk.GatingStrategy:
    """Parse a tube's template with FlowKit, its channel names fitted to a file.

    Parameters
    ----------
    tube : str or Panel
        A shipped tube's name (``nk``, ``cd4``, ``cd8``) or a panel's tube.
    mapping : ChannelMap, optional
        From :func:`channel_map`; the template's own names when omitted.
    directory : str or Path, optional
        Folder of templates to use instead of the shipped ones.

    Returns
    -------
    flowkit.GatingStrategy
        A fresh parse is cached per template and mapping; callers must not modify it.
    """
    path = template_path(tube, directory)
    pairs = mapping.pairs if mapping is not None else ()
    return _parse(str(path), path.stat().st_mtime_ns, pairs)
