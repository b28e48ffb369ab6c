"""Storage: SQLAlchemy 2 models and the engine set-up.

Everything the control plane knows, except the live websocket sockets themselves, is in these
tables — which instance is connected to which replica included — so a restart loses nothing
and several replicas on one PostgreSQL database share one view. SQLite (a file, WAL journal) is
the default for one replica; ``postgresql+psycopg://…`` is the one meant for larger sites and
for several replicas.

Nothing here runs on the event loop: :mod:`.store` runs every transaction in its worker pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool


class Base(DeclarativeBase):
    """Declarative base of the control plane's tables."""


class ApiToken(Base):
    """A bearer token; only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    bootstrap: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)


class Checkpoint(Base):
    """A checkpoint: a named group of instances at one site."""

    __tablename__ = "checkpoints"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    labels_json: Mapped[str] = mapped_column(Text, default="{}")
    admin_state: Mapped[str] = mapped_column(String(16), default="active")
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    @property
    def labels(self) -> dict[str, str]:
        value = json.loads(self.labels_json or "{}")
        return value if isinstance(value, dict) else {}


class CheckpointCredential(Base):
    """The NAME of a credential a checkpoint holds in its own secrets file (values never come here).

    A table of its own rather than a column, so that ``create_schema`` adds it to an existing
    database without a migration.
    """

    __tablename__ = "checkpoint_credentials"

    checkpoint: Mapped[str] = mapped_column(
        String(63), ForeignKey("checkpoints.name", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)


class Instance(Base):
    """An enrolled instance of a checkpoint, with its identity public key and last health."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("checkpoint", "name", name="uq_instance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checkpoint: Mapped[str] = mapped_column(
        String(63), ForeignKey("checkpoints.name", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    public_key: Mapped[str] = mapped_column(String(64))
    keyid: Mapped[str] = mapped_column(String(16), index=True)
    enrolled_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    last_heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_connected_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_disconnected_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    health_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the latest heartbeat of the live session did not say ``healthy: false`` (true until one does)
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    #: the replica holding the instance's live session and that session's id; both null when
    #: it is not connected. A row whose replica stopped beating counts as not connected.
    replica_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: the control-plane URL the live session's hello was signed for: the ``iss`` of its instructions
    session_url: Mapped[str | None] = mapped_column(String(512), nullable=True)

    @property
    def health(self) -> dict[str, Any]:
        if not self.health_json:
            return {}
        value = json.loads(self.health_json)
        return value if isinstance(value, dict) else {}


class Monitor(Base):
    """A monitor: a check spec run on one checkpoint every ``interval_s`` seconds."""

    __tablename__ = "monitors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    checkpoint: Mapped[str] = mapped_column(
        String(63), ForeignKey("checkpoints.name", ondelete="CASCADE"), index=True
    )
    spec_json: Mapped[str] = mapped_column(Text)
    interval_s: Mapped[float] = mapped_column(Float)
    timeout_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    next_due: Mapped[float] = mapped_column(Float, index=True)
    last_instance: Mapped[str | None] = mapped_column(String(63), nullable=True)

    @property
    def spec(self) -> dict[str, Any]:
        value = json.loads(self.spec_json)
        assert isinstance(value, dict)
        return value


class Dispatch(Base):
    """One ``run_check`` instruction for one instance, and what became of it.

    The instruction's payload (nonce, ``seq``, lifetime, body) is kept, so that whichever
    replica holds the instance's session can sign and deliver it — again after a reconnect,
    with the same nonce: the agent runs an instruction once (its replay cache refuses the same
    nonce twice).
    """

    __tablename__ = "dispatches"
    __table_args__ = (
        Index("ix_dispatch_status_deadline", "status", "deadline"),
        Index("ix_dispatch_instance_status", "checkpoint", "instance", "status"),
        Index("ix_dispatch_delivery", "status", "replica_id", "sent_at"),
        # one first attempt per due time of a monitor, whichever replica claims it
        Index("uq_dispatch_due", "monitor_id", "due_at", unique=True,
              sqlite_where=text("due_at IS NOT NULL"), postgresql_where=text("due_at IS NOT NULL")),
    )

    check_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    monitor_id: Mapped[str] = mapped_column(String(36), index=True)
    checkpoint: Mapped[str] = mapped_column(String(63))
    instance: Mapped[str] = mapped_column(String(63))
    attempt: Mapped[int] = mapped_column(Integer)
    dispatched_at: Mapped[float] = mapped_column(Float)
    #: the due time this first attempt serves (null for retries and moved checks)
    due_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deadline: Mapped[float] = mapped_column(Float)
    #: ``pending``, ``done`` (a result arrived), ``timeout``, ``cancelled`` (monitor deleted),
    #: ``reassigned`` (its instance went away; a new dispatch replaced it) or ``error`` (could
    #: not be processed; set aside)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    #: the replica that is to deliver it (the one holding the instance's session when it was
    #: made, or the one the instance reconnected to)
    replica_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    #: when a replica handed it to the instance's session (null: not yet)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the instruction payload (JSON); the column's name is older than that (it held whole
    #: signed envelopes, which :func:`~.instructions.stored_payload` still reads)
    payload_json: Mapped[str] = mapped_column("envelope_json", Text, default="")
    #: how many times this check has moved to another instance because its own went away
    moves: Mapped[int] = mapped_column(Integer, default=0)


class Result(Base):
    """A check result as the agent sent it, keyed (and deduplicated) by its id."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_monitor_received", "monitor_id", "received_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    monitor_id: Mapped[str] = mapped_column(String(36))
    check_id: Mapped[str] = mapped_column(String(128))
    checkpoint: Mapped[str] = mapped_column(String(63))
    instance: Mapped[str] = mapped_column(String(63))
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    phases_json: Mapped[str] = mapped_column(Text, default="{}")
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    received_at: Mapped[float] = mapped_column(Float)


class Alert(Base):
    """An alert (``monitor_down``, ``checkpoint_unavailable``); open while ``closed_at`` is null."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_kind_subject_closed", "kind", "subject", "closed_at"),
        # at most one open alert per (kind, subject), whichever replica opens it
        Index(
            "uq_alerts_open", "kind", "subject", unique=True,
            sqlite_where=text("closed_at IS NULL"), postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class Release(Base):
    """The release published on a channel; its manifest is signed on each request."""

    __tablename__ = "releases"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    image: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str] = mapped_column(String(71))
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[float] = mapped_column(Float)


