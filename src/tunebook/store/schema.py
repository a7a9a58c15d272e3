"""The store's tables and how a database becomes (or is recognised as) a tunebook store.

Schema version :data:`SCHEMA_VERSION`. A store of version 1 (measurements a row per point) is
migrated on opening, in one transaction (:mod:`tunebook.store.migrate`); a store of a newer
version is refused. Connection settings per backend live here too: SQLite's pragmas, libpq's
keepalives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from tunebook.errors import StoreError
from tunebook.store.checks import foreign_database
from tunebook.store.retry import one_line

__all__ = ["CLAIMABLE_SQL", "SCHEMA_VERSION", "claimable_ix", "create_engine", "curves_t",
           "ensure_schema", "libpq_args", "metadata",
           "schema_race", "sqlite_pragmas", "sqlite_url"]

#: 2: measurements kept as curve chunks (:mod:`tunebook.store.chunks`); 1: a row per point.
SCHEMA_VERSION = 2

metadata = sa.MetaData()

meta_t = sa.Table(
    "tunebook_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
experiments_t = sa.Table(
    "experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("identity", sa.String(64), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
studies_t = sa.Table(
    "studies", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("scientific", sa.Text, nullable=False),
    sa.Column("algorithm", sa.String(32), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("budget", sa.Integer, nullable=False),
    sa.Column("designer_state", sa.Text, nullable=False, default="{}"),
    sa.UniqueConstraint("experiment_id", "name"),
)
trials_t = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.String(128)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("run_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("error", sa.Text),
    sa.Column("infeasible_reason", sa.Text),
    sa.Column("infeasible_step", sa.Integer),
    sa.Column("checkpoint_step", sa.Integer),
    sa.Column("best_step", sa.Integer),
    sa.Column("best_value", sa.Float),
    sa.Column("final_step", sa.Integer),
    sa.Column("final_value", sa.Float),
    sa.UniqueConstraint("study_id", "idx"),
)
sa.Index("ix_trials_status", trials_t.c.status)
# The claim's index: only claimable trials, per study in the order they are claimed (lowest
# index first), so a claim reads one entry per study whatever the number of trials. A partial
# index: finished trials leave it, and it stays the size of the queue. The statuses are
# literals, here and in the claim (queries.claim_statement): a planner proves that a query may
# use a partial index only from literal values, never from bound parameters.
CLAIMABLE_SQL = "status IN ('pending', 'interrupted')"
claimable_ix = sa.Index("ix_trials_claimable", trials_t.c.study_id, trials_t.c.idx,
                        sqlite_where=sa.text(CLAIMABLE_SQL),
                        postgresql_where=sa.text(CLAIMABLE_SQL))
# The measurements: each curve (a metric of a trial) in chunks of consecutive points, packed
# (tunebook.store.chunks); written by tunebook.store.ingest, one transaction per batch.
curves_t = sa.Table(
    "curves", metadata,
    # Write order: on a step that two chunks share (never, unless writers raced), the later
    # one wins.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # One foreign key check per chunk, not per point: a measured trial cannot be deleted.
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("first_step", sa.Integer, nullable=False),
    sa.Column("last_step", sa.Integer, nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("steps", sa.LargeBinary, nullable=False),
    sa.Column("vals", sa.LargeBinary, nullable=False),
    sa.Index("ix_curves_trial", "trial_id", "metric", "first_step"),
)
runs_t = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("workers", sa.Integer, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text),
)
notes_t = sa.Table(
    "notes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("study", sa.String(255)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)

# A procedure's recommendations. A new table needs no version bump: create_all adds it to an
# existing store, and an older tunebook ignores it.
recommendations_t = sa.Table(
    "recommendations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The base experiment's name, not an id: a procedure's experiments are built from a base
    # that need not be stored itself.
    sa.Column("experiment", sa.String(255), nullable=False),
    sa.Column("procedure", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
)

# The test set's ledger: every look at it (``tunebook final-eval``), with how the trial was
# chosen, so that a second look is counted, never silent. A new table: no version bump.
final_evals_t = sa.Table(
    "final_evals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("selection", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
)


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path)}"


def sqlite_pragmas(busy_timeout_seconds: float) -> Callable[[Any, Any], None]:
    """The ``connect`` listener that sets up each new SQLite connection."""
    busy_ms = max(0, round(busy_timeout_seconds * 1000))

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # The busy timeout first: switching to WAL needs a lock another process may hold.
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        # WAL lets readers (progress, reports) run while a worker writes; NORMAL sync is durable
        # across process crashes, which is the failure tunebook must survive.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def libpq_args(parsed: sa.engine.URL) -> dict[str, Any]:
    """Connection options for libpq drivers, unless the URL sets them: a server that vanished
    without closing its connections (a network cut, a crashed host) is noticed within about a
    minute instead of TCP's hours, so the outage retry can start."""
    if parsed.get_backend_name() != "postgresql" or not parsed.get_driver_name().startswith(
            "psycopg"):
        return {}
    wanted = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
              "keepalives_interval": 10, "keepalives_count": 3}
    return {k: v for k, v in wanted.items() if k not in parsed.query}


