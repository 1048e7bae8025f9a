"""The Azure Key Vault key provider (core/keyvault.py): the real azure-keyvault-keys client
against the vault stand-in (tests/azure/keyvault_stub.py), real RSA-OAEP-256, request
bodies checked against the published keys specification; the store's rotation and
migration on a real database; and, on Docker, git still authenticating after a rotation
on a live server."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from dev8.core.crypto import DataKeyCache, Keyring, KeyServiceUnavailable, LocalKeyring, secret_aad
from dev8.core.keyvault import VaultKeyring
from dev8.store.db import Database
from dev8.store.models import EnvironmentKey, Secret
from tests.azure.keyvault_stub import SPEC, KeyVaultStub
from tests.azure.swagger import SpecViolation, validate
from tests.support import GIT_HOST, Dev8Server, User, make_tls_certs, start_git_server, unique


def make_vault(keyvault: KeyVaultStub, monkeypatch: pytest.MonkeyPatch, **kw: object) -> VaultKeyring:
    """A provider for a new key of its own in the stand-in, with azure-identity's
    environment credential pointed at the stand-in's token endpoint."""
    for k, v in keyvault.credential_env().items():
        monkeypatch.setenv(k, v)
    name = unique("kek-")
    keyvault.create(name)
    kw.setdefault("timeout", 5.0)
    return VaultKeyring(keyvault.url, name, ca_bundle=keyvault.ca, instance_discovery=False,
                        verify_challenge_resource=False, **kw)  # type: ignore[arg-type]


def version_of(kid: str) -> str:
    return kid.rsplit("/", 1)[1]


def test_a_value_is_sealed_with_rsa_oaep_256_and_opened_by_the_vault(keyvault: KeyVaultStub, monkeypatch):
    vault = make_vault(keyvault, monkeypatch)
    ring = Keyring(vault)
    before = keyvault.count("POST", r"/(wrap|unwrap)key$")
    sealed = ring.seal(b"ghp_canary", secret_aad(1, "GH"))
    # the value records the key version that wrapped it; wrapping needed only the public part
    newest = keyvault.keys[vault.key_name].versions[-1]
    assert sealed.key_id == keyvault.kid(vault.key_name, newest.version)
    assert keyvault.count("POST", r"/(wrap|unwrap)key$") == before
    assert keyvault.count("GET", rf"/keys/{vault.key_name}/?$") == 1
    # real RSA-OAEP-256: the vault's private key (held by the stand-in only) recovers the data key
    data_key = newest.private.decrypt(sealed.wrapped_key, padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    assert AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, secret_aad(1, "GH")) == b"ghp_canary"
    # the client's first request went without a token and was answered with the challenge
    # (the SDK keeps a vault's challenge for the process: later clients skip that step)
    assert keyvault.unauthenticated and keyvault.unauthenticated[0].startswith("/keys/")
    # opening where it is not cached calls unwrapkey; then it is cached
    cold = Keyring(VaultKeyring(keyvault.url, vault.key_name, ca_bundle=keyvault.ca, instance_discovery=False,
                                verify_challenge_resource=False, timeout=5))
    assert cold.open(sealed, secret_aad(1, "GH")) == b"ghp_canary"
    assert keyvault.count("POST", rf"/{newest.version}/unwrapkey$") == 1
    assert cold.open(sealed, secret_aad(1, "GH")) == b"ghp_canary"
    assert keyvault.count("POST", rf"/{newest.version}/unwrapkey$") == 1  # then from the cache
    # what the client sent was checked against the published specification
    sent = [body for name, body in keyvault.bodies if name == "KeyOperationsParameters"]
    assert sent and all(body["alg"] == "RSA-OAEP-256" for body in sent)


def test_the_published_spec_refuses_what_the_vault_refuses():
    validate(SPEC, "KeyOperationsParameters", {"alg": "RSA-OAEP-256", "value": "AQAB"})
    validate(SPEC, "KeyCreateParameters", {"kty": "RSA", "key_size": 3072, "key_ops": ["wrapKey", "unwrapKey"]})
    for definition, body in [
        ("KeyOperationsParameters", {"alg": "RSA-OAEP-256"}),                             # no value
        ("KeyOperationsParameters", {"alg": "ROT13", "value": "AQAB"}),                   # not an algorithm
        ("KeyOperationsParameters", {"alg": "RSA-OAEP-256", "value": "AQAB", "kid": "x"}),  # unknown property
        ("KeyCreateParameters", {"key_size": 2048}),                                      # no kty
        ("KeyCreateParameters", {"kty": "RSA", "key_ops": ["wrap"]}),                     # not an operation
        ("KeyUpdateParameters", {"attributes": {"created": 1}}),                          # read-only
    ]:
        with pytest.raises(SpecViolation):
            validate(SPEC, definition, body)


