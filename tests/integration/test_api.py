"""REST API and store, in process, against SQLite and a real PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from dev8.core import auth
from dev8.core.connections import EnvConnections
from dev8.core.crypto import Keyring
from dev8.core.reconciler import Reconciler
from dev8.runtimes.docker import DockerRuntime
from dev8.server.app import create_app
from dev8.server.apps.tunnels import Tunnels
from dev8.server.context import ServerContext
from dev8.settings import Settings
from dev8.store.db import MIGRATIONS, Database
from dev8.store.models import ApiToken, Environment, EnvironmentKey, Secret

PUBKEY_ERR = "not a valid SSH public key"


def make_ctx(tmp_path: Path, db_url: str, runtime: DockerRuntime | None = None) -> ServerContext:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, ssh_addr="127.0.0.1:2222")
    db = Database(db_url)
    db.upgrade()
    keyring = Keyring.load_or_create(settings.data_dir)
    runtime = runtime or DockerRuntime()
    connections = EnvConnections(db, keyring)
    return ServerContext(settings=settings, db=db, keyring=keyring, runtime=runtime,
                         reconciler=Reconciler(db, keyring, runtime, connections), connections=connections,
                         tunnels=Tunnels(connections))


@pytest.fixture
def ctx(tmp_path: Path, db_url: str, docker_client) -> ServerContext:  # type: ignore[no-untyped-def]
    c = make_ctx(tmp_path, db_url)
    yield c
    c.tunnels.close()
    c.db.dispose()


def login(ctx: ServerContext, email: str) -> TestClient:
    with ctx.db.session() as s:
        user = auth.create_user(s, email=email)
        token = auth.create_token(s, user)
    return TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})


def test_migrations_are_idempotent_and_tokens_are_stored_hashed(ctx: ServerContext):
    ctx.db.upgrade()  # second run is a no-op
    with ctx.db.session() as s:
        user = auth.create_user(s, email="x@example.com")
        token = auth.create_token(s, user)
    with ctx.db.session() as s:
        stored = list(s.scalars(select(ApiToken.token_hash)))
        version = s.execute(text("select version_num from alembic_version")).scalar_one()
    from alembic.script import ScriptDirectory

    from dev8.store.db import alembic_config
    head = ScriptDirectory.from_config(alembic_config(str(ctx.db.engine.url))).get_current_head()
    assert version == head and head == sorted(p.name[:4] for p in (MIGRATIONS / "versions").glob("0*.py"))[-1]
    assert token not in stored and auth.hash_token(token) in stored


def test_requests_without_valid_token_are_401(ctx: ServerContext):
    client = TestClient(create_app(ctx))
    assert client.get("/api/v1/environments").status_code == 401
    r = client.get("/api/v1/environments", headers={"Authorization": "Bearer dev8_wrong"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid token"
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/api/v1/environments" in client.get("/api/v1/openapi.json").json()["paths"]


def test_expired_token_is_refused(ctx: ServerContext):
    from datetime import timedelta
    with ctx.db.session() as s:
        user = auth.create_user(s, email="old@example.com")
        token = auth.create_token(s, user, expires_in=timedelta(seconds=-1))
    r = TestClient(create_app(ctx)).get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_setup_token_creates_first_admin_once_and_password_login(ctx: ServerContext):
    with ctx.db.session() as s:
        setup_token = auth.issue_setup_token(s)
    client = TestClient(create_app(ctx))
    assert client.post("/api/v1/setup", json={"token": "nope", "email": "a@example.com",
                                              "password": "longenough"}).status_code == 401
    r = client.post("/api/v1/setup", json={"token": setup_token, "email": "a@example.com", "password": "longenough"})
    assert r.status_code == 200
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json()['token']}"}).json()
    assert me == {"email": "a@example.com", "username": "a", "is_admin": True}
    again = client.post("/api/v1/setup", json={"token": setup_token, "email": "b@example.com", "password": "longenough"})
    assert again.status_code == 401
    bad = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "wrong-password"})
    unknown = client.post("/api/v1/auth/login", json={"email": "zz@example.com", "password": "wrong-password"})
    assert bad.status_code == unknown.status_code == 401 and bad.json() == unknown.json()
    ok = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "longenough"})
    assert ok.status_code == 200 and ok.json()["token"].startswith("dev8_")


def test_ssh_keys_validated_and_unique(ctx: ServerContext, tmp_path: Path):
    import asyncssh
    a = login(ctx, "a@example.com")
    key = asyncssh.generate_private_key("ssh-ed25519", comment="laptop").export_public_key().decode()
    assert a.post("/api/v1/keys", json={"public_key": "ssh-ed25519 AAAAnotbase64!!"}).status_code == 422
    assert PUBKEY_ERR in a.post("/api/v1/keys", json={"public_key": "hello"}).json()["detail"]
    two_lines = key.strip() + "\n" + key
    assert a.post("/api/v1/keys", json={"public_key": two_lines}).status_code == 422
    r = a.post("/api/v1/keys", json={"public_key": key})
    assert r.status_code == 201 and r.json()["name"] == "laptop"
    b = login(ctx, "b@example.com")
    assert b.post("/api/v1/keys", json={"public_key": key}).status_code == 409
    assert b.get("/api/v1/keys").json() == []
    assert b.delete(f"/api/v1/keys/{r.json()['id']}").status_code == 404
    assert len(a.get("/api/v1/keys").json()) == 1


def test_secrets_are_write_only_encrypted_and_bounded(ctx: ServerContext):
    a = login(ctx, "a@example.com")
    r = a.put("/api/v1/secrets/GH_TOKEN", json={"value": "ghp_supersecretvalue"})
    assert r.status_code == 200 and "ghp_supersecretvalue" not in r.text
    listed = a.get("/api/v1/secrets").json()
    assert [s["name"] for s in listed] == ["GH_TOKEN"] and "value" not in listed[0]
    assert a.put("/api/v1/secrets/bad-name", json={"value": "x"}).status_code == 422
    big = "x" * (ctx.settings.max_secret_bytes + 1)
    assert a.put("/api/v1/secrets/BIG", json={"value": big}).status_code in (413, 422)
    with ctx.db.session() as s:
        row = s.scalar(select(Secret))
        names = list(s.scalars(select(Secret.name)))
    assert names == ["GH_TOKEN"]
    assert b"ghp_supersecretvalue" not in row.ciphertext + row.wrapped_key + row.nonce
    b = login(ctx, "b@example.com")
    assert b.get("/api/v1/secrets").json() == []
    assert b.delete("/api/v1/secrets/GH_TOKEN").status_code == 404


def test_secret_row_copied_to_another_owner_does_not_decrypt(ctx: ServerContext):
    from dev8.core.errors import Invalid
    from dev8.core.secrets import reveal_secrets
    a = login(ctx, "a@example.com")
    login(ctx, "b@example.com")
    a.put("/api/v1/secrets/TOKEN", json={"value": "alice-only"})
    with ctx.db.session() as s:
        row = s.scalar(select(Secret).where(Secret.name == "TOKEN"))
        a_id = row.owner_id
        b_id = a_id + 1
        s.add(Secret(owner_id=b_id, name="TOKEN", key_id=row.key_id, wrapped_key=row.wrapped_key,
                     nonce=row.nonce, ciphertext=row.ciphertext))
    with ctx.db.session() as s:
        assert reveal_secrets(s, ctx.keyring, a_id, ["TOKEN"]) == {"TOKEN": "alice-only"}
        with pytest.raises(Invalid, match="secret TOKEN cannot be decrypted"):  # named, with what to do
            reveal_secrets(s, ctx.keyring, b_id, ["TOKEN"])


def test_rotate_keys_rewraps_every_data_key(ctx: ServerContext):
    from dev8.core.secrets import reveal_secrets, rotate_keys
    a = login(ctx, "a@example.com")
    a.put("/api/v1/secrets/ONE", json={"value": "1"})
    a.post("/api/v1/environments", json={"name": "rot"})
    old = ctx.keyring.active
    assert rotate_keys(ctx.db, ctx.keyring) == 2
    del ctx.keyring.provider.keys[old]  # type: ignore[attr-defined]
    with ctx.db.session() as s:
        assert {r.key_id for r in s.scalars(select(Secret))} == {ctx.keyring.active}
        assert {r.key_id for r in s.scalars(select(EnvironmentKey))} == {ctx.keyring.active}
        owner = s.scalar(select(Secret.owner_id))
        assert reveal_secrets(s, ctx.keyring, owner, ["ONE"]) == {"ONE": "1"}


@pytest.mark.parametrize("body, fragment", [
    ({"name": "Bad_Name"}, "invalid environment name"),
    ({"name": "-x"}, "invalid environment name"),
    ({"name": "a" * 33}, "invalid environment name"),
    ({"name": "ok", "cpus": 0}, "cpus"),
    ({"name": "ok", "memory": "lots"}, "invalid memory"),
    ({"name": "ok", "memory": "1m"}, "between"),
    ({"name": "ok", "secrets": ["MISSING"]}, "unknown secret"),
    ({"name": "ok", "image": "has space"}, "invalid image"),
])
def test_invalid_create_is_4xx_and_leaves_nothing(ctx: ServerContext, body: dict, fragment: str):
    a = login(ctx, "a@example.com")
    r = a.post("/api/v1/environments", json=body)
    assert r.status_code == 422 and fragment in str(r.json()["detail"])
    with ctx.db.session() as s:
        assert s.scalar(select(Environment.id)) is None
        assert s.scalar(select(EnvironmentKey.env_id)) is None


def test_duplicate_name_conflicts_and_other_users_get_404(ctx: ServerContext):
    a = login(ctx, "a@example.com")
    b = login(ctx, "b@example.com")
    r = a.post("/api/v1/environments", json={"name": "web"})
    assert r.status_code == 202 and r.json()["state"] == "pending"
    assert a.post("/api/v1/environments", json={"name": "web"}).status_code == 409
    paths = [("GET", ""), ("GET", "/events?follow=false"), ("POST", "/stop"), ("POST", "/start"),
             ("POST", "/restart"), ("DELETE", "")]
    for method, path in paths:
        theirs = b.request(method, "/api/v1/environments/web" + path)
        missing = b.request(method, "/api/v1/environments/nothere" + path)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"] == "no environment 'web'"
    for method, path in paths:
        assert a.request(method, "/api/v1/environments/web" + path).status_code < 300
    assert a.get("/api/v1/environments/web").status_code == 404  # deletion requested
    assert b.post("/api/v1/environments", json={"name": "web"}).status_code == 202  # names are per user
    with ctx.db.session() as s:  # deletion requested, or (the reconciler woke in time) done
        assert s.scalar(select(Environment.desired_state).where(Environment.owner_id == 1)) in ("deleted", None)


def test_oversized_body_is_413_and_writes_nothing(ctx: ServerContext):
    a = login(ctx, "a@example.com")
    huge = {"name": "big", "image": "x", "pad": "y" * (ctx.settings.max_body_bytes + 10)}
    assert a.post("/api/v1/environments", json=huge).status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(ctx.settings.max_body_bytes // 1000 + 5):
            yield b" " * 1000
    r = a.post("/api/v1/environments", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    with ctx.db.session() as s:
        assert s.scalar(select(Environment.id)) is None


def test_dead_docker_daemon_gives_503_with_reason_and_no_row(tmp_path: Path, db_url: str):
    ctx = make_ctx(tmp_path, db_url, DockerRuntime(base_url=f"unix://{tmp_path}/no-docker.sock"))
    a = login(ctx, "a@example.com")
    r = a.post("/api/v1/environments", json={"name": "web"})
    assert r.status_code == 503 and "Docker engine unreachable" in r.json()["detail"]
    assert "Traceback" not in r.text
    with ctx.db.session() as s:
        assert s.scalar(select(Environment.id)) is None
    health = TestClient(create_app(ctx)).get("/healthz").json()
    assert health["status"] == "ok" and "unreachable" in health["runtime"]
    ctx.tunnels.close()
    ctx.db.dispose()