def create_engine(url: str, display_url: str, busy_timeout_seconds: float) -> Engine:
    """The engine of a store, set up per backend (StoreError for a bad URL or missing driver).

    ``display_url`` is the URL without its password, for the message.
    """
    options: dict[str, Any] = {}
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # After a server restart every pooled connection is dead: test each on checkout.
        options["pool_pre_ping"] = True
        options["connect_args"] = libpq_args(parsed)
    try:
        engine = sa.create_engine(url, **options)
    except Exception as exc:  # bad URL or missing driver
        raise StoreError(f"cannot open store {display_url!r}: {one_line(str(exc))}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", sqlite_pragmas(busy_timeout_seconds))
    return engine


def schema_race(exc: BaseException) -> bool:
    """Errors of processes creating the same new store at once: the loser checks again."""
    return isinstance(exc, sa.exc.IntegrityError) or (
        isinstance(exc, sa.exc.DBAPIError) and "already exists" in str(exc.orig).lower())


def ensure_schema(conn: Connection, where: str) -> None:
    """Create the tables of a new store, or check an existing one (``where`` names it) and add
    what this version has that it lacks: tables, the claim's index; a store of version 1 is
    migrated (:func:`tunebook.store.migrate.migrate_v1`, in this transaction).

    Refuses (StoreError) a database holding other tables and a store of a newer schema
    version, before creating anything. Run it under :func:`schema_race` retries: several
    processes may open a new store at once.
    """
    tables = set(sa.inspect(conn).get_table_names())
    if tables and meta_t.name not in tables:
        # Not ours: create nothing in another application's database.
        raise foreign_database(f"store {where}", tables, "database", "--store")
    if meta_t.name in tables:
        row = conn.execute(sa.select(meta_t.c.value)
                           .where(meta_t.c.key == "schema_version")).first()
        if row is not None and not 1 <= int(row[0]) <= SCHEMA_VERSION:
            raise StoreError(
                f"store {where!r} has schema version {row[0]}, this tunebook understands "
                f"versions 1 to {SCHEMA_VERSION}: a newer tunebook wrote it, upgrade this one")
        if row is not None and int(row[0]) < SCHEMA_VERSION:
            from tunebook.store.migrate import migrate_v1

            migrate_v1(conn)
    # The marker table first: SQLite commits each CREATE TABLE on its own, and a
    # process opening the store meanwhile must not take it for a foreign database.
    meta_t.create(conn, checkfirst=True)
    metadata.create_all(conn)
    # create_all adds missing tables, not the missing indexes of existing ones.
    claimable_ix.create(conn, checkfirst=True)
    if conn.execute(sa.select(meta_t.c.value)
                    .where(meta_t.c.key == "schema_version")).first() is None:
        conn.execute(sa.insert(meta_t).values(
            key="schema_version", value=str(SCHEMA_VERSION)))