@pytest.mark.parametrize("failure, expected", [
    ("forbidden", r"forbids dev8 to unwrap a data key \(403.*Key Vault Crypto User"),
    ("disabled", r"version \w+ is disabled: enable it"),
    ("throttled", r"is throttling dev8 \(429; it asks to wait 30 s\)"),
    ("server error", r"answered 503 to unwrap a data key"),
    ("deleted", r"is not in the vault \(deleted\?"),
    ("slow", r"did not answer within 1 s"),
    ("bad token", r"refused dev8's Azure credentials \(\(Unauthorized\)"),
    ("down", r"is unreachable"),
])
def test_the_vaults_failures_are_one_sentence_and_heal(keyvault: KeyVaultStub, monkeypatch, failure: str,
                                                       expected: str):
    vault = make_vault(keyvault, monkeypatch, timeout=1.0)
    sealed = Keyring(vault).seal(b"value", b"aad")
    version = version_of(sealed.key_id)
    ring = Keyring(vault, cache=DataKeyCache(ttl=0))  # nothing cached: every open asks the vault
    heal = {
        "forbidden": lambda: keyvault.inject("POST", "/unwrapkey$", 403, {"error": {
            "code": "Forbidden", "message": "Caller is not authorized to perform action on resource."}}),
        "disabled": lambda: keyvault.set_enabled(vault.key_name, version, False),
        "throttled": lambda: keyvault.inject("POST", "/unwrapkey$", 429, {"error": {
            "code": "Throttled", "message": "Request was not processed because too many requests were received."}},
            {"Retry-After": "30"}),
        "server error": lambda: keyvault.inject("POST", "/unwrapkey$", 503, {"error": {
            "code": "ServiceUnavailable", "message": "The service is unavailable."}}),
        "deleted": lambda: keyvault.delete(vault.key_name),
        "slow": lambda: setattr(keyvault, "delay", 2.0),
        "bad token": lambda: setattr(keyvault, "refuse_tokens", True),
        "down": keyvault.down,
    }
    heal[failure]()
    try:
        with pytest.raises(KeyServiceUnavailable, match=expected) as caught:
            ring.open(sealed, b"aad")
        assert "Traceback" not in str(caught.value) and "\n" not in str(caught.value)
    finally:
        keyvault.set_enabled(vault.key_name, version, True)
        keyvault.recover(vault.key_name)
        keyvault.delay, keyvault.refuse_tokens = 0.0, False
        if failure == "down":
            keyvault.up()
        keyvault.injections.clear()
    assert ring.open(sealed, b"aad") == b"value"  # converges when the vault is back


def test_a_short_throttle_is_waited_out_once(keyvault: KeyVaultStub, monkeypatch):
    vault = make_vault(keyvault, monkeypatch)
    sealed = Keyring(vault).seal(b"value", b"aad")
    keyvault.inject("POST", "/unwrapkey$", 429, {"error": {"code": "Throttled", "message": "slow down"}},
                    {"Retry-After": "1"})
    assert Keyring(vault, cache=DataKeyCache(ttl=0)).open(sealed, b"aad") == b"value"
    assert keyvault.count("POST", rf"/{version_of(sealed.key_id)}/unwrapkey$") == 2


def test_unwrapped_data_keys_are_cached_within_their_bounds(keyvault: KeyVaultStub, monkeypatch):
    vault = make_vault(keyvault, monkeypatch)
    ring = Keyring(vault, cache=DataKeyCache(size=2, ttl=0.5))
    one, two, three = (ring.seal(v, b"a") for v in (b"1", b"2", b"3"))
    assert len(ring.cache) == 2  # what was just sealed is kept too, within the bound
    unwraps = f"/{version_of(one.key_id)}/unwrapkey$"
    assert ring.open(three, b"a") == b"3" and ring.open(two, b"a") == b"2"
    assert keyvault.count("POST", unwraps) == 0
    assert ring.open(one, b"a") == b"1"  # pushed out by the count bound: the vault again
    assert keyvault.count("POST", unwraps) == 1
    time.sleep(0.6)
    assert ring.open(one, b"a") == b"1"  # past the age bound: the vault again
    assert keyvault.count("POST", unwraps) == 2


