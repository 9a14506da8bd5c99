"""Errors the user can act on: each carries a message and a hint, and crosses the worker boundary.

A message or a hint names what to change with two markers, so that each front end says it in its own
words and no message is written twice:

    opt("bands")            CLI: --bands            QGIS: “Bands feeding the model” (Advanced Parameters)
    opt("bands", "1,1,1")   CLI: --bands 1,1,1      QGIS: “Bands feeding the model” = 1,1,1
    cmd("finetune")         CLI: geolink finetune   QGIS: “Train classifier from labelled polygons”

`opt` takes a task option (a Config field name: raster, osm, model, tile_size, ...), `cmd` a task name
(`geolink.tasks.TASKS`). Use them inside f-strings:

    raise InputError("The raster has 1 band; the model reads 3.",
                     hint=f"Map bands with {opt('bands')} (e.g. {opt('bands', '1,1,1')} for a grey image).")

The worker sends each text also as `parts` (plain text and the markers, see `parts`); the CLI and QGIS
join them with their own `Words`. Everything else in a message stays plain text in neutral words.

`option` (a GeoLinkError's) names the one task option the error is about, when it is about one, so a client
can point at it (it travels as the error event's "option").
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Protocol

_MARKER = re.compile(r"\{(opt|cmd):([A-Za-z0-9_-]+)(?:=([^{}]*))?\}")


def opt(key: str, value: object = None) -> str:
    """A marker naming the task option `key` (a Config field), optionally with the value to give it."""
    text = "" if value is None else "=" + str(value).replace("{", "(").replace("}", ")")
    return "{opt:" + key + text + "}"


def cmd(name: str) -> str:
    """A marker naming a task (`geolink <name>` in the CLI, the algorithm's name in QGIS)."""
    return "{cmd:" + name + "}"


def parts(text: Optional[str]) -> Optional[List[Dict[str, str]]]:
    """`text` split at its markers: {"text": ...}, {"option": key[, "value": v]} or {"command": name}."""
    if text is None:
        return None
    out: List[Dict[str, str]] = []
    pos = 0
    for match in _MARKER.finditer(text):
        if match.start() > pos:
            out.append({"text": text[pos:match.start()]})
        kind, key, value = match.groups()
        if kind == "cmd":
            out.append({"command": key})
        else:
            out.append({"option": key, **({"value": value} if value is not None else {})})
        pos = match.end()
    if pos < len(text):
        out.append({"text": text[pos:]})
    return out


class Words(Protocol):
    """How a front end names an option and a task."""

    def option(self, key: str, value: Optional[str]) -> str: ...

    def command(self, name: str) -> str: ...


class CommandLineWords:
    """The backend's own words, the CLI's: flags and `geolink <task>` (flags as the Config declares them)."""

    def __init__(self, config_cls: Optional[type] = None):
        import dataclasses

        self.flags: Dict[str, str] = {}
        for f in dataclasses.fields(config_cls) if config_cls is not None else ():
            meta = f.metadata
            self.flags[f.name] = (meta.get("metavar") or f.name.upper()) if meta.get("positional") \
                else meta.get("flag") or "--" + f.name.replace("_", "-")

    def option(self, key: str, value: Optional[str]) -> str:
        flag = self.flags.get(key) or "--" + key.replace("_", "-")
        return flag if value is None or not flag.startswith("-") else f"{flag} {value}"

    def command(self, name: str) -> str:
        return f"geolink {name}"


def join(pieces: List[Dict[str, str]], words: Optional[Words] = None) -> str:
    """Parts (see `parts`) as one text in `words` (default: the command line's)."""
    words = words or CommandLineWords()
    return "".join(p["text"] if "text" in p else words.command(p["command"]) if "command" in p
                   else words.option(p["option"], p.get("value")) for p in pieces)


def render(text: Optional[str], words: Optional[Words] = None) -> Optional[str]:
    """`text` with its markers in `words` (default: the command line's)."""
    return None if text is None else join(parts(text), words)


class GeoLinkError(Exception):
    """Base of all expected failures; anything else is reported as a crash."""

    def __init__(self, message: str, hint: Optional[str] = None, option: Optional[str] = None):
        super().__init__(render(message))
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
