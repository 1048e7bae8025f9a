# dev8: one PATH for every kind of shell (sshd sets it for non-login sessions, code-server
# for its terminals and tasks; Debian's /etc/profile resets it for login shells, so again
# here). Where user-level installs land comes first, all in the persistent home:
# npm -g and pip --user in ~/.local, go install in ~/go, cargo install in ~/.cargo, bun -g in ~/.bun.
PATH="$(cat /etc/dev8/path)"
export PATH
