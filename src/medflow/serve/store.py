"""The service's database, through SQLAlchemy: API keys (hashes only), the audit trail, and model versions.

SQLite by default (a file beside the service; WAL journal, so a killed process keeps every committed row), or
PostgreSQL by URL (`postgresql+psycopg://user:pw@host/db`; `postgresql://` is taken to mean psycopg 3). Every
prediction's audit row is committed before its response is sent, so a response a client received always has
its row (tested by killing the service mid-load).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from medflow.errors import ConfigError

__all__ = ["Store", "DEFAULT_DB", "hash_key", "database_url"]

DEFAULT_DB = "sqlite:///medflow-service.db"
KEY_PREFIX = "mf_"

meta = sa.MetaData()
keys_table = sa.Table(
    "api_keys", meta,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
)
audit_table = sa.Table(
    "audit", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("key_name", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("run_dir", sa.Text, nullable=False),
    sa.Column("input_hash", sa.String(64), nullable=False),
    sa.Column("n_records", sa.Integer, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("input", sa.Text, nullable=True),
)
versions_table = sa.Table(
    "model_versions", meta,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("run_dir", sa.Text, nullable=False),
    sa.Column("added", sa.DateTime(timezone=True), nullable=False),
    sa.Column("promoted", sa.DateTime(timezone=True), nullable=True),
)


def database_url(url: str | None) -> str:
    """`--db` as SQLAlchemy wants it: a plain path means a SQLite file; postgresql:// means psycopg 3."""
    url = url or DEFAULT_DB
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def hash_key(key: str) -> str:
    """SHA-256 of a key: keys are 256-bit random tokens, so a fast hash suffices (no dictionary to attack)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """One database holding keys, audit rows and model versions; tables are created on first use."""

    def __init__(self, url: str | None = None) -> None:
        self.url = database_url(url)
        self.key_ttl = 1.0
        self._key_cache: dict[str, tuple[str | None, float]] = {}
        try:
            sqlite = self.url.startswith("sqlite")
            # a file needs no liveness ping before each use; a server connection may have been dropped
            self.engine = sa.create_engine(self.url, pool_pre_ping=not sqlite)
            if sqlite:
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            meta.create_all(self.engine)
            self._insert = _driver_insert(self.engine) if sqlite else None
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
            raise ConfigError(f"--db {url}: not a database URL SQLAlchemy understands ({e}); use a file path, "
                              "sqlite:///path.db or postgresql://user:password@host:port/database.") from None
        except sa.exc.OperationalError as e:
            raise ConfigError(f"--db {self.safe_url}: cannot open the database ({str(e.orig).strip()}).") from None

    @property
    def local(self) -> bool:
        """A database file in this process (SQLite: a commit takes tens of microseconds) rather than a server
        a commit waits for over the network."""
        return self.engine.dialect.name == "sqlite"

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden (for logs and errors)."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    # --- API keys -------------------------------------------------------------------------------------------
    def create_key(self, name: str) -> str:
        """A new key for `name`; returns it (shown once), stores only its hash."""
        if not name or len(name) > 200:
            raise ConfigError("--name: give a key name of 1 to 200 characters, e.g. --name ward7.")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            row = c.execute(sa.select(keys_table.c.revoked).where(keys_table.c.name == name)).first()
            if row is not None and row.revoked is None:
                raise ConfigError(f"a key named '{name}' exists and is active; revoke it first "
                                  f"(`medflow keys revoke {name}`) or pick another name.")
            if row is not None:
                c.execute(keys_table.delete().where(keys_table.c.name == name))
            c.execute(keys_table.insert().values(name=name, key_hash=hash_key(key), created=_now(), revoked=None))
        return key

    def revoke_key(self, name: str) -> None:
        self._key_cache.clear()
        with self.engine.begin() as c:
            n = c.execute(keys_table.update().where((keys_table.c.name == name) & keys_table.c.revoked.is_(None))
                          .values(revoked=_now())).rowcount
        if not n:
            raise ConfigError(f"no active key named '{name}'; `medflow keys list` shows them.")

    def list_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(keys_table.c.name, keys_table.c.created, keys_table.c.revoked)
                             .order_by(keys_table.c.created)).all()
        return [{"name": r.name, "created": _iso(r.created), "revoked": _iso(r.revoked)} for r in rows]

    def key_name(self, key: str) -> str | None:
        """The name of an active key, or None (unknown or revoked). Answers are cached for `key_ttl` seconds
        (1 s), so a revocation by another process (`medflow keys revoke`) takes effect within a second; one
        through this Store takes effect at once."""
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._key_cache.get(digest)
        if hit is not None and now - hit[1] < self.key_ttl:
            return hit[0]
        with self.engine.connect() as c:
            row = c.execute(sa.select(keys_table.c.name).where(
                (keys_table.c.key_hash == digest) & keys_table.c.revoked.is_(None))).first()
        name = None if row is None else row.name
        if len(self._key_cache) > 10_000:  # bounded: unknown keys sent at random must not grow it forever
            self._key_cache.clear()
        self._key_cache[digest] = (name, now)
        return name

    # --- audit ----------------------------------------------------------------------------------------------
    def audit(self, rows: list[dict[str, Any]]) -> None:
        """Commit audit rows (one transaction); returns once they are durable."""
        if self._insert is None:
            with self.engine.begin() as c:
                c.execute(audit_table.insert(), rows)
            return
        # SQLite: the statement compiled once and executed on the driver's connection (SQLAlchemy's execution
        # path cost a tenth of a served prediction), values formatted by the columns' own SQLAlchemy types
        sql, columns = self._insert
        params = [tuple(v if proc is None else proc(v) for name, proc in columns for v in (row.get(name),))
                  for row in rows]
        raw = self.engine.raw_connection()
        try:
            raw.cursor().executemany(sql, params)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()  # back to the pool

    def audit_rows(self, since: datetime | None = None, model: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(audit_table).order_by(audit_table.c.id)
        if since is not None:
            q = q.where(audit_table.c.time >= since)
        if model:
            q = q.where(audit_table.c.model == model)
        with self.engine.connect() as c:
            return [{k: (_iso(v) if isinstance(v, datetime) else v) for k, v in r._mapping.items()}
                    for r in c.execute(q)]

    # --- model versions -------------------------------------------------------------------------------------
    def add_version(self, name: str, run_dir: str) -> int:
        with self.engine.begin() as c:
            last = c.execute(sa.select(sa.func.max(versions_table.c.version))
                             .where(versions_table.c.name == name)).scalar()
            version = int(last or 0) + 1
            c.execute(versions_table.insert().values(name=name, version=version, run_dir=run_dir, added=_now(),
                                                     promoted=None))
        return version

    def versions(self, name: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(versions_table).order_by(versions_table.c.name, versions_table.c.version)
        if name:
            q = q.where(versions_table.c.name == name)
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
        live = self.live_versions()
        for r in rows:
            r["live"] = live.get(r["name"], {}).get("version") == r["version"]
            r["added"], r["promoted"] = _iso(r["added"]), _iso(r["promoted"])
        return rows

    def promote(self, name: str, version: int | None = None) -> int:
        """Make `version` (default: the newest) the one served under `name`."""
        rows = self.versions(name)
        if not rows:
            raise ConfigError(f"no model named '{name}' in the registry; add one with "
                              f"`medflow registry add {name} RUN_DIR`.")
        version = version or rows[-1]["version"]
        if version not in {r["version"] for r in rows}:
            raise ConfigError(f"'{name}' has versions {[r['version'] for r in rows]}, not {version}.")
        with self.engine.begin() as c:
            c.execute(versions_table.update().where((versions_table.c.name == name)
                                                    & (versions_table.c.version == version)).values(promoted=_now()))
        return version

    def rollback(self, name: str) -> int:
        """Serve the version that was live before the current one."""
        promoted = sorted((r for r in self.versions(name) if r["promoted"]), key=lambda r: r["promoted"])
        if len(promoted) < 2:
            raise ConfigError(f"'{name}' has no earlier promoted version to roll back to.")
        current = promoted[-1]["version"]
        earlier = [r for r in promoted if r["version"] != current]
        return self.promote(name, earlier[-1]["version"])

    def live_versions(self) -> dict[str, dict[str, Any]]:
        """name -> the most recently promoted version (its number and run directory)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(versions_table).where(versions_table.c.promoted.is_not(None))
                             .order_by(versions_table.c.promoted, versions_table.c.version)).all()
        return {r.name: {"version": r.version, "run_dir": r.run_dir} for r in rows}


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def _driver_insert(engine: sa.Engine) -> tuple[str, list[tuple[str, Any]]]:
    """The audit INSERT as the driver's SQL with positional parameters, and per parameter its column and the
    column type's bind processor (e.g. datetimes as SQLAlchemy stores them in SQLite)."""
    compiled = audit_table.insert().values({c.name: sa.bindparam(c.name) for c in audit_table.c if c.name != "id"}
                                           ).compile(dialect=engine.dialect)
    if not compiled.positional:
        raise ConfigError(f"{engine.dialect.name}: expected positional parameters for the audit insert")
    names = list(compiled.positiontup)
    return str(compiled), [(n, audit_table.c[n].type.dialect_impl(engine.dialect).bind_processor(engine.dialect))
                           for n in names]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a killed process loses nothing committed
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def dumps(obj: Any, strict: bool = False) -> str:
    """Compact JSON; `strict`: what a response may carry (no NaN or infinity: a ValueError instead)."""
    return json.dumps(obj, default=str, separators=(",", ":"), allow_nan=not strict)
