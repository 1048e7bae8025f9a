"""A VS Code extension marketplace for tests (stdlib only; runs in a test container): the
endpoints code-server's gallery client calls to install ``publisher.name``: the
``…/{publisher}/{name}/latest`` lookup, ``extensionquery``, and the asset downloads. The
extensions are the .vsix files in /srv/vsix, named ``publisher.name-version.vsix``.
Requests are logged to stderr (the test reads them to prove the marketplace was used)."""
import json
import os
import re
import sys
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VSIX_DIR = "/srv/vsix"
BASE = os.environ.get("GALLERY_URL", "http://127.0.0.1:8300")
VSIX_TYPE = "Microsoft.VisualStudio.Services.VSIXPackage"
MANIFEST_TYPE = "Microsoft.VisualStudio.Code.Manifest"


def catalog() -> dict:
    found = {}
    for name in os.listdir(VSIX_DIR):
        m = re.fullmatch(r"([^.]+)\.(.+)-(\d+\.\d+\.\d+)\.vsix", name)
        if m:
            found[f"{m[1]}.{m[2]}".lower()] = (m[1], m[2], m[3], os.path.join(VSIX_DIR, name))
    return found


def raw_extension(publisher: str, name: str, version: str) -> dict:
    assets = f"{BASE}/files/{publisher}/{name}/{version}"
    when = "2026-01-01T00:00:00.000Z"
    return {
        "extensionId": f"00000000-0000-0000-0000-{abs(hash(publisher + name)) % 10**12:012d}",
        "extensionName": name, "displayName": name, "shortDescription": "test extension",
        "publisher": {"publisherId": "00000000-0000-0000-0000-000000000001", "publisherName": publisher,
                      "displayName": publisher, "domain": None, "isDomainVerified": False},
        "versions": [{"version": version, "lastUpdated": when, "assetUri": assets, "fallbackAssetUri": assets,
                      "files": [{"assetType": VSIX_TYPE, "source": f"{assets}/{VSIX_TYPE}"},
                                {"assetType": MANIFEST_TYPE, "source": f"{assets}/{MANIFEST_TYPE}"}],
                      "properties": [{"key": "Microsoft.VisualStudio.Code.Engine", "value": "^1.60.0"}]}],
        "statistics": [], "tags": [], "categories": [], "flags": "validated, public",
        "releaseDate": when, "publishedDate": when, "lastUpdated": when,
    }


class Gallery(BaseHTTPRequestHandler):
    def _json(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        sys.stderr.write(f"GET {self.path}\n")
        m = re.fullmatch(r"/api/vscode/([^/]+)/([^/]+)/latest", self.path.split("?")[0])
        if m:
            hit = catalog().get(f"{m[1]}.{m[2]}".lower())
            return self._json(200, raw_extension(*hit[:3])) if hit else self._json(404, {})
        m = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/([^/?]+)", self.path.split("?")[0])
        hit = m and catalog().get(f"{m[1]}.{m[2]}".lower())
        if not hit:
            return self._json(404, {})
        with open(hit[3], "rb") as f:
            data = f.read()
        if m[4] == MANIFEST_TYPE:
            with zipfile.ZipFile(hit[3]) as z:
                data = z.read("extension/package.json")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        query = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        sys.stderr.write(f"POST {self.path} {json.dumps(query)}\n")
        wanted = {c["value"].lower() for f in query.get("filters", []) for c in f.get("criteria", [])
                  if c.get("filterType") == 7}
        exts = [raw_extension(*v[:3]) for k, v in catalog().items() if k in wanted]
        self._json(200, {"results": [{"extensions": exts, "resultMetadata": [
            {"metadataType": "ResultCount", "metadataItems": [{"name": "TotalCount", "count": len(exts)}]}]}]})

    def log_message(self, *args):  # type: ignore[no-untyped-def]
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8300), Gallery).serve_forever()
