#!/usr/bin/env bash
# Run the QGIS-side tests on a newer QGIS: a Debian system built with debootstrap and cached outside the
# repository (reused while healthy, rebuilt when broken), Debian's QGIS in it, a backend environment made for
# its Python by the plugin's own installer, and this repository bind-mounted at /geolink.
#
#   tools/test_qgis.sh 3.40|3.44 [pytest args]   tests/qgis (or the given tests) on QGIS 3.40 (trixie) or 3.44 (sid)
#   tools/test_qgis.sh 3.40 --make-test          a fresh clone of HEAD passes `make test` on that Debian
#   tools/test_qgis.sh 3.40 --prepare            only build what the tests need (CI does it beside the host suite)
#
# Needs root (debootstrap, chroot, mount). GEOLINK_QGIS_CACHE moves the cache (default /var/cache/geolink-test-qgis).
set -euo pipefail

QGIS=${1:?usage: tools/test_qgis.sh 3.40|3.44 [--make-test | --prepare | pytest args]}
shift
case $QGIS in
  3.40) SUITE=trixie ;;
  3.44) SUITE=sid ;;
  *) echo "QGIS=$QGIS is not offered: use 3.40 (Debian 13 trixie) or 3.44 (Debian sid)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot, mount): sudo make test-qgis QGIS=$QGIS" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${GEOLINK_QGIS_CACHE:-/var/cache/geolink-test-qgis}
ROOTFS=$CACHE/$SUITE
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The Makefile's APT_PACKAGES, plus what the harness itself needs.
PACKAGES="qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv xvfb xauth make git ca-certificates fonts-dejavu-core"
VENV=/opt/geolink-venv
SETUP_INPUTS=(backend/pyproject.toml backend/constraints.txt geolink_qgis/backend_installer.py)

