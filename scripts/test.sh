#!/usr/bin/env bash
# Install and start everything the tests need (Docker engine, base image, PostgreSQL,
# OpenSSH client), then run the whole test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install ca-certificates git openssh-client debootstrap iptables postgresql chromium fonts-dejavu-core docker-registry bindfs \
  etcd-server golang-1.19-go rsync dpkg-dev make
ensure_docker
ensure_python "[test]"
# The kubernetes runtime's tests run against a real kube-apiserver and controller manager built
# from Debian's source (about 12 minutes once, cached in ~/.cache/dev8): built beside the image builds below.
"$REPO/scripts/kube-apiserver.sh" >/tmp/dev8-kube-apiserver.log 2>&1 &
kube_build=$!
echo "==> lint (ruff) and types (mypy): a finding fails the run"
(cd "$REPO" && "$VENV/bin/ruff" check --quiet . && "$VENV/bin/mypy" --no-error-summary)
ensure_web_assets
echo "==> building the environment images (cached after the first run)"
"$VENV/bin/dev8" image build base
"$VENV/bin/dev8" image build fullstack
wait "$kube_build" || { echo "building kube-apiserver failed:" >&2; tail -40 /tmp/dev8-kube-apiserver.log >&2; exit 1; }
export PATH="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin:$PATH"
cd "$REPO"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@"