def test_the_newest_version_is_taken_up_and_a_disabled_one_is_not_wrapped_with(keyvault: KeyVaultStub, monkeypatch):
    vault = make_vault(keyvault, monkeypatch, refresh_every=0.0)
    ring = Keyring(vault)
    first = ring.seal(b"v", b"a").key_id
    newer = keyvault.create(vault.key_name)  # an operator (or the vault's rotation policy) rotated it
    assert version_of(ring.seal(b"v", b"a").key_id) == newer != version_of(first)
    keyvault.set_enabled(vault.key_name, newer, False)
    with pytest.raises(KeyServiceUnavailable, match=f"newest version {newer} is disabled"):
        ring.seal(b"v", b"a")


def seeded_store(tmp_path: Path, ring: Keyring, n: int = 3) -> Database:
    from dev8.core.auth import create_user
    from dev8.core.secrets import seal_env_key, set_secret
    from dev8.store.models import Environment
    db = Database(f"sqlite:///{tmp_path / 'dev8.db'}")
    db.upgrade()
    with db.session() as s:
        user = create_user(s, email="kv@example.com")
        for i in range(n):
            set_secret(s, ring, user, name=f"S{i}", value=f"value-{i}", max_bytes=1024)
        env = Environment(owner_id=user.id, name="e1", image="dev8/base:latest", cpus=1.0, memory="1g",
                          control_public_key="ssh-ed25519 AAAAtest")
        s.add(env)
        s.flush()
        s.add(seal_env_key(ring, env.id, b"-----BEGIN OPENSSH PRIVATE KEY-----"))
    return db


def revealed(db: Database, ring: Keyring) -> dict[str, str]:
    from dev8.core.secrets import reveal_secrets
    with db.session() as s:
        owner = s.scalar(select(Secret.owner_id))
        assert owner is not None
        return reveal_secrets(s, ring, owner, [f"S{i}" for i in range(3)])


def key_ids(db: Database) -> set[str]:
    with db.session() as s:
        return {*s.scalars(select(Secret.key_id)), *s.scalars(select(EnvironmentKey.key_id))}


def test_rotation_makes_a_new_version_and_rewraps_every_value(keyvault: KeyVaultStub, monkeypatch, tmp_path):
    from dev8.core.secrets import rotate_keys
    vault = make_vault(keyvault, monkeypatch)
    ring = Keyring(vault)
    db = seeded_store(tmp_path, ring)
    old = ring.active
    assert rotate_keys(db, ring) == 4
    new = ring.active
    assert new != old and key_ids(db) == {new}
    assert keyvault.count("POST", f"/keys/{vault.key_name}/create$") == 1
    keyvault.set_enabled(vault.key_name, version_of(old), False)  # nothing needs it any more
    assert revealed(db, Keyring(vault, cache=DataKeyCache(ttl=0))) == {f"S{i}": f"value-{i}" for i in range(3)}
    # a version rotated in the vault by an operator, taken up without a new one of dev8's
    operators = keyvault.create(vault.key_name)
    assert rotate_keys(db, ring, new_key=False) == 4
    assert {version_of(k) for k in key_ids(db)} == {operators}
    assert keyvault.count("POST", f"/keys/{vault.key_name}/create$") == 1


