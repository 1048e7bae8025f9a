# dev8: tools installed outside /usr/bin, for login shells.
export PATH="$PATH:/usr/lib/go-1.23/bin:$HOME/go/bin:$HOME/.cargo/bin"