class SigningKeyRecord(Base):
    """A public signing key the control plane has used; ``not_after`` set once it is rotated out."""

    __tablename__ = "signing_keys"

    keyid: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    not_after: Mapped[float | None] = mapped_column(Float, nullable=True)


class Replica(Base):
    """A running control-plane process; ``last_seen`` is refreshed every scheduler tick."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    host: Mapped[str] = mapped_column(String(255), default="")


class SchemaInfo(Base):
    """One row: the schema version this database was created with."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


#: bumped whenever a table changes; there are no migrations yet (docs/control-plane.md, "Storage")
SCHEMA_VERSION = 2


class SchemaError(RuntimeError):
    """The database was made by another version of the control plane."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy's recipe for pysqlite: let SQLAlchemy emit BEGIN itself (below), so that
    # savepoints work and the pragmas run outside a transaction
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


#: worker threads (and pooled connections) per replica on a server database; SQLite has one
DB_WORKERS = 4


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


class Database:
    """The engine, a session factory and schema creation."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(pool_pre_ping=True, pool_size=DB_WORKERS, max_overflow=2)
        self.url = parsed
        self.engine: Engine = create_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def create_schema(self) -> None:
        """Create missing tables (idempotent); :class:`SchemaError` for a database of another version."""
        with self.engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            if existing & {"checkpoints", "instances"} and "schema_info" not in existing:
                raise SchemaError(
                    f"the database at {self.url.render_as_string(hide_password=True)} was made by an earlier "
                    f"development version of the control plane (before schema {SCHEMA_VERSION}); there are no "
                    "migrations yet: start with a new, empty database"
                )
            Base.metadata.create_all(conn)
            self._check_version(conn)

    @staticmethod
    def _check_version(conn: Connection) -> None:
        version = conn.scalar(select(SchemaInfo.version).where(SchemaInfo.id == 1))
        if version is None:
            conn.execute(insert(SchemaInfo).values(id=1, version=SCHEMA_VERSION))
        elif version != SCHEMA_VERSION:
            raise SchemaError(
                f"the database has schema version {version}, this control plane uses {SCHEMA_VERSION}; "
                "there are no migrations yet"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def now() -> float:
    """Wall-clock time in unix seconds (one place to patch in tests)."""
    return time.time()