def test_migrating_local_to_vault_and_back_and_a_failure_half_way_changes_nothing(keyvault: KeyVaultStub,
                                                                                  monkeypatch, tmp_path):
    from dev8.core.secrets import migrate_keyring
    local = LocalKeyring.load_or_create(tmp_path)
    db = seeded_store(tmp_path, Keyring(local))
    vault = make_vault(keyvault, monkeypatch)
    both = Keyring(local, [vault], DataKeyCache(ttl=0))
    assert migrate_keyring(db, both, vault) == 4
    assert {version_of(k) for k in key_ids(db)} == {version_of(vault.active_id())}
    assert revealed(db, both) == {f"S{i}": f"value-{i}" for i in range(3)}
    # back to the local keyring: the vault fails on the third value; nothing has moved
    with db.session() as s:
        before = {(r.name, r.key_id, r.wrapped_key) for r in s.scalars(select(Secret))}
    keyvault.inject("POST", "/unwrapkey$", 503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}, skip=2)
    with pytest.raises(KeyServiceUnavailable):
        migrate_keyring(db, both, local)
    with db.session() as s:
        assert {(r.name, r.key_id, r.wrapped_key) for r in s.scalars(select(Secret))} == before
    assert revealed(db, both) == {f"S{i}": f"value-{i}" for i in range(3)}
    assert migrate_keyring(db, both, local) == 4
    assert key_ids(db) == {local.active}
    keyvault.down()  # the local keyring alone opens everything now
    try:
        assert revealed(db, Keyring(local)) == {f"S{i}": f"value-{i}" for i in range(3)}
    finally:
        keyvault.up()


def test_git_authenticates_after_a_rotation_on_a_live_server(keyvault: KeyVaultStub, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             test_network: str, base_image: str, docker_client):
    """On Docker: a token sealed in the vault reaches the environment and `git push` works;
    the keys are rotated while the server runs, the old versions disabled in the vault, the
    environment restarted (configured again from the rewrapped values): `git push` still works."""
    key = unique("dev8-git-")
    keyvault.create(key)
    token = "tok-" + unique("") * 3
    ca = make_tls_certs(tmp_path / "tls", GIT_HOST)
    server = Dev8Server(tmp_path / "server", extra_env={
        "DEV8_RUNTIME_NETWORK": test_network, "DEV8_ENV_CA_BUNDLE": str(ca), **keyvault.settings_env(key),
        "DEV8_KEYVAULT_REFRESH": "1"}).start()
    repo = start_git_server(docker_client, test_network, tmp_path / "tls", {"x-access-token": token})
    try:
        alice = User(server, "alice@example.com", tmp_path / "alice")
        alice.cli("secrets", "set", "CORP_TOKEN", input=token)
        name = unique("kv")
        alice.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/app.git",
                  "--git", f"github@{GIT_HOST}:8443=CORP_TOKEN")

        def push(message: str) -> None:
            r = alice.ssh(name, f"cd ~/workspace/app && echo '{message}' >> CHANGE.md && git add CHANGE.md && "
                                f"git commit -qm '{message}' && git push -q origin HEAD && echo pushed")
            assert r.stdout.strip() == "pushed", r.stderr
            log = repo.exec_run("git -C /srv/git/org/app.git log --format=%s -1 main").output.decode()
            assert log.strip() == message
        push("before rotation")
        old = {v.version for v in keyvault.keys[key].versions}
        assert "rewrapped" in server.cli("admin", "rotate-keys").stdout
        for version in old:
            keyvault.set_enabled(key, version, False)
        alice.cli("restart", name)
        push("after rotation")
    finally:
        server.shutdown()
        repo.remove(force=True)


@pytest.mark.skipif(not os.environ.get("DEV8_TEST_AZURE_KEYVAULT"),
                    reason="a real vault: DEV8_TEST_AZURE_KEYVAULT=https://NAME.vault.azure.net (and Azure credentials)")
def test_live_vault(tmp_path):
    """Against a real vault: a key of its own (keys/create, get, wrapKey, unwrapKey), a
    value sealed and opened, a rotation rewrapping it. The key is left for the vault's
    owner to delete (dev8 is not given keys/delete)."""
    from dev8.core.secrets import rotate_keys
    vault = VaultKeyring(os.environ["DEV8_TEST_AZURE_KEYVAULT"], unique("dev8-live-"))
    assert vault.ensure_key()
    ring = Keyring(vault)
    db = seeded_store(tmp_path, ring)
    assert revealed(db, Keyring(vault, cache=DataKeyCache(ttl=0))) == {f"S{i}": f"value-{i}" for i in range(3)}
    assert rotate_keys(db, ring) == 4
    assert revealed(db, Keyring(vault, cache=DataKeyCache(ttl=0))) == {f"S{i}": f"value-{i}" for i in range(3)}
