"""`dev8 admin backup` / `restore`: a running server's data (database, keyring, gateway host
key) into one file and back, SQLite to PostgreSQL and back, with the fake runtime (the
environments themselves keep running; their homes are the runtime's to back up)."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

from tests.support import Dev8Server, Postgres, User, kill_fake_environments, unique, wait_until


def state(user: User, name: str) -> str:
    return user.http().get(f"/environments/{name}").json()["state"]


def test_backup_of_a_running_server_restores_into_postgresql_and_back(tmp_path: Path, postgres: Postgres) -> None:
    runtime = {"DEV8_RUNTIME": "fake", "DEV8_RUNTIME_ROOT": str(tmp_path / "runtime")}
    a = Dev8Server(tmp_path / "a", extra_env=runtime).start()
    try:
        kim = User(a, "kim@example.com", tmp_path / "kim")
        kim.cli("secrets", "set", "KEEP_ME", input="precious-value\n")
        name = unique("b")
        kim.cli("create", name, "--secret", "KEEP_ME")
        backup = tmp_path / "dev8.tar.gz"
        out = a.cli("admin", "backup", str(backup)).stdout  # while it runs
        assert "wrote" in out and "keyring.json" in out and "ssh_host_ed25519_key" in out, out
        assert backup.stat().st_mode & 0o777 == 0o600
        with tarfile.open(backup) as tar:
            names = tar.getnames()
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            secrets_dump = tar.extractfile("db/secrets.jsonl").read()  # type: ignore[union-attr]
        assert {"db/users.jsonl", "db/environments.jsonl", "files/keyring.json"} <= set(names)
        assert manifest["rows"]["secrets"] == 1 and manifest["database"] == "sqlite"
        assert b"precious-value" not in secrets_dump  # sealed, as in the database
    finally:
        a.kill()

    pg_url = postgres.create_database()
    b = Dev8Server(tmp_path / "b", database_url=pg_url, extra_env=runtime)
    b.http_port, b.ssh_port, b.url = a.http_port, a.ssh_port, a.url  # restored at the same address
    out = b.cli("admin", "restore", str(backup)).stdout
    assert "restored" in out and "sqlite → postgresql" in out, out
    again = b.cli("admin", "restore", str(backup), check=False)  # not over existing data by accident
    assert again.returncode != 0 and "already holds users" in again.stderr
    b.start()
    try:
        kim.server = b  # the same token and SSH key, the same gateway host key (known_hosts)
        assert kim.http().get("/me").json()["email"] == "kim@example.com"
        wait_until(lambda: state(kim, name) == "running", timeout=60, what="the environment on the restored server")
        r = kim.ssh(name, 'cat "$DEV8_RUN_DIR/secrets/KEEP_ME"')
        assert r.returncode == 0 and r.stdout.strip() == "precious-value", r.stderr
        kim.cli("secrets", "set", "AFTER_RESTORE", input="x\n")  # ids go on after the restored ones
        second = tmp_path / "from-pg.tar.gz"
        b.cli("admin", "backup", str(second))
    finally:
        b.kill()
        kill_fake_environments(tmp_path / "runtime")

    c = Dev8Server(tmp_path / "c", extra_env=runtime)
    assert "postgresql → sqlite" in c.cli("admin", "restore", str(second)).stdout
    with tarfile.open(second) as tar:
        rows = json.loads(tar.extractfile("manifest.json").read())["rows"]  # type: ignore[union-attr]
    assert rows["secrets"] == 2 and rows["users"] == 1
    import sqlite3
    with sqlite3.connect(c.data_dir / "dev8.db") as db:
        assert db.execute("SELECT count(*) FROM secrets").fetchone()[0] == 2
        created = db.execute("SELECT created_at FROM users").fetchone()[0]
    assert created.startswith("20"), created
