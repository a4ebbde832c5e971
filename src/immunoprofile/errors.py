"""The one exception family of immunoprofile.

Every error a user's input can cause is an :class:`ImmunoprofileError`. Its message names
the file, what is wrong and, where we know it, what to do. Anything else escaping the
package is a bug.
"""

from __future__ import annotations


class ImmunoprofileError(Exception):
    """Base class of all errors caused by a user's input (files, manifests, options)."""


class FCSReadError(ImmunoprofileError):
    """An FCS file cannot be read: not FCS, truncated, malformed."""


class PanelError(ImmunoprofileError):
    """A tube's markers do not form a known panel, or a needed channel is missing."""


class ManifestError(ImmunoprofileError):
    """The manifest CSV is missing, malformed, or inconsistent with the files."""


class GatingError(ImmunoprofileError):
    """A tube could not be gated, or its gates hold no usable events (e.g. no beads)."""


class TemplateError(ImmunoprofileError):
    """A Gating-ML template is missing or cannot be parsed."""


class OutputLockedError(ImmunoprofileError):
    """Another live run is writing to the same output folder."""


class CohortError(ImmunoprofileError):
    """A cohort table is missing, malformed, or cannot be joined with profiles."""


class StatsError(ImmunoprofileError):
    """The data cannot be analysed as asked (too few values, a zero count under a log…)."""


class ModelError(ImmunoprofileError):
    """A model file is malformed, altered, or does not fit the data it is asked about."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, as a user is shown it: never empty.

    Control characters (a NUL or a carriage return copied from a file's bytes, which a
    terminal shows as nothing) are dropped, and a message with nothing visible left
    becomes the exception's type name and arguments (``KeyError: ''``), so a reason
    built from it (``cannot be read as FCS: …``) always says something.
    """
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the error
        text = ""
    for line in text.splitlines():
        visible = "".join(c for c in line if c.isprintable() or c == "\t").strip()
        if visible:
            return visible
    arguments = ", ".join(repr(a) for a in getattr(exc, "args", ()))
    return f"{type(exc).__name__}: {arguments}" if arguments else type(exc).__name__
