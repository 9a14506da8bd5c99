"""How backend messages read in QGIS: the options and tasks they name (geolink.errors.opt / cmd) become the
algorithm's parameter labels and the Processing algorithms' names, instead of command-line flags."""

from __future__ import annotations

import re
from typing import List, Optional

from ..compat import FLAG_ADVANCED
from ..i18n import tr

# Backend option -> the parameters that set it, where the name is not simply the option in capitals.
PARAMETER_OF = {"raster": ["INPUT"], "src": ["INPUT"], "out": ["OUTPUT"], "osm": ["OSM", "OSM_FILE"]}
# Options set elsewhere in QGIS than by a parameter.
ELSEWHERE = {
    "text_encoder": "the GeoLink settings’ “Tag encoder folder (CLIP)”",
    "colors": "the colours of the labelled layer’s categorized style",
    "model_dirs": "the GeoLink settings’ “Model folder”",
    "yes": "Run (QGIS always goes ahead with a large job, with a warning)",
    "folder": "“Use a folder…” under “Tag text encoder” in the GeoLink models dialog",
}
# Backend tasks done elsewhere in QGIS than by an algorithm.
TASKS_ELSEWHERE = {
    "text-encoder": "“Download” or “Use a folder…” under “Tag text encoder” in the GeoLink models dialog",
}


def short_label(description: str) -> str:
    """A parameter's label without its explanations: "Tile size in pixels (0: the model's)" -> "Tile size in
    pixels"."""
    return re.split(r" \(|, e\.g\.|:", description, maxsplit=1)[0].strip()


class ProcessingWords:
    """Names options by the labels of `alg`'s parameters and tasks by the GeoLink algorithms' names; with no
    `alg` (a dialog running a backend job itself), options by where QGIS sets them."""

    def __init__(self, alg=None):
        self.alg = alg

    def _parameters(self, key: str) -> List[object]:
        if self.alg is None:
            return []
        names = PARAMETER_OF.get(key) or [key.upper()]
        found = [self.alg.parameterDefinition(n) for n in names]
        return [p for p in found if p is not None]

    def option(self, key: str, value: Optional[str]) -> str:
        params = self._parameters(key)
        if not params:
            name = tr(ELSEWHERE[key]) if key in ELSEWHERE else "“" + key.replace("_", " ") + "”"
            return name if value is None else f"{name} = {value}"
        labels = tr(" or ").join(f"“{short_label(p.description())}”" for p in params)
        if value is not None:
            return f"{labels} = {value}"
        advanced = all(p.flags() & FLAG_ADVANCED for p in params)
        return labels + (" " + tr("(Advanced Parameters)") if advanced else "")

    def command(self, name: str) -> str:
        from . import ALGORITHMS

        for cls in ALGORITHMS:
            if (cls.BACKEND_TASK or cls.ALG_ID) == name:
                return "“" + tr(cls.TITLE) + "”"
        if name in TASKS_ELSEWHERE:
            return tr(TASKS_ELSEWHERE[name])
        return tr("the backend command “geolink {name}”").format(name=name)
