"""What keeping the key-encryption key in Azure Key Vault costs a secret's reveal (what a
configure or a reconnect does: read the row, unwrap its data key, decrypt), against the
local keyring doing the same work: the vault stand-in on loopback (tests/azure), the real
SDK, a real SQLite store. Warm: the data key in dev8's cache. Cold: no cache, every reveal
an unwrapkey call to the vault (over a kept-alive HTTPS connection, as a running server
has). Also sealing a value (the SDK wraps locally with the key's public part).

    python -m bench.keyvault --runs 300
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, report  # noqa: E402
from dev8.core.auth import create_user  # noqa: E402
from dev8.core.crypto import DataKeyCache, Keyring, LocalKeyring, secret_aad  # noqa: E402
from dev8.core.keyvault import VaultKeyring  # noqa: E402
from dev8.core.secrets import reveal_secrets, set_secret  # noqa: E402
from dev8.store.db import Database  # noqa: E402
from tests.azure.keyvault_stub import KeyVaultStub  # noqa: E402
from tests.support import make_tls_certs  # noqa: E402


def timed(fn: Callable[[], object], runs: int) -> float:
    fn()  # the first call pays connection and token set-up; a server pays it once
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dev8-bench-kv-") as root_name:
        root = Path(root_name)
        make_tls_certs(root / "tls", "127.0.0.1")
        stub = KeyVaultStub(root / "tls", key_size=3072).start()
        try:
            os.environ.update(stub.credential_env())
            stub.create("bench-kek")
            vault = VaultKeyring(stub.url, "bench-kek", ca_bundle=stub.ca, instance_discovery=False,
                                 verify_challenge_resource=False)
            local = Keyring(LocalKeyring.create(root))
            warm = Keyring(vault)
            cold = Keyring(vault, cache=DataKeyCache(ttl=0))
            db = Database(f"sqlite:///{root / 'dev8.db'}")
            db.upgrade()
            with db.session() as s:
                local_user = create_user(s, email="local@example.com")
                vault_user = create_user(s, email="vault@example.com")
                set_secret(s, local, local_user, name="GH", value="ghp_" + "x" * 36, max_bytes=1024)
                set_secret(s, warm, vault_user, name="GH", value="ghp_" + "x" * 36, max_bytes=1024)
                ids = local_user.id, vault_user.id

            def reveal(ring: Keyring, owner: int) -> Callable[[], object]:
                def run() -> object:
                    with db.session() as s:
                        return reveal_secrets(s, ring, owner, ["GH"])
                return run
            rows = [("reveal, local keyring", timed(reveal(local, ids[0]), args.runs)),
                    ("reveal, Key Vault, data key cached", timed(reveal(warm, ids[1]), args.runs)),
                    ("reveal, Key Vault, no cache (unwrapkey)", timed(reveal(cold, ids[1]), args.runs)),
                    ("seal, local keyring", timed(lambda: local.seal(b"v" * 40, secret_aad(1, "GH")), args.runs)),
                    ("seal, Key Vault (wrapped with the public key)",
                     timed(lambda: warm.seal(b"v" * 40, secret_aad(1, "GH")), args.runs))]
            base = {"reveal": rows[0][1], "seal": rows[3][1]}
            report(f"secret latency, median of {args.runs} (ms); ratio against the local keyring",
                   [(f"{label} ({value / base[label.split(',')[0]]:.1f}×)", value, "ms") for label, value in rows])
            db.dispose()
        finally:
            stub.shutdown()


if __name__ == "__main__":
    main()