MOUNTS=()
cleanup() {  # processes left inside the system first (a worker, Xvfb), then the mounts, innermost first
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOTFS" ] && kill "${p#/proc/}" 2>/dev/null
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || true
  done
  MOUNTS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mnt() {  # mnt TARGET-in-root mount-args...
  mkdir -p "$ROOTFS$1"
  mount "${@:2}" "$ROOTFS$1"
  MOUNTS+=("$ROOTFS$1")
}
HOST_CA=/etc/ssl/host-ca-certificates.crt  # the host's trust store: PyPI may sit behind the host's TLS proxy
in_root() {
  chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PIP_CERT=$HOST_CA SSL_CERT_FILE=$HOST_CA REQUESTS_CA_BUNDLE=$HOST_CA "$@"
}
stamp() { cat "$ROOTFS/$1" 2>/dev/null || true; }
elapsed() { echo "[test-qgis] $1 ($((SECONDS - $2)) s)"; }

unmount_stale() {  # mounts left by a killed run (SIGKILL skips the trap); with the lock held none is in use
  awk -v r="$ROOTFS/" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m"
  done
}

remove_root() {  # only with nothing mounted below it: a bind of the repository must never be deleted
  cleanup
  if grep -q " $ROOTFS/" /proc/self/mounts; then echo "still mounted under $ROOTFS; not removing it" >&2; exit 1; fi
  rm -rf "$ROOTFS" "$ROOTFS.partial"
}

build_base() {
  local t=$SECONDS
  [ -f "$ROOTFS/.geolink-base" ] && return
  remove_root
  echo "[test-qgis] debootstrap $SUITE into $ROOTFS"
  mkdir -p "$CACHE/debs"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$ROOTFS.partial" "$MIRROR" >/dev/null
  touch "$ROOTFS.partial/.geolink-base"
  mv "$ROOTFS.partial" "$ROOTFS"
  elapsed "debootstrap $SUITE" "$t"
}

mount_system() {
  mnt /proc -t proc proc
  mnt /sys -t sysfs sysfs
  mnt /dev --bind /dev
  mnt /dev/pts --bind /dev/pts
  mkdir -p "$CACHE/apt/$SUITE" "$CACHE/data/$SUITE"
  mnt /var/cache/apt/archives --bind "$CACHE/apt/$SUITE"  # .debs kept for the next rebuild
  mnt /var/cache/geolink --bind "$CACHE/data/$SUITE"      # the sample data, fetched with this GDAL
  cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  # The archive this network reaches is a snapshot: sid's Release file is past its Valid-Until date.
  echo 'Acquire::Check-Valid-Until "false";' >"$ROOTFS/etc/apt/apt.conf.d/99geolink-snapshot"
  echo force-unsafe-io >"$ROOTFS/etc/dpkg/dpkg.cfg.d/geolink-unsafe-io"  # no fsync per file: a throw-away system
  mkdir -p "$(dirname "$ROOTFS$HOST_CA")"
  cp -L "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS$HOST_CA"
}

install_qgis() {
  local t=$SECONDS
  if [ "$(stamp .geolink-packages)" != "$PACKAGES" ]; then
    echo "[test-qgis] apt-get install $PACKAGES"
    in_root apt-get update -qq
    # shellcheck disable=SC2086
    in_root apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
    echo "$PACKAGES" >"$ROOTFS/.geolink-packages"
    elapsed "QGIS installed" "$t"
  fi
  in_root python3 -c "import qgis.core, osgeo.gdal" && in_root sh -c "command -v qgis_process.bin >/dev/null"
}

install_backend() {  # the plugin's own installer, for this system's Python; redone when its inputs change
  local t=$SECONDS want
  want=$(cd "$REPO" && cat "${SETUP_INPUTS[@]}" | sha256sum)
  [ "$(stamp $VENV/.geolink-setup)" = "$want" ] && return
  echo "[test-qgis] backend environment in $VENV"
  in_root sh -c "cd /geolink && python3 -m geolink_qgis.backend_installer --venv $VENV --backend backend --editable --extras dev"
  echo "$want" >"$ROOTFS$VENV/.geolink-setup"
  elapsed "backend installed, $(du -sh "$ROOTFS$VENV" | cut -f1) in the environment" "$t"
}

START=$SECONDS
mkdir -p "$CACHE"
exec 9>"$CACHE/$SUITE.lock"  # one run per system at a time: the cleanup ends every process inside it
flock 9
unmount_stale
build_base
mount_system
if ! install_qgis; then
  echo "[test-qgis] the cached $SUITE system is broken; rebuilding it"
  remove_root
  build_base
  mount_system
  install_qgis
fi
mnt /geolink --bind "$REPO"
[ -f "$REPO/../shared/README.md" ] && mnt /shared --bind "$REPO/../shared" -o ro
install_backend
[ -f "$CACHE/data/$SUITE/data/READY" ] \
  || in_root sh -c "cd /geolink && $VENV/bin/python tools/fetch_data.py --cache /var/cache/geolink/pypi --out /var/cache/geolink/data"

echo "[test-qgis] Debian $SUITE $(cat "$ROOTFS/etc/debian_version"), $(in_root python3 --version)," \
     "QGIS $(in_root python3 -c 'from qgis.core import Qgis; print(Qgis.version())')"
HEADLESS=(QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=1)
case ${1:-} in
  --prepare) ;;
  --make-test)  # a fresh clone of HEAD (committed work only) with ../shared beside it, as CI has it
    rm -rf "$ROOTFS/root/clone" && mkdir -p "$ROOTFS/root/clone"
    git clone -q "$REPO" "$ROOTFS/root/clone/geolink"
    [ -f "$REPO/../shared/README.md" ] && ln -s /shared "$ROOTFS/root/clone/shared"
    in_root "${HEADLESS[@]}" sh -c "cd /root/clone/geolink && make test" ;;
  *)
    in_root "${HEADLESS[@]}" GEOLINK_BACKEND_PYTHON=$VENV/bin/python GEOLINK_DATA=/var/cache/geolink/data \
      GEOLINK_SHARED=/shared sh -c "cd /geolink && $VENV/bin/python -m pytest -ra --durations=10 -p no:cacheprovider ${*:-tests/qgis}" ;;
esac
elapsed "QGIS $QGIS done" "$START"
