"""The browser terminal's WebSocket (as the page uses it, acknowledging rendered bytes) vs
SSH straight to the environment's sshd with a PTY: keystroke echo round trip (one key into
`cat`, until its echo comes back) and output throughput (50 MB through the PTY). Prints
medians, p90 and ratios. Usage:
    python -m bench.terminal [--keys 300] [--mb 50] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import asyncssh
import websockets

from bench.common import control_key_file, dev8_server, median, pctl, published_ssh_port, report
from tests.support import set_web_password, web_login

FLOOD = "head -c {n} /dev/zero | tr '\\0' x; echo; echo END-OF-$((40+2))\r"  # the needle is not in the echoed command


class Reader:
    """Reads output until a needle shows up, keeping only a tail (the output is 50 MB)."""

    async def chunk(self) -> bytes:
        raise NotImplementedError

    async def until(self, needle: bytes) -> None:
        tail = b""
        while True:
            tail = tail[-len(needle):] + await self.chunk()
            if needle in tail:
                return


class Ws(Reader):
    """The page's side: binary frames are output, acknowledged as xterm.js does after drawing."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps({"t": "i", "d": text}))

    async def chunk(self) -> bytes:
        msg = await self.ws.recv()
        if not isinstance(msg, bytes):
            return b""
        await self.ws.send(json.dumps({"t": "a", "n": len(msg)}))
        return msg


class Pty(Reader):
    def __init__(self, proc: asyncssh.SSHClientProcess) -> None:
        self.proc = proc

    async def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode())

    async def chunk(self) -> bytes:
        data = await self.proc.stdout.read(65536)
        if not data:
            raise EOFError
        return data


async def measure(term: Ws | Pty, keys: int, mb: int, runs: int) -> tuple[list[float], list[float]]:
    await term.send("stty -echoctl; cat\r")
    await asyncio.sleep(0.5)
    await term.until(b"cat\r\n")
    rtts = []
    for i in range(keys):
        ch = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        t0 = time.perf_counter()
        await term.send(ch)
        await term.until(ch.encode())
        rtts.append(time.perf_counter() - t0)
    await term.send("\r\x04")  # end the line, then cat
    await asyncio.sleep(0.3)
    seconds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await term.send(FLOOD.format(n=mb * 1024 * 1024))
        await term.until(b"END-OF-42")
        seconds.append(time.perf_counter() - t0)
    return rtts, seconds


async def via_dev8(url: str, cookie: str, keys: int, mb: int, runs: int) -> tuple[list[float], list[float]]:
    async with websockets.connect(url.replace("http://", "ws://"), origin=url.split("/@")[0], max_size=None,
                                  additional_headers={"cookie": f"dev8_session={cookie}"}) as ws:
        await ws.recv()  # hello
        return await measure(Ws(ws), keys, mb, runs)


async def direct(port: int, keyfile: Path, keys: int, mb: int, runs: int) -> tuple[list[float], list[float]]:
    async with asyncssh.connect("127.0.0.1", port, username="dev", client_keys=[str(keyfile)], known_hosts=None,
                                agent_path=None, config=[]) as conn:
        proc = await conn.create_process(term_type="xterm-256color", term_size=(80, 24), encoding=None)
        return await measure(Pty(proc), keys, mb, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with dev8_server() as (server, user), tempfile.TemporaryDirectory() as tmp:
        user.cli("create", "term")
        set_web_password(user)
        cookie = web_login(server, user.email).cookies["dev8_session"]
        url = f"{server.url}/@{user.username}/term/terminal/ws?cols=80&rows=24"
        keyfile = control_key_file(server, "term", Path(tmp))
        d_rtt, d_sec = asyncio.run(direct(published_ssh_port(server, "term"), keyfile, args.keys, args.mb, args.runs))
        w_rtt, w_sec = asyncio.run(via_dev8(url, cookie, args.keys, args.mb, args.runs))
    d_mbs, w_mbs = args.mb / median(d_sec), args.mb / median(w_sec)
    report(f"terminal: {args.keys} keystrokes, {args.mb} MB output x{args.runs} (medians)", [
        ("key echo, ssh straight to the environment", median(d_rtt) * 1000, "ms"),
        ("key echo, dev8 browser terminal WebSocket", median(w_rtt) * 1000, "ms"),
        ("key echo p90, dev8", pctl(w_rtt, 90) * 1000, "ms"),
        ("output, ssh straight to the environment", d_mbs, "MB/s"),
        ("output, dev8 browser terminal WebSocket", w_mbs, "MB/s"),
        ("output ratio dev8 / ssh", w_mbs / d_mbs, "x"),
    ])


if __name__ == "__main__":
    main()
