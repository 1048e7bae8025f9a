#!/bin/sh
# Container entrypoint: install the control-plane public key, keep the SSH host key in
# the persistent home (so it survives container re-creation), hand over to runsvdir
# (runit), which starts every service in /etc/dev8/service and restarts any that exits
# (not Debian's /etc/service, where packages drop services of their own).
# runit starts services at once (supervisord waits a one-second tick) and needs ~1 MB.
set -eu
if [ -z "${DEV8_CONTROL_KEY:-}" ]; then
  echo "dev8-entrypoint: DEV8_CONTROL_KEY is not set" >&2
  exit 64
fi
control_key=$DEV8_CONTROL_KEY
printf '%s\n' "$control_key" > /etc/dev8/authorized_keys
chmod 0644 /etc/dev8/authorized_keys
unset DEV8_CONTROL_KEY
# A home kept as an archive on storage that is no POSIX file system (ACI's Azure Files
# share: no modes, owners or symlinks): restored onto the container's own disk before
# anything reads it, saved back by the home-save service, `dev8-env save-home` and a stop.
# A new home made from a prebuild: the prebuild's archive (its share mounted read-only)
# becomes this home's own, whole or not at all.
if [ -n "${DEV8_HOME_ARCHIVE:-}" ] && [ ! -s "$DEV8_HOME_ARCHIVE" ] && [ -s "${DEV8_HOME_SEED:-}" ]; then
  cp "$DEV8_HOME_SEED" "$DEV8_HOME_ARCHIVE.seeding" && mv "$DEV8_HOME_ARCHIVE.seeding" "$DEV8_HOME_ARCHIVE"
fi
if [ -n "${DEV8_HOME_ARCHIVE:-}" ] && [ -s "$DEV8_HOME_ARCHIVE" ]; then
  tar --numeric-owner -xpzf "$DEV8_HOME_ARCHIVE" -C /home/dev
elif [ -n "${DEV8_HOME_ARCHIVE:-}" ]; then  # a first start on an empty disk: a new user's home
  cp -an /etc/skel/. /home/dev/ && chown -R dev:dev /home/dev
fi
# The home's root is the user's: a home layered on a prebuild's (Docker's overlay) gets its
# root from its new upper layer, made by the engine as root's.
chown dev:dev /home/dev
hostkeys=/home/dev/.dev8/hostkeys
install -d -m 0700 -o root -g root "$hostkeys"
# A home copied from another environment's (a prebuild's) holds that one's host key: each
# environment (each control key) makes its own. A home from before this note keeps its key.
if [ -s "$hostkeys/control_key.pub" ] && [ "$(cat "$hostkeys/control_key.pub")" != "$control_key" ]; then
  rm -f "$hostkeys"/ssh_host_*
fi
[ -s "$hostkeys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$hostkeys/ssh_host_ed25519_key"
printf '%s\n' "$control_key" > "$hostkeys/control_key.pub"
# Printed for runtimes that read it from the container's log (an authenticated API call).
echo "dev8-host-key: $(cat "$hostkeys/ssh_host_ed25519_key.pub")"
install -d -o dev -g dev /home/dev/workspace
# Secrets and configuration live in /run/dev8, which must be memory-backed: the runtime's
# tmpfs (Docker), else a folder in /dev/shm (ACI gives containers no tmpfs of their own).
if [ "$(stat -f -c %T /run/dev8 2>/dev/null)" != tmpfs ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  install -d -m 0700 -o dev -g dev /dev/shm/dev8
  rm -rf /run/dev8 && ln -s /dev/shm/dev8 /run/dev8
fi
install -d -m 0700 -o dev -g dev /run/dev8
# The CA bundle TLS clients use (SSL_CERT_FILE & co. name /etc/dev8/ca-bundle.crt): the
# system's until `dev8-env configure` adds the operator's extra CAs (sent over SSH).
install -m 0644 -o dev -g dev /etc/ssl/certs/ca-certificates.crt /run/dev8/ca-bundle.crt
ln -sf /run/dev8/ca-bundle.crt /etc/dev8/ca-bundle.crt
mkdir -p /run/sshd
# runsv keeps each service's state in supervise/stat; made readable here (runsv itself makes
# the folder 0700), so `dev8-env health` needs no sudo, which no-new-privileges refuses.
for service in /etc/dev8/service/*/ /etc/dev8/optional/*/; do
  if [ -d "$service" ]; then install -d -m 0755 "${service}supervise"; fi
done
if [ -z "${DEV8_HOME_ARCHIVE:-}" ]; then
  exec runsvdir -P /etc/dev8/service
fi
printf '%s\n' "$DEV8_HOME_ARCHIVE" > /etc/dev8/home-archive  # for dev8-env save-home over SSH
[ -s "$DEV8_HOME_ARCHIVE" ] || dev8-env save-home >/dev/null  # the new host key is kept at once
ln -sfn /etc/dev8/optional/home-save /etc/dev8/service/home-save
runsvdir -P /etc/dev8/service &
runsvdir=$!
# Stopped (SIGTERM): save the home, then stop every service.
trap 'dev8-env save-home >/dev/null || true; kill -HUP "$runsvdir"; wait "$runsvdir"; exit 0' TERM INT
wait "$runsvdir"
