"""`geolink` command: one subcommand per task, flags generated from each task's Config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import List, Optional

from . import __version__
from .allocator import keep_freed_memory
from .config import base_type, check_config, field_types
from .errors import CommandLineWords, GeoLinkError, as_geolink_error, render
from .progress import Progress, TerminalSink, quiet_library_warnings
from .tasks import TASKS, load_task


def _add_arguments(parser: argparse.ArgumentParser, config_cls: type, skip: typing.Collection[str] = ()) -> None:
    hints = field_types(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        meta = f.metadata
        tp = base_type(hints[f.name])
        kwargs = {"help": meta.get("help", "")}
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        is_list = typing.get_origin(tp) in (list, typing.List)
        if is_list:
            kwargs["nargs"] = "+"
            kwargs["type"] = base_type((typing.get_args(tp) or (str,))[0])
            if not meta.get("positional"):
                kwargs["action"] = "extend"  # `--osm a b` and `--osm a --osm b` both give [a, b]
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float):
            kwargs["type"] = tp
        default = f.default if f.default is not dataclasses.MISSING else None
        if default not in (None, [], "") and not is_list:
            kwargs["help"] += f" (default: {default})"
        if meta.get("positional"):
            parser.add_argument(f.name, **kwargs)
        else:
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            parser.add_argument(flag, dest=f.name, required=bool(meta.get("required")), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geolink", description="GeoLink: imagery + OpenStreetMap foundation model.")
    parser.add_argument("--version", action="version", version=f"geolink {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    for name in TASKS:
        try:
            module = load_task(name)
        except GeoLinkError:
            continue
        p = sub.add_parser(name, help=module.HELP.splitlines()[0], description=module.HELP)
        if name == "batch":
            _add_batch_tasks(p, module)
        else:
            _add_arguments(p, module.Config)
    return parser


def _add_batch_tasks(parser: argparse.ArgumentParser, batch) -> None:
    """`geolink batch TASK`: the batch's own flags and TASK's, less those naming one raster's files."""
    inner = parser.add_subparsers(dest="batch_task", metavar="TASK", required=True)
    for name in batch.TASKS:
        task = load_task(name)
        p = inner.add_parser(name, help=task.HELP.splitlines()[0], description=batch.HELP)
        _add_arguments(p, batch.Config, skip={"task", "options"})
        _add_arguments(p, task.Config, skip=batch.PER_RASTER)


def _config_values(args: argparse.Namespace, module) -> dict:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.Config)
              if getattr(args, f.name, None) is not None}
    if args.task == "batch":
        task = load_task(args.batch_task)
        values["task"] = args.batch_task
        values["options"] = {f.name: getattr(args, f.name) for f in dataclasses.fields(task.Config)
                             if f.name not in module.PER_RASTER and getattr(args, f.name, None) is not None}
    return values


def main(argv: Optional[List[str]] = None) -> int:
    quiet_library_warnings()
    keep_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.task:
        parser.print_help()
        return 2
    module = load_task(args.task)
    values = _config_values(args, module)
    words = CommandLineWords(module.Config)
    sink = TerminalSink(quiet=args.quiet, words=words)
    try:
        config = check_config(module.Config(**values))
        result = module.run(config, Progress(sink))
    except KeyboardInterrupt:
        sink.close()
        print("Cancelled.", file=sys.stderr)
        return 130
    except (GeoLinkError, OSError) as exc:
        error = exc if isinstance(exc, GeoLinkError) else as_geolink_error(exc)
        if error is None:
            raise
        sink.close()
        print(f"error: {render(error.message, words)}", file=sys.stderr)
        if error.hint:
            print(f"hint: {render(error.hint, words)}", file=sys.stderr)
        return 1
    sink.close()
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_result(result)
    if result.get("incomplete"):  # a batch in which some rasters failed: outputs written, exit status 1
        print(f"error: {result['incomplete']}", file=sys.stderr)
        return 1
    return 0


def print_result(result: dict) -> None:
    if result.get("report"):
        print(result["report"])
    for key, path in (result.get("outputs") or {}).items():
        print(f"{key}: {path}")
    for key, value in (result.get("figures") or {}).items():
        if not isinstance(value, (dict, list)):
            print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
