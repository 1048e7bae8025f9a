"""Existing databases migrate: an environment running before the endpoint model (revision
0004: a Docker container on loopback, known by container id and port) keeps its data and
gets an address the connection pool can use, and nothing that refers to it is lost on the
way up or down (SQLite and PostgreSQL, for real)."""
from __future__ import annotations

from sqlalchemy import text

from dev8.store.db import Database


def test_0004_database_with_a_running_environment_migrates_to_the_endpoint_model(db_url: str) -> None:
    db = Database(db_url)
    db.migrate("0004")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, email, username, password_hash, is_admin, disabled, created_at) "
                          "VALUES (1, 'a@example.com', 'a', NULL, false, false, CURRENT_TIMESTAMP)"))
        for env_id, name, port, container in (("e1", "web", 32768, "c0ffee" * 10), ("e2", "off", None, None)):
            conn.execute(text(
                "INSERT INTO environments (id, owner_id, name, image, cpus, memory, secret_names, options, "
                "desired_state, observed_state, status_message, keep_volume, restart_requested, ssh_port, "
                "container_id, control_public_key, generation, configured_generation, created_at, updated_at) "
                "VALUES (:id, 1, :name, 'dev8/base:latest', 1, '1g', '[]', '{}', 'running', :state, '', false, "
                "false, :port, :container, 'ssh-ed25519 AAAA', 2, 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"id": env_id, "name": name, "port": port, "container": container,
                 "state": "running" if port else "stopped"})
        # what hangs off an environment (ON DELETE CASCADE): its sealed control key, its events
        conn.execute(text("INSERT INTO environment_keys (env_id, key_id, wrapped_key, nonce, ciphertext) "
                          "VALUES ('e1', 'k1', :b, :b, :b)"), {"b": b"sealed"})
        conn.execute(text("INSERT INTO events (env_id, ts, step, status, message) "
                          "VALUES ('e1', CURRENT_TIMESTAMP, 'ready', 'ok', 'kept')"))

    def hanging_off() -> tuple[int, int]:
        with db.engine.connect() as conn:
            return (conn.execute(text("SELECT count(*) FROM environment_keys")).scalar(),
                    conn.execute(text("SELECT count(*) FROM events")).scalar())
    db.upgrade()
    # SQLite re-creates a table to alter a column: nothing that refers to it may go with it
    assert hanging_off() == (1, 1)
    with db.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(text(
            "SELECT id, ssh_host, ssh_port, host_key, instance_id, runtime_state, configured_generation "
            "FROM environments"))}
    assert rows["e1"].ssh_host == "127.0.0.1" and rows["e1"].ssh_port == 32768
    assert rows["e1"].instance_id == "c0ffee" * 10  # no longer what Docker reports: configured once more
    assert rows["e1"].host_key is None and rows["e1"].runtime_state is None  # pinned at that configure
    assert rows["e2"].ssh_host is None and rows["e2"].instance_id is None
    # and back down, for an operator who rolls back
    db.migrate("0004", down=True)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT container_id FROM environments WHERE id = 'e1'")).scalar() == "c0ffee" * 10
    assert hanging_off() == (1, 1)
    db.dispose()
