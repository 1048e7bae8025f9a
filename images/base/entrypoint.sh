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
install -d -m 0700 -o dev -g dev /run/dev8
# The CA bundle TLS clients use (SSL_CERT_FILE & co. name /etc/dev8/ca-bundle.crt): the
# system's until `dev8-env configure` adds the operator's extra CAs (sent over SSH).
install -m 0644 -o dev -g dev /etc/ssl/certs/ca-certificates.crt /run/dev8/ca-bundle.crt
ln -sf /run/dev8/ca-bundle.crt /etc/dev8/ca-bundle.crt
mkdir -p /run/sshd
exec runsvdir -P /etc/dev8/service
