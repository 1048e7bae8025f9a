"""A git smart-HTTP server over HTTPS with token auth, for tests (runs in a test container).

`git http-backend` (real git) behind a small WSGI server from the standard library. The
accepted logins come from GIT_USERS as JSON: {"username": "token", ...}. Repositories
live under /srv/git; on start, org/app.git is created with a README on `main` and a
`feature` branch.

It also answers the few REST/GraphQL calls `gh auth status` (GitHub Enterprise: /api/v3,
/api/graphql) and `glab auth status` (GitLab: /api/v4) make, for the same tokens, so the
CLIs' logins are checked against a server and not only read back from their config.
"""
import base64
import json
import os
import subprocess
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = "/srv/git"
USERS = json.loads(os.environ.get("GIT_USERS", "{}"))


def init_repo() -> None:
    repo = os.path.join(ROOT, "org", "app.git")
    if os.path.exists(repo):
        return
    work = "/tmp/seed"
    env = {**os.environ, "GIT_AUTHOR_NAME": "seed", "GIT_AUTHOR_EMAIL": "seed@test",
           "GIT_COMMITTER_NAME": "seed", "GIT_COMMITTER_EMAIL": "seed@test", "HOME": "/tmp"}
    for cmd in (["git", "init", "-q", "-b", "main", work],
                ["sh", "-c", f"echo 'hello from the test git server' > {work}/README.md"],
                ["git", "-C", work, "add", "README.md"], ["git", "-C", work, "commit", "-qm", "seed"],
                ["git", "-C", work, "branch", "feature"],
                ["sh", "-c", f"cd {work} && git checkout -q feature && echo feature > FEATURE.md && git add . "
                             "&& git commit -qm feature && git checkout -q main"],
                ["git", "clone", "-q", "--bare", work, repo],
                ["git", "-C", repo, "config", "http.receivepack", "true"]):
        subprocess.run(cmd, check=True, env=env)


def api_user(environ) -> str | None:  # type: ignore[no-untyped-def]
    """The user whose token is in the header gh (``token X``) or glab (``PRIVATE-TOKEN``,
    ``Bearer X``) sends."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    token = environ.get("HTTP_PRIVATE_TOKEN") or auth.partition(" ")[2]
    return next((name for name, value in USERS.items() if token and value == token), None)


API_ANSWERS = {
    "/api/v3/": {},
    "/api/v3/user": lambda user: {"login": user, "id": 1},
    "/api/graphql": lambda user: {"data": {"viewer": {"login": user}}},
    "/api/v4/user": lambda user: {"username": user, "id": 1, "name": user},
    "/api/v4/version": {"version": "17.0.0", "revision": "test"},
}


def api(environ, start_response):  # type: ignore[no-untyped-def]
    user = api_user(environ)
    answer = API_ANSWERS.get(environ.get("PATH_INFO", ""))
    if user is None or answer is None:
        status = "401 Unauthorized" if user is None else "404 Not Found"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps({"message": status}).encode()]
    body = json.dumps(answer(user) if callable(answer) else answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              ("X-OAuth-Scopes", "repo, read:org, gist, workflow")])
    return [body]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO", "").startswith("/api/"):
        return api(environ, start_response)
    auth = environ.get("HTTP_AUTHORIZATION", "")
    user = None
    if auth.startswith("Basic "):
        name, _, token = base64.b64decode(auth[6:]).decode().partition(":")
        if name in USERS and USERS[name] == token:
            user = name
    if user is None:
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    cgi_env = {"GIT_PROJECT_ROOT": ROOT, "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": user,
               "PATH_INFO": environ.get("PATH_INFO", ""), "QUERY_STRING": environ.get("QUERY_STRING", ""),
               "REQUEST_METHOD": environ["REQUEST_METHOD"], "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
               "CONTENT_LENGTH": str(len(body)), "PATH": "/usr/bin:/bin", "HTTP_CONTENT_ENCODING":
               environ.get("HTTP_CONTENT_ENCODING", ""), "GIT_CONFIG_NOSYSTEM": "1"}
    out = subprocess.run(["git", "http-backend"], input=body, env=cgi_env, capture_output=True).stdout
    head, _, payload = out.partition(b"\r\n\r\n")
    status, headers = "200 OK", []
    for line in head.decode().split("\r\n"):
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = value.strip()
        elif key:
            headers.append((key, value.strip()))
    start_response(status, headers)
    return [payload]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # type: ignore[no-untyped-def]
        pass


if __name__ == "__main__":
    import ssl
    init_repo()
    server = make_server("0.0.0.0", 8443, app, server_class=Server, handler_class=QuietHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain("/srv/tls/cert.pem", "/srv/tls/key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
