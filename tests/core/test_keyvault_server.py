"""A dev8 server whose key-encryption key is in Azure Key Vault (the stand-in of
tests/azure/keyvault_stub.py), on the ``fake`` runtime: secrets reach environments, a
canary never shows in the clear, keys rotate while the server runs, an installation moves
from the local keyring to the vault and back, and the vault going down breaks only what
needs a secret, with the reason, until it is back."""
from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.azure.keyvault_stub import KeyVaultStub
from tests.support import PASSWORD, Dev8Server, User, fake_server, set_web_password, unique, wait_until


def vault_env(keyvault: KeyVaultStub, key: str, **more: str) -> dict[str, str]:
    return {**keyvault.settings_env(key), "DEV8_KEYVAULT_REFRESH": "1", "DEV8_KEYVAULT_TIMEOUT": "2", **more}


@pytest.fixture(scope="module")
def kv_key(keyvault: KeyVaultStub) -> str:
    name = unique("dev8-kek-")
    keyvault.create(name)
    return name


@pytest.fixture(scope="module")
def kv(tmp_path_factory: pytest.TempPathFactory, keyvault: KeyVaultStub, kv_key: str) -> Iterator[Dev8Server]:
    with fake_server(tmp_path_factory.mktemp("keyvault-server"), **vault_env(keyvault, kv_key)) as srv:
        yield srv


@pytest.fixture(scope="module")
def erin(kv: Dev8Server, tmp_path_factory: pytest.TempPathFactory) -> User:
    return User(kv, "erin@example.com", tmp_path_factory.mktemp("erin"))


def key_ids(server: Dev8Server) -> set[str]:
    with sqlite3.connect(server.data_dir / "dev8.db") as db:
        return {k for (k,) in db.execute("SELECT key_id FROM secrets UNION SELECT key_id FROM environment_keys "
                                         "UNION SELECT key_id FROM gateway_keys")}


def instance_of(server: Dev8Server, env: str) -> str:
    with sqlite3.connect(server.data_dir / "dev8.db") as db:
        return str(db.execute("SELECT instance_id FROM environments WHERE name = ?", (env,)).fetchone()[0])


def secret_in_env(user: User, env: str, name: str) -> str:
    r = user.ssh(env, f'cat "$DEV8_RUN_DIR/secrets/{name}"')
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_secrets_are_sealed_in_the_vault_and_a_canary_never_shows_in_the_clear(kv: Dev8Server, erin: User,
                                                                               keyvault: KeyVaultStub, kv_key: str):
    canary = "canary-" + uuid.uuid4().hex
    erin.cli("secrets", "set", "CANARY", input=canary + "\n")
    name = unique("kv")
    erin.cli("create", name, "--secret", "CANARY")
    assert secret_in_env(erin, name, "CANARY") == canary  # it reached the environment, and only there
    prefix = f"{keyvault.url}/keys/{kv_key}/"
    assert key_ids(kv) and all(k.startswith(prefix) for k in key_ids(kv)), key_ids(kv)
    assert not (kv.data_dir / "keyring.json").exists()  # no key of dev8's own on its disk
    needle = canary.encode()
    for path in kv.data_dir.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    assert canary not in kv.log()
    api = erin.http()
    for url in ("/secrets", "/environments", f"/environments/{name}", f"/environments/{name}/events?follow=false"):
        r = api.get(url)
        assert r.status_code == 200 and canary not in r.text, (url, r.status_code)
    out = kv.cli("admin", "keyring", "status").stdout
    assert "provider: azure-keyvault" in out and f"active key: {prefix}" in out and "[azure-keyvault, active]" in out


