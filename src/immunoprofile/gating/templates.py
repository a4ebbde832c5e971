"""The Gating-ML 2.0 templates in ``gating/`` and how a tube's channels are fitted to them.

A template names the channels of a BD FACSCanto three-colour tube (``FITC-A``, ``PE-A``,
``PerCP-Cy5-5-A`` and the scatter channels). A file from another instrument carries the
same markers on other channels: its channels are found by marker (``$PnS``) and scatter
name (``$PnN``), and the template's channel names are rewritten to the file's before
FlowKit parses it. The gates themselves are never changed.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PanelError, TemplateError
from ..panels import PANELS, Panel

if TYPE_CHECKING:  # FlowKit is imported only when a template is parsed
    import flowkit as fk

#: Template channel → what it carries (a canonical marker, or the scatter channel itself).
_FLUORESCENCE_ROLES = {"FITC-A": "CD3", "PerCP-Cy5-5-A": "CD45"}
_SPECIFIC_CHANNEL = "PE-A"  # carries the tube's own marker: CD16/56, CD4 or CD8
SCATTER_TEMPLATE_CHANNELS = ("FSC-A", "FSC-H", "SSC-A")
#: Gate that needs each scatter channel, for error messages.
_SCATTER_USERS = {"FSC-A": "Singlets", "FSC-H": "Singlets", "SSC-A": "Lymphocytes"}

_NAME_RE = re.compile(r'(data-type:name=")([^"]*)(")')


def template_dir() -> Path:
    """Folder holding the Gating-ML templates.

    The repository's ``gating/`` folder in a source checkout or editable install; the copy
    shipped inside the package (``immunoprofile/_templates``) in a built wheel.
    """
    shipped = resources.files("immunoprofile") / "_templates"
    if shipped.is_dir():
        return Path(str(shipped))
    checkout = Path(__file__).resolve().parents[3] / "gating"
    if checkout.is_dir():
        return checkout
    raise TemplateError("gating templates not found: reinstall immunoprofile")


def adaptive_template_dir() -> Path:
    """Folder of the shipped adaptive templates (``gating/adaptive/``): the same gates at
    seed positions, each declaring how it is placed from a tube's events."""
    return template_dir() / "adaptive"


def uses_adaptation(tube: str, directory: str | Path | None = None) -> bool:
    """Whether a tube's template declares any adaptive placement (else adaptive gating
    gates it exactly as written, by the fixed path)."""
    from .adaptive_template import declares_adaptation

    return declares_adaptation(template_path(tube, directory))


def template_path(tube: str, directory: str | Path | None = None) -> Path:
    """Path of the Gating-ML template of a tube (``nk``, ``cd4``, ``cd8``).

    Parameters
    ----------
    tube : str
    directory : str or Path, optional
        A folder of templates to use instead of the shipped ones (``--templates``).
    """
    folder = Path(directory) if directory is not None else template_dir()
    path = folder / f"{tube}_tube.xml"
    if not path.is_file():
        raise TemplateError(f"{path}: gating template not found")
    return path


def template_checksums(directory: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every tube's template, for provenance in ``run.json``."""
    return {
        tube: hashlib.sha256(template_path(tube, directory).read_bytes()).hexdigest()
        for tube in PANELS
    }


@dataclass(frozen=True)
class ChannelMap:
    """How a template's channel names map onto one file's channels."""

    pairs: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        """``{template channel: file channel}``."""
        return dict(self.pairs)


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
    roles = {**_FLUORESCENCE_ROLES, _SPECIFIC_CHANNEL: panel.markers[1]}
    for template_channel, marker in roles.items():
        if marker not in markers:
            found = ", ".join(sorted(markers)) or "none"
            raise PanelError(f"{prefix}no {marker} channel (markers found: {found}) — "
                             f"is this a {panel.description} tube?")
        pairs.append((template_channel, markers[marker]))
    for template_channel in SCATTER_TEMPLATE_CHANNELS:
        if template_channel not in scatter:
            raise PanelError(
                f"{prefix}no {template_channel} channel — the {_SCATTER_USERS[template_channel]}"
                f" gate needs it (scatter channels found: "
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


def fitted_template(tube: str, mapping: ChannelMap | None = None,
                    directory: str | Path | None = None) -> str:
    """The Gating-ML text of a tube's template with its channel names fitted to a file.

    This is exactly what :func:`load_strategy` parses (a compiled plan's cache key).
    """
    path = template_path(tube, directory)
    return _fit_text(str(path), mapping.pairs if mapping is not None else ())


def load_strategy(tube: str, mapping: ChannelMap | None = None,
                  directory: str | Path | None = None) -> fk.GatingStrategy:
    """Parse a tube's template with FlowKit, its channel names fitted to a file.

    Parameters
    ----------
    tube : str
        ``nk``, ``cd4`` or ``cd8``.
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
