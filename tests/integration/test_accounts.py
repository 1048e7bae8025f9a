"""Account and admin API behind the dashboard, in process against SQLite and PostgreSQL:
named API tokens, generated SSH key pairs, create-form validation and tokens typed into
it, administration and the audit log."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import asyncssh
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from dev8.core import auth
from dev8.server.app import create_app
from dev8.server.context import ServerContext
from dev8.store.models import AuditEntry, Environment, Secret, SshKey, User
from tests.integration.test_api import ctx, login  # noqa: F401 — ctx is a fixture

PASSWORD = "correct horse battery"


def admin_client(context: ServerContext, email: str = "root@example.com") -> TestClient:
    with context.db.session() as s:
        user = auth.create_user(s, email=email, password=PASSWORD, is_admin=True)
        token = auth.create_token(s, user)
    return TestClient(create_app(context), headers={"Authorization": f"Bearer {token}"})


def audit_rows(context: ServerContext) -> list[tuple[str, str, str, str]]:
    with context.db.session() as s:
        return [(e.actor, e.action, e.target, e.detail) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_api_tokens_have_a_name_and_expiry_are_shown_once_and_revocable(ctx: ServerContext):  # noqa: F811
    a = login(ctx, "a@example.com")
    b = login(ctx, "b@example.com")
    r = a.post("/api/v1/tokens", json={"name": "laptop CLI", "expires_in": "7d"})
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    expires = datetime.fromisoformat(created["expires_at"]).replace(tzinfo=UTC)
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    fresh = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})
    assert fresh.get("/api/v1/me").json()["email"] == "a@example.com"
    listed = a.get("/api/v1/tokens").json()
    assert "laptop CLI" in [t["name"] for t in listed]
    assert all("token" not in t and "token_hash" not in t for t in listed)  # never shown again
    for body, field in [({"name": "", "expires_in": "7d"}, "name"), ({"name": "<b>x</b>", "expires_in": "7d"}, "name"),
                        ({"name": "x", "expires_in": "forever"}, "expires_in"),
                        ({"name": "x", "expires_in": "400d"}, "expires_in")]:
        bad = a.post("/api/v1/tokens", json=body)
        assert bad.status_code == 422 and bad.json()["field"] == field, bad.text
    # bob cannot see or revoke alice's tokens
    assert "laptop CLI" not in [t["name"] for t in b.get("/api/v1/tokens").json()]
    assert b.delete(f"/api/v1/tokens/{created['id']}").status_code == 404
    assert fresh.get("/api/v1/me").status_code == 200
    assert a.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    assert fresh.get("/api/v1/me").status_code == 401
    actions = [(action, target) for _, action, target, _ in audit_rows(ctx)]
    assert ("token.create", "laptop CLI") in actions and ("token.revoke", "laptop CLI") in actions


def test_generated_key_pair_registers_the_public_half_and_keeps_no_private_key(ctx: ServerContext):  # noqa: F811
    a = login(ctx, "a@example.com")
    r = a.post("/api/v1/keys/generate", json={"name": "browser"})
    assert r.status_code == 201, r.text
    private = asyncssh.import_private_key(r.json()["private_key"])
    assert r.json()["key"]["fingerprint"] == private.get_fingerprint("sha256").split(":", 1)[1]
    assert [k["name"] for k in a.get("/api/v1/keys").json()] == ["browser"]
    with ctx.db.session() as s:
        row = s.scalar(select(SshKey))
        assert row is not None and "PRIVATE" not in row.public_key and row.public_key.startswith("ssh-ed25519 ")


def test_validate_reports_the_field_at_fault_and_writes_nothing(ctx: ServerContext):  # noqa: F811
    a = login(ctx, "a@example.com")
    cases = [
        ({"name": "Bad_Name"}, "name", "invalid environment name"),
        ({"name": "ok", "memory": "5x"}, "memory", "invalid memory"),
        ({"name": "ok", "repo": "not a url"}, "repo", "invalid repository URL"),
        ({"name": "ok", "git": [{"kind": "github"}, {"kind": "gitlab", "host": "bad host!"}]}, "git.1.host",
         "invalid git host"),
        ({"name": "ok", "git": [{"kind": "github", "secret": "GH"}], "new_secrets": {"GH": ""}}, "new_secrets.GH",
         "secret value is empty"),
        ({"name": "ok", "git": [{"kind": "github"}]}, "secrets", "unknown secret(s): GITHUB_TOKEN"),
    ]
    for body, field, message in cases:
        r = a.post("/api/v1/environments/validate", json=body)
        assert r.status_code == 200 and r.json()["valid"] is False, r.text
        assert r.json()["field"] == field and message in r.json()["detail"], r.text
    good = {"name": "ok", "git": [{"kind": "github"}], "new_secrets": {"GITHUB_TOKEN": "tok-123"}}
    assert a.post("/api/v1/environments/validate", json=good).json() == {"valid": True, "detail": None, "field": None}
    with ctx.db.session() as s:  # validation created nothing, not even audit entries
        assert s.scalar(select(func.count()).select_from(Environment)) == 0
        assert s.scalar(select(func.count()).select_from(Secret)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0
    a.post("/api/v1/environments", json={"name": "taken"})
    taken = a.post("/api/v1/environments/validate", json={"name": "taken"}).json()
    assert taken["field"] == "name" and "already exists" in taken["detail"]


def test_a_token_typed_into_the_create_form_is_saved_with_the_environment_or_not_at_all(ctx: ServerContext):  # noqa: F811
    a = login(ctx, "a@example.com")
    body = {"name": "web", "repo": "https://git.example/org/app.git", "branch": "..bad",
            "git": [{"kind": "github", "host": "git.example", "secret": "GHE_TOKEN"}],
            "new_secrets": {"GHE_TOKEN": "tok-typed-in-the-form"}}
    bad = a.post("/api/v1/environments", json=body)
    assert bad.status_code == 422 and bad.json()["field"] == "branch"
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Secret)) == 0  # nothing half-created
        assert s.scalar(select(func.count()).select_from(Environment)) == 0
    body["ai"] = {"anthropic": "ANTHROPIC_API_KEY"}  # an AI key typed in the same way
    body["new_secrets"]["ANTHROPIC_API_KEY"] = "sk-ant-typed"
    ok = a.post("/api/v1/environments", json={**body, "branch": "main"})
    assert ok.status_code == 202 and ok.json()["secrets"] == ["ANTHROPIC_API_KEY", "GHE_TOKEN"], ok.text
    assert [x["name"] for x in a.get("/api/v1/secrets").json()] == ["ANTHROPIC_API_KEY", "GHE_TOKEN"]
    with ctx.db.session() as s:
        row = s.scalar(select(Secret).where(Secret.name == "GHE_TOKEN"))
        assert row is not None and b"tok-typed-in-the-form" not in row.ciphertext
    assert all("tok-typed-in-the-form" not in str(r) for r in audit_rows(ctx))
    assert ok.json()["vscode_url"].endswith("?folder=%2Fhome%2Fdev%2Fworkspace%2Fapp")  # opens the clone


def test_admins_manage_users_see_every_environment_and_the_audit_log(ctx: ServerContext):  # noqa: F811
    root = admin_client(ctx)
    a = login(ctx, "a@example.com")
    a.post("/api/v1/environments", json={"name": "mine"})
    a.put("/api/v1/secrets/API_KEY", json={"value": "s3cret-value"})
    for path in ("/users", "/environments", "/audit"):  # not for ordinary users
        assert a.get("/api/v1/admin" + path).status_code == 403
    assert a.post("/api/v1/admin/users", json={"email": "x@example.com", "password": PASSWORD}).status_code == 403
    r = root.post("/api/v1/admin/users", json={"email": "New@Example.com", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["email"] == "new@example.com" and not r.json()["is_admin"]
    new_id = r.json()["id"]
    assert root.post("/api/v1/admin/users", json={"email": "new@example.com", "password": PASSWORD}).status_code == 409
    short = root.post("/api/v1/admin/users", json={"email": "y@example.com", "password": "short"})
    assert short.status_code == 422 and short.json()["field"] == "password"
    # the new user logs in with the initial password; a wrong one is recorded too
    anon = TestClient(create_app(ctx))
    assert anon.post("/api/v1/auth/login", json={"email": "new@example.com", "password": "wrong password"}).status_code == 401
    new_token = anon.post("/api/v1/auth/login", json={"email": "new@example.com", "password": PASSWORD}).json()["token"]
    new = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {new_token}"})
    assert new.get("/api/v1/me").status_code == 200
    # disable: tokens stop working at once; enable brings them back
    assert root.patch(f"/api/v1/admin/users/{new_id}", json={"disabled": True}).json()["disabled"] is True
    assert new.get("/api/v1/me").status_code == 401
    root.patch(f"/api/v1/admin/users/{new_id}", json={"disabled": False})
    assert new.get("/api/v1/me").status_code == 200
    assert root.patch(f"/api/v1/admin/users/{new_id}", json={"is_admin": True}).json()["is_admin"] is True
    assert new.get("/api/v1/admin/users").status_code == 200
    # no admin locks themselves out
    root_id = next(u["id"] for u in root.get("/api/v1/admin/users").json() if u["email"] == "root@example.com")
    for change in ({"disabled": True}, {"is_admin": False}):
        assert root.patch(f"/api/v1/admin/users/{root_id}", json=change).status_code == 422
    assert root.patch("/api/v1/admin/users/99999", json={"disabled": True}).status_code == 404
    envs = root.get("/api/v1/admin/environments").json()
    assert [(e["owner"], e["name"]) for e in envs] == [("a", "mine")]
    log = root.get("/api/v1/admin/audit", params={"limit": 500}).json()
    seen = {(e["actor"], e["action"], e["target"]) for e in log}
    for expected in [("a@example.com", "env.create", "mine"), ("a@example.com", "secret.set", "API_KEY"),
                     ("root@example.com", "admin.user.create", "new@example.com"),
                     ("new@example.com", "login.failed", ""), ("new@example.com", "login", ""),
                     ("root@example.com", "admin.user.disable", "new@example.com"),
                     ("root@example.com", "admin.user.enable", "new@example.com"),
                     ("root@example.com", "admin.user.grant_admin", "new@example.com"),
                     ("root@example.com", "admin.view", "environments")]:
        assert expected in seen, expected
    assert [e["id"] for e in log] == sorted((e["id"] for e in log), reverse=True)  # newest first
    older = root.get("/api/v1/admin/audit", params={"limit": 2, "before": log[2]["id"]}).json()
    assert [e["id"] for e in older] == [log[3]["id"], log[4]["id"]]
    assert "s3cret-value" not in str(log) and PASSWORD not in str(log)
    with ctx.db.session() as s:
        assert s.scalar(select(User.disabled).where(User.id == new_id)) is False
    # looking again and again is one entry per list in ten minutes, not one per page view
    for _ in range(3):
        root.get("/api/v1/admin/users"), root.get("/api/v1/admin/environments"), root.get("/api/v1/admin/audit")
    views = [e["target"] for e in root.get("/api/v1/admin/audit", params={"action": "admin.view", "limit": 500}).json()
             if e["actor"] == "root@example.com"]
    assert sorted(views) == ["audit log", "environments", "users"], views
    only_env = root.get("/api/v1/admin/audit", params={"action": "env.", "limit": 500}).json()
    assert only_env and all(e["action"].startswith("env.") for e in only_env)
    assert root.get("/api/v1/admin/audit", params={"action": "%"}).json() == []  # no LIKE wildcards
    # an admin resets a password: the old one stops working, the new one logs in
    assert new.post(f"/api/v1/admin/users/{root_id}/password", json={"password": "x" * 12}).status_code == 200  # new is admin now
    assert root.post(f"/api/v1/admin/users/{new_id}/password", json={"password": "short"}).status_code == 422
    assert root.post(f"/api/v1/admin/users/{new_id}/password", json={"password": "another password 2"}).status_code == 200
    assert anon.post("/api/v1/auth/login", json={"email": "new@example.com", "password": PASSWORD}).status_code == 401
    assert anon.post("/api/v1/auth/login", json={"email": "new@example.com",
                                                 "password": "another password 2"}).status_code == 200
    assert root.post("/api/v1/admin/users/99999/password", json={"password": "x" * 12}).status_code == 404
    # the token list marks the one in use
    assert [t["current"] for t in new.get("/api/v1/tokens").json() if t["current"]] == [True]



def test_a_change_is_committed_before_its_response_is_sent(ctx: ServerContext):  # noqa: F811
    """The dashboard re-reads a list right after a 2xx: had the commit run after the response
    (FastAPI's default for dependencies with yield), that read could miss the change (a
    revoked token still listed), and a commit that failed would have been answered with success."""
    a = login(ctx, "a@example.com")
    order: list[str] = []
    app = create_app(ctx)

    async def observed(scope, receive, send):  # type: ignore[no-untyped-def]
        async def note_start(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                order.append(f"response {message['status']}")
            await send(message)
        await app(scope, receive, note_start)

    def commit(_session) -> None:  # type: ignore[no-untyped-def]
        order.append("commit")

    def refuse(_session) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("commit refused")

    client = TestClient(observed, headers=a.headers, raise_server_exceptions=False)
    event.listen(ctx.db.sessions, "before_commit", commit)
    try:
        assert client.put("/api/v1/secrets/KEPT", json={"value": "v1"}).status_code == 200
        assert "commit" in order and order[-1] == "response 200", order  # nothing commits after it
        event.listen(ctx.db.sessions, "before_commit", refuse)
        assert client.put("/api/v1/secrets/LOST", json={"value": "v2"}).status_code == 500
        assert client.delete("/api/v1/secrets/KEPT").status_code == 500
    finally:
        for listener in (commit, refuse):
            if event.contains(ctx.db.sessions, "before_commit", listener):
                event.remove(ctx.db.sessions, "before_commit", listener)
    assert [x["name"] for x in a.get("/api/v1/secrets").json()] == ["KEPT"]


def test_a_login_lockout_is_audited_once_however_often_it_is_hammered(ctx: ServerContext):  # noqa: F811
    admin_client(ctx, "victim@example.com")
    anon = TestClient(create_app(ctx))
    attempt = {"email": "Victim@example.com", "password": "guess"}
    assert [anon.post("/api/v1/auth/login", json=attempt).status_code for _ in range(8)] == [401] * 5 + [429] * 3
    rows = [(actor, action) for actor, action, _, _ in audit_rows(ctx)]
    assert rows.count(("victim@example.com", "login.failed")) == 5
    assert rows.count(("victim@example.com", "login.throttled")) == 1
    throttled = [detail for _, action, _, detail in audit_rows(ctx) if action == "login.throttled"]
    assert "too many failed logins" in throttled[0] and "guess" not in throttled[0]


def test_every_dashboard_page_sends_a_browser_without_a_session_to_the_login_page(ctx: ServerContext):  # noqa: F811
    anon = TestClient(create_app(ctx), follow_redirects=False)
    for path in ("/", "/new", "/environments/web", "/settings", "/admin"):
        page = anon.get(path, headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=" + quote(path, safe=""), path
        assert anon.get(path).json() == {"detail": "login required"} and anon.get(path).status_code == 401
    stale = TestClient(create_app(ctx), follow_redirects=False, cookies={"dev8_session": "d8_not-a-token"})
    assert stale.get("/settings", headers={"accept": "text/html"}).status_code == 303
