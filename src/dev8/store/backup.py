"""Backup and restore of one dev8 installation: its database, keyring and SSH host key.

A backup is one tar.gz file (mode 0600): ``manifest.json`` (format, schema revision, time,
the source's database kind), ``db/<table>.jsonl`` (every row of every table, read in one
transaction so the copy is consistent while a server runs; bytes and times tagged so they
come back as they were), and the data dir's files that cannot be re-made:
``keyring.json`` (without it no secret decrypts) and ``ssh_host_ed25519_key`` (the gateway's
identity, pinned in every user's known_hosts). Values sealed in Azure Key Vault are in it
wrapped only: the manifest lists the key versions (``vault_keys``) a restore needs access to.

Rows are portable: a backup of SQLite restores into PostgreSQL and back. Restore builds
the schema at the backup's revision with Alembic, loads the rows, then upgrades to the
current revision, so a backup from an older dev8 restores into a newer one.
"""
from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Integer, MetaData, Table, create_engine, func, insert, select, text
from sqlalchemy.engine import Connection

from dev8.core.crypto import is_local_key_id
from dev8.store.db import Database

FORMAT = 1
DATA_FILES = ("keyring.json", "ssh_host_ed25519_key")
VERSION_TABLE = "alembic_version"


class BackupError(Exception):
    """A backup cannot be written or restored; the message says why and what to do."""


def _encode(value: object) -> object:
    if isinstance(value, (bytes, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime.datetime):  # dev8 stores UTC; SQLite hands it back without a zone
        return {"$dt": value.replace(tzinfo=value.tzinfo or datetime.UTC).isoformat()}
    return value


def _decode(value: object) -> object:
    if isinstance(value, dict) and len(value) == 1:
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        if "$dt" in value:
            return datetime.datetime.fromisoformat(value["$dt"])
    return value


def _tables(conn: Connection) -> list[Table]:
    meta = MetaData()
    meta.reflect(bind=conn)
    return [t for t in meta.sorted_tables if t.name != VERSION_TABLE]  # parents before children


def _revision(conn: Connection) -> str:
    try:
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
    except Exception as exc:  # noqa: BLE001 - no schema there at all
        raise BackupError(f"the database has no dev8 schema ({exc.__class__.__name__})") from None


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    info.mtime = int(datetime.datetime.now().timestamp())
    tar.addfile(info, io.BytesIO(data))


def _export(conn: Connection, tar: tarfile.TarFile) -> tuple[str, dict[str, int]]:
    revision = _revision(conn)
    counts = {}
    for table in _tables(conn):
        lines = [json.dumps({k: _encode(v) for k, v in row._mapping.items()}, ensure_ascii=True)
                 for row in conn.execute(select(table))]
        counts[table.name] = len(lines)
        _add(tar, f"db/{table.name}.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
    return revision, counts


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """A connection that sees one moment of the database while a server may write:
    PostgreSQL in a REPEATABLE READ transaction; SQLite copied first with its online
    backup API (its WAL included), then read from the copy."""
    if db.engine.dialect.name != "sqlite":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        return
    with tempfile.TemporaryDirectory(prefix="dev8-backup-") as tmp:
        copy = Path(tmp) / "snapshot.db"
        raw = db.engine.raw_connection()
        try:
            dst = sqlite3.connect(copy)
            raw.driver_connection.backup(dst)  # type: ignore[union-attr]
            dst.close()
        finally:
            raw.close()
        engine = create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()


def write_backup(db: Database, data_dir: Path, target: Path) -> dict:
    """Write a backup of the database at ``db`` and the files of ``data_dir`` to ``target``
    (consistent while a server runs); returns the manifest (with row counts)."""
    tmp = target.with_name(target.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            with _snapshot(db) as conn:
                revision, counts = _export(conn, tar)
                vault_keys = sorted(kid for table in ("secrets", "environment_keys")
                                    for kid in conn.execute(text(f"SELECT DISTINCT key_id FROM {table}")).scalars()
                                    if not is_local_key_id(kid))
            files = [name for name in DATA_FILES if (data_dir / name).is_file()]
            for name in files:
                _add(tar, f"files/{name}", (data_dir / name).read_bytes())
            manifest = {"format": FORMAT, "revision": revision, "created_at": datetime.datetime.now(
                datetime.UTC).isoformat(), "database": db.engine.dialect.name, "rows": counts,
                "files": files, **({"vault_keys": vault_keys} if vault_keys else {})}
            _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if member.isfile():
                    f = tar.extractfile(member)
                    yield member.name, f.read() if f else b""
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{path} is not a dev8 backup ({exc})") from None


def restore_backup(db: Database, data_dir: Path, source: Path, *, replace: bool = False) -> dict:
    """Restore ``source`` into the database at ``db`` and ``data_dir``. Refuses a database
    that already holds users unless ``replace`` (then its tables are dropped first)."""
    contents = dict(_members(source))
    try:
        manifest = json.loads(contents["manifest.json"])
    except (KeyError, ValueError):
        raise BackupError(f"{source} is not a dev8 backup (no manifest)") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} has backup format {manifest.get('format')}; this dev8 reads {FORMAT}")
    with db.engine.begin() as conn:
        existing = MetaData()
        existing.reflect(bind=conn)
        users = existing.tables.get("users")
        if users is not None and conn.execute(select(func.count()).select_from(users)).scalar():
            if not replace:
                raise BackupError("the target database already holds users: restore into an empty database, "
                                  "or pass --replace to drop everything in it first")
        existing.drop_all(bind=conn)
    db.migrate(manifest["revision"])
    with db.engine.begin() as conn:
        tables = {t.name: t for t in _tables(conn)}
        for table in tables.values():
            data = contents.get(f"db/{table.name}.jsonl", b"").decode()
            rows = [{k: _decode(v) for k, v in json.loads(line).items()} for line in data.splitlines() if line]
            if rows:
                conn.execute(insert(table), rows)
        if conn.dialect.name == "postgresql":  # serial ids continue after the restored ones
            for table in tables.values():
                for col in table.primary_key.columns:
                    if isinstance(col.type, Integer):
                        conn.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                            f"COALESCE((SELECT MAX({col.name}) FROM {table.name}), 0) + 1, false)"))
    db.upgrade()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in manifest.get("files", []):
        if name in DATA_FILES and f"files/{name}" in contents:
            path = data_dir / name
            tmp = path.with_name(name + ".restoring")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(contents[f"files/{name}"])
            os.replace(tmp, path)
    return manifest
