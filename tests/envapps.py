"""Two tiny servers run inside a test environment (stdlib only, python3 of the base image):
HTTP on 127.0.0.1:8100 that answers with the request it received as JSON (GET: path and
headers, or a redirect off-box for /redirect; POST: path, body size and SHA-256),
and a WebSocket echo on 127.0.0.1:8101."""
import base64
import hashlib
import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        digest, size, left = hashlib.sha256(), 0, int(self.headers.get("Content-Length") or 0)
        while left:
            chunk = self.rfile.read(min(left, 65536))
            digest.update(chunk)
            size, left = size + len(chunk), left - len(chunk)
        body = json.dumps({"path": self.path, "size": size, "sha256": digest.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def ws_client(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    f = conn.makefile("rb")
    while True:
        head = f.read(2)
        if len(head) < 2:
            return
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", f.read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", f.read(8))[0]
        mask = f.read(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(length)))
        if opcode == 8:
            conn.sendall(b"\x88\x00")
            return
        header = bytes([0x80 | opcode])
        header += bytes([len(payload)]) if len(payload) < 126 else (
            b"\x7e" + struct.pack("!H", len(payload)) if len(payload) < 65536 else b"\x7f" + struct.pack("!Q", len(payload)))
        conn.sendall(header + payload)


def ws_server() -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 8101))
    s.listen(16)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=ws_client, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    threading.Thread(target=ws_server, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", 8100), Echo).serve_forever()
