"""The pages' static files: dev8's own (src/dev8/web/static) and the npm packages they use
(src/dev8/web/node_modules, installed by `npm ci`). Only the files listed are served."""
from __future__ import annotations

import functools
import gzip
import mimetypes
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

router = APIRouter(include_in_schema=False)
WEB_DIR = Path(__file__).resolve().parents[1] / "web"
STATIC = {  # URL name → file under WEB_DIR; only these are served
    "xterm.js": "node_modules/@xterm/xterm/lib/xterm.js",
    "xterm.css": "node_modules/@xterm/xterm/css/xterm.css",
    "addon-fit.js": "node_modules/@xterm/addon-fit/lib/addon-fit.js",
    "terminal.js": "static/terminal.js",
    "terminal.css": "static/terminal.css",
    "favicon.svg": "static/favicon.svg",
    "dashboard.css": "static/dashboard.css",
    "common.js": "static/common.js",
    "environments.js": "static/environments.js",
    "create.js": "static/create.js",
    "environment.js": "static/environment.js",
    "sshkeys.js": "static/sshkeys.js",
    "settings.js": "static/settings.js",
    "prebuilds.js": "static/prebuilds.js",
    "admin.js": "static/admin.js",
    "setup.js": "static/setup.js",
}


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return static_file("favicon.svg", request)


HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
COMPRESSIBLE = (".js", ".css", ".svg")


@functools.lru_cache(maxsize=len(STATIC))
def _gzipped(path: Path, mtime: float) -> bytes:
    """The file compressed once (per version of it: ``mtime``), not per request."""
    return gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    rel = STATIC.get(name)
    if rel is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    path = WEB_DIR / rel
    if not path.is_file():
        return JSONResponse({"detail": f"{name} is not installed: run `npm ci` in {WEB_DIR} "
                                       "(scripts/run.sh does)"}, status_code=503)
    if name.endswith(COMPRESSIBLE) and "gzip" in request.headers.get("accept-encoding", ""):
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(_gzipped(path, path.stat().st_mtime), media_type=media,
                        headers={**HEADERS, "Content-Encoding": "gzip"})
    return FileResponse(path, headers=HEADERS)
