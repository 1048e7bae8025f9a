#!/usr/bin/env bash
# Install dev8 and run `dev8 server` with its embedded defaults (SQLite, local Docker).
# Extra arguments go to `dev8 server` (e.g. --http-addr 0.0.0.0:7080).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install ca-certificates git openssh-client debootstrap iptables
ensure_docker
ensure_python ""
ensure_web_assets
echo "==> dev8 server (an environment image missing at the first create is built then, with progress)"
exec "$VENV/bin/dev8" server "$@"