def test_rotating_on_a_running_server_moves_every_value_to_a_new_version(kv: Dev8Server, erin: User,
                                                                         keyvault: KeyVaultStub, kv_key: str):
    erin.cli("secrets", "set", "ROT", input="before-rotation\n")
    name = unique("rot")
    erin.cli("create", name, "--secret", "ROT")
    old = key_ids(kv)
    out = kv.cli("admin", "rotate-keys").stdout  # the server keeps running
    assert "rewrapped" in out
    new = keyvault.keys[kv_key].versions[-1].version
    assert key_ids(kv) == {keyvault.kid(kv_key, new)}
    for kid in old:  # nothing needs the old versions: an operator may disable them
        keyvault.set_enabled(kv_key, kid.rsplit("/", 1)[1], False)
    status = kv.cli("admin", "keyring", "status").stdout
    assert "disabled; not needed" in status and f"active key: {keyvault.kid(kv_key, new)}" in status
    # a new instance: the server opens the environment's key and secret under the new version
    erin.cli("restart", name)
    assert secret_in_env(erin, name, "ROT") == "before-rotation"
    # what the server seals from now on is under the new version (taken up within DEV8_KEYVAULT_REFRESH)
    erin.cli("secrets", "set", "AFTER", input="after\n")
    assert key_ids(kv) == {keyvault.kid(kv_key, new)}


def test_moving_from_the_local_keyring_to_the_vault_and_back(tmp_path: Path, keyvault: KeyVaultStub):
    key = unique("dev8-move-")  # not made yet: migrate-keyring makes it
    env = vault_env(keyvault, key, DEV8_KEYRING_PROVIDER="local")
    with fake_server(tmp_path, **env) as srv:
        fay = User(srv, "fay@example.com", tmp_path / "fay")
        fay.cli("secrets", "set", "MOVE", input="moving\n")
        name = unique("mv")
        fay.cli("create", name, "--secret", "MOVE")
        assert all(not k.startswith("https://") for k in key_ids(srv))
        out = srv.cli("admin", "migrate-keyring", "--to", "azure-keyvault").stdout
        # the secret, the environment's key and the gateway's host key
        assert "created the key" in out and "rewrapped 3 data key" in out.replace("(s)", ""), out
        assert all(k.startswith(f"{keyvault.url}/keys/{key}/") for k in key_ids(srv))
        # the running server (local provider, vault URL given) opens what moved
        fay.cli("restart", name)
        assert secret_in_env(fay, name, "MOVE") == "moving"
        srv.kill()
        srv.start(DEV8_KEYRING_PROVIDER="azure-keyvault")
        fay.cli("restart", name)
        assert secret_in_env(fay, name, "MOVE") == "moving"
        status = srv.cli("admin", "keyring", "status", DEV8_KEYRING_PROVIDER="azure-keyvault").stdout
        assert "still needed" not in status
        # and back; a half-way failure first changes nothing
        keyvault.inject("POST", "/unwrapkey$", 503, {"error": {"code": "ServiceUnavailable", "message": "busy"}},
                        skip=1)
        before = key_ids(srv)
        bad = srv.cli("admin", "migrate-keyring", "--to", "local", DEV8_KEYRING_PROVIDER="azure-keyvault",
                      DEV8_KEYRING_CACHE_SECONDS="0", check=False)
        assert bad.returncode == 1 and "nothing was changed" in bad.stderr and "503" in bad.stderr, bad.stderr
        assert key_ids(srv) == before
        keyvault.injections.clear()
        srv.cli("admin", "migrate-keyring", "--to", "local", DEV8_KEYRING_PROVIDER="azure-keyvault")
        assert all(not k.startswith("https://") for k in key_ids(srv))
        srv.kill()
        srv.start(DEV8_KEYRING_PROVIDER="local", DEV8_KEYVAULT_URL="")  # the vault no longer needed at all
        fay.cli("restart", name)
        assert secret_in_env(fay, name, "MOVE") == "moving"


