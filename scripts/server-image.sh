#!/usr/bin/env bash
# Build dev8's own server image (deploy/image/Dockerfile) from this checkout, for running dev8
# in a cluster (deploy/kubernetes). Usage: scripts/server-image.sh [TAG]  (default dev8/server:latest);
# then `dev8 image push TAG --registry REGISTRY`. Prints the tag on its last line.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TAG="${1:-dev8/server:latest}"
ensure_docker
[ -x "$VENV/bin/dev8" ] || ensure_python ""
[ -f "$REPO/src/dev8/web/node_modules/@xterm/xterm/lib/xterm.js" ] || ensure_web_assets
CTX="$(mktemp -d)"
trap 'rm -rf "$CTX"' EXIT
echo "==> wheels for dev8[kubernetes] and its dependencies" >&2
"$VENV/bin/pip" wheel -q -w "$CTX/wheels" "$REPO[kubernetes]" >&2
cp "$REPO/deploy/image/Dockerfile" "$CTX/"
# Debian's image where it can be pulled, else the one `dev8 image build` makes with debootstrap.
BASE="$("$VENV/bin/python" -c 'import docker, sys
from dev8.runtimes.docker_images import ensure_base_os
print(ensure_base_os(docker.from_env(), lambda m: print(m, file=sys.stderr)))')"
echo "==> building $TAG on $BASE" >&2
as_root docker build -q --build-arg BASE_IMAGE="$BASE" -t "$TAG" "$CTX" >&2
echo "$TAG"
