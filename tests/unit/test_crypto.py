import json
import os
import stat

import pytest

from dev8.core.crypto import DataKeyCache, DecryptionError, Keyring, KeyringError, LocalKeyring, Sealed, secret_aad


def test_seal_open_roundtrip_and_fresh_data_key_each_time(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    a = ring.seal(b"ghp_secret", secret_aad(1, "GH"))
    b = ring.seal(b"ghp_secret", secret_aad(1, "GH"))
    assert ring.open(a, secret_aad(1, "GH")) == b"ghp_secret"
    assert a.wrapped_key != b.wrapped_key and a.ciphertext != b.ciphertext
    assert b"ghp_secret" not in a.ciphertext + a.wrapped_key
    assert a.key_id == ring.active


def test_ciphertext_moved_to_another_owner_or_name_does_not_decrypt(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    sealed = ring.seal(b"value", secret_aad(1, "TOKEN"))
    with pytest.raises(DecryptionError):
        ring.open(sealed, secret_aad(2, "TOKEN"))
    with pytest.raises(DecryptionError):
        ring.open(sealed, secret_aad(1, "OTHER"))


def test_tampered_ciphertext_or_wrapped_key_is_rejected(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    s = ring.seal(b"value", b"aad")
    flipped = bytes([s.ciphertext[0] ^ 1]) + s.ciphertext[1:]
    with pytest.raises(DecryptionError):
        ring.open(Sealed(s.key_id, s.wrapped_key, s.nonce, flipped), b"aad")
    bad_wrap = s.wrapped_key[:-1] + bytes([s.wrapped_key[-1] ^ 1])
    with pytest.raises(DecryptionError):
        ring.open(Sealed(s.key_id, bad_wrap, s.nonce, s.ciphertext), b"aad")


def test_keyring_file_is_private_and_reloads(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    path = tmp_path / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = ring.seal(b"x", b"a")
    again = Keyring.load_or_create(tmp_path)
    assert again.open(sealed, b"a") == b"x"
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError):
        Keyring.load_or_create(tmp_path)


def test_rewrap_moves_to_new_key_and_old_key_is_then_unneeded(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    old = ring.active
    sealed = ring.seal(b"payload", b"aad")
    new = ring.provider.rotate()
    rewrapped = ring.rewrap(sealed)
    assert rewrapped.key_id == new != old
    assert rewrapped.ciphertext == sealed.ciphertext
    del ring.provider.keys[old]  # type: ignore[attr-defined]
    assert ring.open(rewrapped, b"aad") == b"payload"
    with pytest.raises(DecryptionError):
        ring.open(sealed, b"aad")


def test_keyring_from_environment_variable(tmp_path, monkeypatch):
    ring = Keyring.load_or_create(tmp_path)
    doc = json.loads((tmp_path / "keyring.json").read_text())
    monkeypatch.setenv("DEV8_KEYRING", json.dumps(doc))
    other_dir = tmp_path / "elsewhere"
    from_env = Keyring.load_or_create(other_dir)
    assert from_env.open(ring.seal(b"v", b"a"), b"a") == b"v"
    assert not other_dir.exists()


def test_a_rotated_key_written_by_another_process_is_taken_up(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    other = LocalKeyring.load(tmp_path)  # `dev8 admin rotate-keys` while the server runs
    assert other is not None
    new = other.rotate()
    assert ring.active == new
    assert ring.seal(b"v", b"a").key_id == new


def test_a_keyring_from_the_environment_cannot_rotate(tmp_path, monkeypatch):
    ring = Keyring.load_or_create(tmp_path)
    monkeypatch.setenv("DEV8_KEYRING", (tmp_path / "keyring.json").read_text())
    from_env = LocalKeyring.load(tmp_path / "elsewhere")
    assert from_env is not None
    with pytest.raises(KeyringError, match="DEV8_KEYRING"):
        from_env.rotate()
    assert from_env.active == ring.active


def test_data_key_cache_is_bounded_in_count_and_age(monkeypatch):
    import dev8.core.crypto as crypto
    now = [1000.0]
    monkeypatch.setattr(crypto.time, "monotonic", lambda: now[0])
    cache = DataKeyCache(size=2, ttl=60)
    cache.put("k1", b"w1", b"d1")
    cache.put("k1", b"w2", b"d2")
    assert cache.get("k1", b"w1") == b"d1"  # now the most recently used
    cache.put("k1", b"w3", b"d3")           # the third: the least recently used (w2) goes
    assert len(cache) == 2
    assert cache.get("k1", b"w2") is None
    assert cache.get("k1", b"w1") == b"d1" and cache.get("k1", b"w3") == b"d3"
    assert cache.get("k2", b"w1") is None   # the key id is part of the slot
    now[0] += 61
    assert cache.get("k1", b"w1") is None and cache.get("k1", b"w3") is None
    off = DataKeyCache(size=10, ttl=0)
    off.put("k", b"w", b"d")
    assert off.get("k", b"w") is None and len(off) == 0


def test_the_local_keyring_is_not_cached_and_a_value_names_no_provider_it_has(tmp_path):
    ring = Keyring.load_or_create(tmp_path)
    ring.open(ring.seal(b"v", b"a"), b"a")
    assert len(ring.cache) == 0  # its keys are in memory anyway
    with pytest.raises(DecryptionError, match="none of this server's key providers"):
        ring.open(Sealed("https://vault.example/keys/k/1", b"w", b"n" * 12, b"c"), b"a")
