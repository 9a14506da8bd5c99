"""The backend's tasks. Each module defines `HELP`, a `Config` dataclass and `run(config, progress) -> dict`.

The same Config drives the CLI (`geolink <name> ...`, flags from the fields' metadata)
and the worker (`{"task": name, "config": {...}}`). Modules are imported only when
their task runs, so `geolink --help` stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASKS = {
    "doctor": "geolink.tasks.doctor",
    "osm-graph": "geolink.tasks.osm_graph",
    "import-checkpoint": "geolink.tasks.import_checkpoint",
    "text-encoder": "geolink.tasks.text_encoder",
    "classify": "geolink.tasks.classify",
    "embed": "geolink.tasks.embed",
    "zones": "geolink.tasks.zones",
    "similar": "geolink.tasks.similar",
    "cluster": "geolink.tasks.cluster",
    "finetune": "geolink.tasks.finetune",
    "pretrain": "geolink.tasks.pretrain",
    "batch": "geolink.tasks.batch",
}


def available_tasks() -> list:
    """The task names whose module is present in this build."""
    return [name for name, mod in TASKS.items() if importlib.util.find_spec(mod) is not None]


def load_task(name: str) -> ModuleType:
    from ..errors import InputError

    if name not in TASKS or importlib.util.find_spec(TASKS[name]) is None:
        raise InputError(f"Unknown task {name!r}.", hint="Known tasks: " + ", ".join(available_tasks()))
    return importlib.import_module(TASKS[name])