def test_the_vault_down_breaks_only_what_needs_a_secret_and_converges(tmp_path: Path, keyvault: KeyVaultStub):
    key = unique("dev8-down-")
    keyvault.create(key)
    with fake_server(tmp_path, **vault_env(keyvault, key)) as srv:
        gus = User(srv, "gus@example.com", tmp_path / "gus")
        gus.cli("secrets", "set", "TOKEN", input="up\n")
        name = unique("dn")
        gus.cli("create", name, "--secret", "TOKEN")
        set_web_password(gus)
        api = gus.http()
        instance = instance_of(srv, name)
        keyvault.down()
        try:
            # a running server: listing, SSH to the configured environment (its key cached),
            # and sealing (the key's public part is known) keep working
            assert api.get("/environments").status_code == 200
            assert secret_in_env(gus, name, "TOKEN") == "up"
            assert api.put("/secrets/WHILE_DOWN", json={"value": "v"}).status_code in (200, 201)
            # a server restarted while the vault is down starts, logs in, lists …
            srv.kill()
            srv.start()
            assert httpx.get(srv.url + "/healthz", timeout=10).status_code == 200
            assert api.get("/environments").status_code == 200
            login = httpx.post(srv.url + "/api/v1/auth/login", timeout=30,
                               json={"email": gus.email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            # … and what needs a secret answers 503 with the reason
            r = api.put("/secrets/NEW", json={"value": "v"})
            assert r.status_code == 503 and "is unreachable" in r.json()["detail"], r.text
            r = api.post("/environments", json={"name": unique("no")})
            assert r.status_code == 503 and "Azure Key Vault" in r.json()["detail"], r.text
            assert {e["name"] for e in api.get("/environments").json()} == {name}  # nothing half made
            wait_until(lambda: "Azure Key Vault" in api.get(f"/environments/{name}").json()["status_message"],
                       timeout=60, what="the environment to say why dev8 cannot reach it")
            assert api.get(f"/environments/{name}").json()["state"] == "running"  # it is, and keeps its work
            r = gus.ssh(name, "true")
            assert r.returncode != 0 and "Azure Key Vault" in r.stderr and "unreachable" in r.stderr, r.stderr
        finally:
            keyvault.up()
        wait_until(lambda: api.get(f"/environments/{name}").json()["state"] == "running"
                   and not api.get(f"/environments/{name}").json()["status_message"], timeout=90,
                   what="the environment to converge once the vault is back")
        assert instance_of(srv, name) == instance  # never restarted
        assert secret_in_env(gus, name, "TOKEN") == "up"
        assert api.put("/secrets/NEW", json={"value": "v"}).status_code in (200, 201)


def test_a_backup_holds_wrapped_keys_only_and_says_what_a_restore_needs(kv: Dev8Server, erin: User, tmp_path: Path,
                                                                       keyvault: KeyVaultStub, kv_key: str):
    import json
    import tarfile
    canary = "canary-" + uuid.uuid4().hex
    erin.cli("secrets", "set", "BACKED_UP", input=canary + "\n")
    target = tmp_path / "backup.tar.gz"
    out = kv.cli("admin", "backup", str(target)).stdout
    assert "without access to that vault this backup cannot be restored" in " ".join(out.split()), out
    assert f"{keyvault.url}/keys/{kv_key}/" in out.replace("\n", "")
    with tarfile.open(target) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert "files/keyring.json" not in members
    assert not any(canary.encode() in data for data in members.values())
    manifest = json.loads(members["manifest.json"])
    assert set(manifest["vault_keys"]) == key_ids(kv)
    # restored elsewhere with the vault given: it starts, and the key of every value is the active one
    other = Dev8Server(tmp_path / "restored", extra_env=vault_env(keyvault, kv_key))
    restored = other.cli("admin", "restore", str(target)).stdout
    assert "DEV8_KEYRING_PROVIDER=azure-keyvault" in restored
    other.extra_env.update(DEV8_RUNTIME="fake", DEV8_RUNTIME_ROOT=str(tmp_path / "runtime"))
    other.start()
    try:
        status = other.cli("admin", "keyring", "status").stdout
        assert "still needed" not in status and "[azure-keyvault, active]" in status
    finally:
        other.kill()


def test_values_in_a_vault_the_server_is_not_given_stop_it_with_one_clear_line(kv: Dev8Server, erin: User):
    erin.cli("secrets", "set", "NEEDS_VAULT", input="v\n")
    kv.kill()  # one server per SQLite database: the next ones start on its data dir alone
    r = kv.cli("server", "--http-addr", "127.0.0.1:1", check=False, timeout=60,
               DEV8_KEYVAULT_URL="", DEV8_KEYRING_PROVIDER="local")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "sealed with Azure Key Vault key" in lines[0] and "DEV8_KEYVAULT_URL is not set" in lines[0], lines[0]
    other = kv.cli("server", "--http-addr", "127.0.0.1:1", check=False, timeout=60,
                   DEV8_KEYVAULT_URL="https://another.vault.azure.net")
    assert other.returncode == 1 and "this server is given Azure Key Vault https://another.vault.azure.net" in other.stderr
    kv.start()
