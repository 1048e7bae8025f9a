// dev8 browser terminal: xterm.js over a WebSocket to a shell on an SSH PTY.
// Reconnects (same shell, recent output repainted) and acknowledges rendered bytes so the
// server can hold back output the page has not drawn yet (see server/apps/terminal.py).
"use strict";
(() => {
  const statusEl = document.getElementById("status");
  const status = (text, bad) => { statusEl.textContent = text; statusEl.className = bad ? "bad" : ""; };
  const term = new Terminal({ cursorBlink: true, scrollback: 5000, allowProposedApi: false,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace", fontSize: 14 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  term.focus();
  const storeKey = "dev8-terminal:" + location.pathname;
  let ws = null, retries = 0, ended = false;
  const send = (msg) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };

  function connect() {
    const url = new URL(document.body.dataset.ws, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("cols", term.cols);
    url.searchParams.set("rows", term.rows);
    const sid = sessionStorage.getItem(storeKey);
    if (sid) url.searchParams.set("session", sid);
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") {
        const data = new Uint8Array(event.data);
        term.write(data, () => send({ t: "a", n: data.length }));
        return;
      }
      const msg = JSON.parse(event.data);
      if (msg.t === "hello") {
        if (msg.session !== sid || msg.replay || msg.fresh) term.reset();  // fresh: its holder repaints it
        sessionStorage.setItem(storeKey, msg.session);
        retries = 0;
        status("connected");
      } else if (msg.t === "exit") {
        ended = true;
        sessionStorage.removeItem(storeKey);
        status("the shell exited; reload the page for a new one");
      } else if (msg.t === "error") {
        ended = true;
        status(msg.message, true);
      } else if (msg.t === "notice") {
        const text = String(msg.message).replace(/[\x00-\x1f\x7f]/g, "");
        term.write(`\r\n\x1b[33mdev8: ${text}\x1b[0m\r\n`);
        status(text, true);
      }
    };
    ws.onclose = (event) => {
      if (ended) return;
      if (event.code === 1012) {  // the server stops (a restart, a replica drained): another serves at once
        status("the dev8 server is restarting; reconnecting…", true);
        retries = 0;
        setTimeout(connect, 200);
        return;
      }
      const delay = Math.min(500 * 2 ** retries++, 10000);
      status("disconnected; reconnecting…", true);
      setTimeout(connect, delay);
    };
  }

  term.onData((d) => send({ t: "i", d }));
  term.onResize(({ cols, rows }) => send({ t: "r", c: cols, r: rows }));
  window.addEventListener("resize", () => fit.fit());
  connect();
})();
