"""Ground distances in a CRS's units: metres per unit, with the latitude correction of geographic CRSs."""

from __future__ import annotations

import math
from typing import Tuple

METRES_PER_DEGREE = 111_320.0  # along a meridian, and along the equator


def metres_per_unit(wkt: str, latitude: float) -> Tuple[float, float]:
    """(east-west, north-south) metres per CRS unit at `latitude` (degrees; used by geographic CRSs only): a
    projected CRS's linear unit both ways; for degrees, 111.32 km north-south and that times cos(latitude)
    east-west."""
    from osgeo import osr

    srs = osr.SpatialReference(wkt=wkt)
    if srs.IsGeographic():
        return METRES_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6), METRES_PER_DEGREE
    unit = float(srs.GetLinearUnits() or 1.0)
    return unit, unit
