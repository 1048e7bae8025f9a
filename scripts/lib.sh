# Shared by scripts/run.sh and scripts/test.sh: install what dev8 needs on Debian/Ubuntu
# and start the Docker engine when nothing runs it (no systemd on many dev machines).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DEV8_VENV:-$REPO/.venv}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_docker() {
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  if ! as_root docker info >/dev/null 2>&1; then
    echo "==> starting dockerd (log: /var/log/dockerd.log)"
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do as_root docker info >/dev/null 2>&1 && break; sleep 1; done
    as_root docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
  fi
}

ensure_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv python3-pip; python3 -m venv "$VENV"; }
  fi
  echo "==> installing dev8 into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$REPO$1"
}

ensure_web_assets() {
  # xterm.js and friends, from the npm registry at the versions package-lock.json pins.
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  echo "==> installing the web pages' front-end packages (npm ci)"
  (cd "$REPO/src/dev8/web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}
