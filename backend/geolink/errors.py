"""Errors the user can act on: each carries a message and a hint, and crosses the worker boundary.

`option` names the task option (its Config field, e.g. "batch_size") the message is about, when it is
about one: the CLI says it as a flag (--batch-size), QGIS can say it as the parameter's label."""

from __future__ import annotations

from typing import Optional


class GeoLinkError(Exception):
    """Base of all expected failures; anything else is reported as a crash."""

    def __init__(self, message: str, hint: Optional[str] = None, option: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.option = option


class InputError(GeoLinkError):
    """Bad input: a file, a layer, a parameter."""


class OutputError(GeoLinkError):
    """An output that cannot be written (disk full, read-only folder); nothing is left under its name."""


class ModelError(GeoLinkError):
    """A checkpoint or model package that cannot be used."""


def as_geolink_error(exc: BaseException) -> Optional[GeoLinkError]:
    """An unexpected OSError said plainly (disk full, read-only, no permission, missing file), naming its file;
    None for anything else (a bug, reported with its traceback)."""
    if not isinstance(exc, OSError) or not getattr(exc, "filename", None):
        return None
    from .atomic import explain_write_error

    plain = explain_write_error(exc, exc.filename)
    if plain is not None:
        return plain
    return GeoLinkError(f"Cannot use {exc.filename}: {exc.strerror or exc}.",
                        hint="Check that the file or folder exists and that you may read and write it.")


class Cancelled(GeoLinkError):
    """The user cancelled the job."""

    def __init__(self, message: str = "Cancelled by the user.", hint: Optional[str] = None):
        super().__init__(message, hint)
