#!/usr/bin/env bash
# Build a real kube-apiserver and kube-controller-manager (and etcd from Debian) for the
# kubernetes runtime's tests (the controller manager runs dev8's own Deployment there).
# No registry ships a current kube-apiserver and the Go module proxy is unreachable here,
# so it is built offline from Debian 12's `kubernetes` source package (upstream v1.20.2 with
# vendor/) with Debian's Go 1.19: about 12 minutes on 2 cores, once; the binaries are cached
# under $DEV8_CACHE (default ~/.cache/dev8) and this script returns at once when they are there.
# Prints the API server's path on its last line (the controller manager is beside it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=v1.20.2
CACHE="${DEV8_CACHE:-$HOME/.cache/dev8}/kubernetes-$VERSION"
BIN="$CACHE/kube-apiserver"
apt_install etcd-server
if [ -x "$BIN" ] && [ -x "$CACHE/kube-controller-manager" ]; then echo "$BIN"; exit 0; fi
apt_install golang-1.19-go rsync dpkg-dev make
WORK="$CACHE/build"
rm -rf "$WORK"; mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/sources"
# A private apt folder with a deb-src line, so the machine's own sources are left alone.
mirror="$(grep -hoE '^URIs: *http[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')"
[ -n "$mirror" ] || mirror="$(grep -hoE '^deb +http[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')"
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
echo "deb-src $mirror bookworm main" >"$WORK/apt/sources/src.list"
aptopts=(-o "Dir::Etc::SourceList=$WORK/apt/sources/src.list" -o "Dir::Etc::SourceParts=-" -o "Dir::State::Lists=$WORK/apt/lists")
echo "==> fetching Debian's kubernetes source package (from $mirror)" >&2
as_root apt-get "${aptopts[@]}" update -qq >&2
(cd "$WORK" && apt-get "${aptopts[@]}" source -qq --download-only kubernetes >&2 && dpkg-source -x --no-check kubernetes_*.dsc src >&2)
echo "==> building kube-apiserver and kube-controller-manager $VERSION offline (about 12 minutes, once)" >&2
echo "KUBE_GIT_VERSION='$VERSION'" >"$WORK/version"
(cd "$WORK/src" && PATH="/usr/lib/go-1.19/bin:$PATH" GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 \
  GOCACHE="$WORK/gocache" KUBE_GIT_VERSION_FILE="$WORK/version" make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2)
install -m 0755 "$WORK/src/_output/bin/kube-apiserver" "$WORK/src/_output/bin/kube-controller-manager" "$CACHE/"
rm -rf "$WORK"
echo "$BIN"
