"""`make demo`: run GeoLink's main jobs through QGIS Processing on real data, write outputs and PNGs to demo/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from qgis_session import start_qgis  # noqa: E402


def check_backend(out: Path) -> None:
    from qgis import processing

    result = processing.run("geolink:checkbackend", {})
    (out / "backend_report.txt").write_text(result["REPORT"] + "\n", encoding="utf-8")
    print(result["REPORT"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    app = start_qgis()
    check_backend(args.out)
    print(f"demo outputs in {args.out}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
