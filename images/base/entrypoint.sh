#!/bin/sh
# Container entrypoint: install the control-plane public key, keep the SSH host key in
# the persistent home volume (so it survives container re-creation), hand over to
# runsvdir (runit), which starts every service in /etc/dev8/service and restarts any that
# exits (not Debian's /etc/service, where packages drop services of their own).
# runit starts services at once (supervisord waits a one-second tick) and needs ~1 MB.
set -eu
if [ -z "${DEV8_CONTROL_KEY:-}" ]; then
  echo "dev8-entrypoint: DEV8_CONTROL_KEY is not set" >&2
  exit 64
fi
printf '%s\n' "$DEV8_CONTROL_KEY" > /etc/dev8/authorized_keys
chmod 0644 /etc/dev8/authorized_keys
unset DEV8_CONTROL_KEY
hostkeys=/home/dev/.dev8/hostkeys
install -d -m 0700 -o root -g root "$hostkeys"
[ -s "$hostkeys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$hostkeys/ssh_host_ed25519_key"
install -d -o dev -g dev /home/dev/workspace
# Extra CA certificates (corporate TLS proxy), mounted by dev8 when configured.
if [ -s /etc/dev8/extra-ca.crt ]; then
  cat /etc/ssl/certs/ca-certificates.crt /etc/dev8/extra-ca.crt > /etc/dev8/ca-bundle.crt
else
  ln -sf /etc/ssl/certs/ca-certificates.crt /etc/dev8/ca-bundle.crt
fi
[ -d /run/dev8 ] && chown dev:dev /run/dev8 && chmod 0700 /run/dev8
mkdir -p /run/sshd
exec runsvdir -P /etc/dev8/service
