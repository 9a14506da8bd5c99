"""Errors the user can act on: each carries a message and a hint, and crosses the worker boundary."""

from __future__ import annotations

from typing import Optional


class GeoLinkError(Exception):
    """Base of all expected failures; anything else is reported as a crash."""

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(GeoLinkError):
    """Bad input: a file, a layer, a parameter."""


class ModelError(GeoLinkError):
    """A checkpoint or model package that cannot be used."""


class Cancelled(GeoLinkError):
    """The user cancelled the job."""

    def __init__(self, message: str = "Cancelled by the user.", hint: Optional[str] = None):
        super().__init__(message, hint)
