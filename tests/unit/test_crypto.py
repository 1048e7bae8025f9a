import json
import os
import stat

import pytest

from dev8.core.crypto import DecryptionError, Keyring, KeyringError, Sealed, secret_aad


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
    new = ring.add_key()
    rewrapped = ring.rewrap(sealed)
    assert rewrapped.key_id == new != old
    assert rewrapped.ciphertext == sealed.ciphertext
    del ring.keys[old]
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
