"""The store: every experiment, study, trial and measurement, in one SQL database.

SQLAlchemy Core over SQLite by default (WAL, one file beside the trial folders) or any URL
SQLAlchemy understands (PostgreSQL for several machines). The store is also the work queue:
workers claim trials with a compare-and-swap update, so local worker processes and workers on
other machines use the same mechanism.

Statuses: ``pending`` -> ``running`` -> ``completed`` | ``infeasible`` | ``failed``; a running
trial whose worker died goes back to ``pending`` (or ``failed`` after ``max_attempts``); one
stopped by Ctrl-C becomes ``interrupted`` and is claimed again by the next run.

Every method runs in one transaction that rides out store outages (a PostgreSQL restart, a
SQLite lock held past the busy timeout): see :mod:`tunebook.store_retry`. A retried transaction
may be one whose commit succeeded but whose reply was lost, so each method is safe to redo.

Before anything is written, a SQLite file that is not a tunebook store (another application's
database, a corrupt or truncated file) and a PostgreSQL database holding other tables are
refused, untouched. Names, metric names, steps and seeds are checked against the limits of the
columns (``MAX_*``) up front, identically on every backend.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from tunebook.errors import StoreError
from tunebook.interrupts import protected
from tunebook.store_checks import (
    MAX_METRIC_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEP,
    MAX_WORKER_LENGTH,
    check_int,
    check_sqlite_file,
    check_text,
    foreign_database,
)
from tunebook.store_retry import one_line, resolve_outage_seconds, retry

__all__ = [
    "ACTIVE",
    "CLAIMABLE",
    "MAX_METRIC_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "MAX_STEP",
    "SCHEMA_VERSION",
    "TERMINAL",
    "ExperimentRow",
    "RecommendationRow",
    "Store",
    "StudyRow",
    "TrialRow",
]

SCHEMA_VERSION = 1
CLAIMABLE = ("pending", "interrupted")
ACTIVE = ("pending", "interrupted", "running")
TERMINAL = ("completed", "infeasible", "failed")

T = TypeVar("T")

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
measurements_t = sa.Table(
    "measurements", metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
    sa.Column("metric", sa.String(128), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    # NULL stands for NaN: SQLite cannot store NaN in a REAL column.
    sa.Column("value", sa.Float),
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


# --- schema (issue 8): a procedure's recommendations. A new table needs no version bump:
# create_all adds it to an existing store, and an older tunebook ignores it.
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


@dataclass(frozen=True)
class RecommendationRow:
    """A procedure's result as stored; ``payload`` is the procedure's own JSON document."""

    id: int
    experiment: str
    procedure: str
    created_at: float
    payload: dict[str, Any]
# --- end of the issue 8 schema


@dataclass(frozen=True)
class ExperimentRow:
    """An experiment as stored."""

    id: int
    name: str
    identity: str
    config: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class StudyRow:
    """A study as stored."""

    id: int
    experiment_id: int
    name: str
    position: int
    scientific: dict[str, Any]
    algorithm: str
    seed: int
    budget: int


@dataclass(frozen=True)
class TrialRow:
    """A trial as stored; ``study`` is the study's name."""

    id: int
    study_id: int
    study: str
    index: int
    params: dict[str, Any]
    seed: int
    status: str
    attempts: int
    worker: str | None = None
    heartbeat: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    run_seconds: float = 0.0
    error: str | None = None
    infeasible_reason: str | None = None
    infeasible_step: int | None = None
    checkpoint_step: int | None = None
    best_step: int | None = None
    best_value: float | None = None
    final_step: int | None = None
    final_value: float | None = None
    first_start: bool = False  # set by claim(): no attempt ever started before this one


def _in_budget() -> Any:
    return trials_t.c.idx < studies_t.c.budget


def _sqlite_pragmas(busy_timeout_seconds: float) -> Callable[[Any, Any], None]:
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


def _libpq_args(parsed: sa.engine.URL) -> dict[str, Any]:
    """Connection options for libpq drivers, unless the URL sets them: a server that vanished
    without closing its connections (a network cut, a crashed host) is noticed within about a
    minute instead of TCP's hours, so the outage retry can start."""
    if parsed.get_backend_name() != "postgresql" or not parsed.get_driver_name().startswith(
            "psycopg"):
        return {}
    wanted = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
              "keepalives_interval": 10, "keepalives_count": 3}
    return {k: v for k, v in wanted.items() if k not in parsed.query}


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database did not return the new row's id")
    return int(key[0])


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path)}"


def _schema_race(exc: BaseException) -> bool:
    """Errors of processes creating the same new store at once: the loser checks again."""
    return isinstance(exc, sa.exc.IntegrityError) or (
        isinstance(exc, sa.exc.DBAPIError) and "already exists" in str(exc.orig).lower())


def _never_ran(conn: Connection, experiment_id: int) -> bool:
    """No trial of the experiment has a measurement, a result, a checkpoint or a live attempt."""
    ids = (sa.select(trials_t.c.id).join(studies_t, trials_t.c.study_id == studies_t.c.id)
           .where(studies_t.c.experiment_id == experiment_id))
    measured = conn.execute(sa.select(measurements_t.c.trial_id)
                            .where(measurements_t.c.trial_id.in_(ids)).limit(1)).first()
    busy = conn.execute(sa.select(trials_t.c.id).where(
        trials_t.c.id.in_(ids),
        sa.or_(trials_t.c.status.in_(("completed", "infeasible", "running")),
               trials_t.c.checkpoint_step.is_not(None))).limit(1)).first()
    return measured is None and busy is None


def _drop_trials(conn: Connection, experiment_id: int) -> None:
    study_ids = sa.select(studies_t.c.id).where(studies_t.c.experiment_id == experiment_id)
    conn.execute(sa.delete(trials_t).where(trials_t.c.study_id.in_(study_ids)))
    conn.execute(sa.delete(studies_t).where(studies_t.c.experiment_id == experiment_id))


class Store:
    """Access to one tunebook database. Cheap to create; make one per process.

    Args:
        url: a SQLAlchemy URL (see :func:`sqlite_url`).
        create: create the store if it does not exist; False refuses a missing SQLite file.
        outage_seconds: how long a call keeps retrying a store it cannot reach (or a lock it
            cannot take) before :class:`StoreError`; default ``$TUNEBOOK_STORE_OUTAGE_SECONDS``,
            else 600.
        on_outage: called as ``on_outage(elapsed_seconds, cause)`` before each pause of such a
            retry; ``cause`` is one short line without the password. Progress displays use it.
        busy_timeout_seconds: how long SQLite waits for another process's lock before the
            attempt fails (and is retried, within ``outage_seconds``).
        wait_for_store: also wait out an unreachable server when opening. By default the
            first contact fails at once: an address nobody ever reached is most likely wrong,
            and a person is waiting for the answer. Worker processes of a run, which know the
            store exists, pass True.

    Raises:
        StoreError: bad URL; missing store with ``create=False``; a file or database that is
            not a tunebook store; another schema version; the store unreachable.
    """

    def __init__(self, url: str, create: bool = True, *, outage_seconds: float | None = None,
                 on_outage: Callable[[float, str], None] | None = None,
                 busy_timeout_seconds: float = 60.0, wait_for_store: bool = False) -> None:
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except Exception:
            raise StoreError("not a database URL: " + repr(url.split("@")[-1])) from None
        # What messages show: never a password.
        self.display_url = parsed.render_as_string(hide_password=True)
        self._password = str(parsed.password) if parsed.password else None
        self.outage_seconds = resolve_outage_seconds(outage_seconds)
        self.on_outage = on_outage
        self._wait = wait_for_store
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database or "")
            if path.exists() and path.stat().st_size > 0:
                self._retry(lambda _: check_sqlite_file(path, busy_timeout_seconds, meta_t.name,
                                                         metadata.tables))
            elif not create:
                empty = " (the file is empty)" if path.exists() else ""
                raise StoreError(f"no tunebook store at {path}{empty} (run an experiment first, "
                                 "or point --root/--store at an existing store)")
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create a store at {path}: "
                                     f"{exc.strerror or exc}") from None
        options: dict[str, Any] = {}
        if parsed.get_backend_name() != "sqlite":
            # After a server restart every pooled connection is dead: test each on checkout.
            options["pool_pre_ping"] = True
            options["connect_args"] = _libpq_args(parsed)
        try:
            self.engine: Engine = sa.create_engine(url, **options)
        except Exception as exc:  # bad URL or missing driver
            raise StoreError(f"cannot open store {self.display_url!r}: {one_line(str(exc))}"
                             ) from None
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._claim: Any = None
        self._claimable: Any = None
        self._reclaim: Any = None
        self._study_names: dict[int, str] = {}
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_seconds))
        self._ensure_schema()

    @classmethod
    def at_root(cls, root: str | Path, create: bool = True, **options: Any) -> Store:
        """The default SQLite store inside a tunebook root folder (options as for Store)."""
        return cls(sqlite_url(Path(root) / "tunebook.db"), create=create, **options)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    # ----------------------------------------------------------------- transactions
    def _retry(self, attempt: Callable[[bool], T], *,
               races: Callable[[BaseException], bool] | None = None,
               fail_fast: bool = False) -> T:
        return retry(attempt, where=self.display_url, outage_seconds=self.outage_seconds,
                     on_outage=self.on_outage, races=races, fail_fast=fail_fast,
                     secret=self._password)

    def _tx(self, work: Callable[[Connection], T], *,
            recover: Callable[[Connection], T | None] | None = None,
            races: Callable[[BaseException], bool] | None = None,
            fail_fast: bool = False) -> T:
        """``work(conn)`` in one transaction, retried across store outages.

        Every method goes through here. A retry may follow a commit whose reply was lost, so
        ``work`` must be safe to redo; where it is not, ``recover(conn)`` runs first in each
        retry and returns the earlier attempt's result if it finds its effect (None if not).
        Errors that are not transient become one-line :class:`StoreError`.
        """
        def attempt(retrying: bool) -> T:
            # A stop (SIGTERM, a timeout) waits for the transaction's end: raised inside it,
            # it would leave the connection, and SQLite's write lock, held (interrupts.py).
            with protected(), self.engine.begin() as conn:
                if retrying and recover is not None:
                    found = recover(conn)
                    if found is not None:
                        return found
                return work(conn)

        try:
            return self._retry(attempt, races=races, fail_fast=fail_fast)
        except sa.exc.DBAPIError as exc:
            cause = one_line(str(exc.orig))
            if self._password:
                cause = cause.replace(self._password, "***")
            raise StoreError(f"store {self.display_url}: {cause}") from exc

    # ----------------------------------------------------------------- schema
    def _ensure_schema(self) -> None:
        def ensure(conn: Connection) -> None:
            tables = set(sa.inspect(conn).get_table_names())
            if tables and meta_t.name not in tables:
                # Not ours: create nothing in another application's database.
                raise foreign_database(f"store {self.display_url}", tables, "database", "--store")
            if meta_t.name in tables:
                row = conn.execute(sa.select(meta_t.c.value)
                                   .where(meta_t.c.key == "schema_version")).first()
                if row is not None and int(row[0]) != SCHEMA_VERSION:
                    raise StoreError(
                        f"store {self.display_url!r} has schema version {row[0]}, this "
                        f"tunebook understands version {SCHEMA_VERSION}")
            # The marker table first: SQLite commits each CREATE TABLE on its own, and a
            # process opening the store meanwhile must not take it for a foreign database.
            meta_t.create(conn, checkfirst=True)
            metadata.create_all(conn)
            if conn.execute(sa.select(meta_t.c.value)
                            .where(meta_t.c.key == "schema_version")).first() is None:
                conn.execute(sa.insert(meta_t).values(
                    key="schema_version", value=str(SCHEMA_VERSION)))

        # Several processes may open a new store at once; whoever loses the race to create a
        # table sees "already exists" or a duplicate key (or, on SQLite, "locked": a read
        # transaction cannot be upgraded once another writer committed) and checks again.
        self._tx(ensure, races=_schema_race, fail_fast=not self._wait)

    # ----------------------------------------------------------------- experiments
    def get_experiment(self, name: str) -> ExperimentRow | None:
        """The experiment called ``name``, or None."""
        row = self._tx(lambda conn: conn.execute(
            sa.select(experiments_t).where(experiments_t.c.name == name)).first())
        if row is None:
            return None
        return ExperimentRow(row.id, row.name, row.identity, json.loads(row.config), row.created_at)

    def require_experiment(self, name: str) -> ExperimentRow:
        """The experiment called ``name``; StoreError naming the known ones if absent."""
        exp = self.get_experiment(name)
        if exp is None:
            known = [e.name for e in self.experiments()]
            hint = f"; known: {', '.join(known)}" if known else "; the store is empty"
            raise StoreError(f"no experiment named {name!r} in {self.display_url}{hint}")
        return exp

    def experiments(self) -> list[ExperimentRow]:
        """Every experiment, oldest first."""
        rows = self._tx(lambda conn: conn.execute(
            sa.select(experiments_t).order_by(experiments_t.c.id)).all())
        return [ExperimentRow(r.id, r.name, r.identity, json.loads(r.config), r.created_at)
                for r in rows]

    def register(
        self,
        name: str,
        identity: str,
        config: dict[str, Any],
        studies: Sequence[dict[str, Any]],
        trials: dict[str, Sequence[tuple[int, dict[str, Any], int]]],
    ) -> int:
        """Create or extend an experiment with its studies and trials, in one transaction.

        ``studies`` are dicts with name, position, scientific, algorithm, seed, budget;
        ``trials`` maps a study name to ``(index, params, seed)`` rows. Existing trials are
        kept untouched; only missing indices are added. An experiment of the same name whose
        identity differs is refused: its trials would not mean the same thing. Names longer
        than :data:`MAX_NAME_LENGTH` or holding NUL, and indices or seeds beyond the columns'
        range, are refused (StoreError) before anything is written.
        """
        check_text("experiment name", name, MAX_NAME_LENGTH)
        for st in studies:
            check_text("study name", st["name"], MAX_NAME_LENGTH)
            check_int(f"study {st['name']!r}: seed", int(st["seed"]), MAX_SEED)
            check_int(f"study {st['name']!r}: budget", int(st["budget"]), MAX_STEP)
        for study, rows in trials.items():
            for index, _params, seed in rows:
                check_int(f"study {study!r}: trial index", int(index), MAX_STEP)
                check_int(f"study {study!r}, trial {index}: seed", int(seed), MAX_SEED)
        # Reads, then writes: on SQLite another process committing in between makes the write
        # fail at once with "locked" (no busy wait); the retry redoes it. Safe to redo: only
        # missing rows are inserted.
        return self._tx(lambda conn: self._register(conn, name, identity, config, studies,
                                                    trials))

    def _register(self, conn: Connection, name: str, identity: str, config: dict[str, Any],
                  studies: Sequence[dict[str, Any]],
                  trials: dict[str, Sequence[tuple[int, dict[str, Any], int]]]) -> int:
        now = time.time()
        row = conn.execute(
            sa.select(experiments_t).where(experiments_t.c.name == name)).first()
        if row is not None and row.identity != identity and _never_ran(conn, row.id):
            # Nothing was ever measured (its trials failed before their first report: a typo
            # in the file, say): no result to protect, and the fix is a new file. Its trials
            # are replaced; the experiment's notes and runs stay.
            _drop_trials(conn, row.id)
            conn.execute(sa.update(experiments_t).where(experiments_t.c.id == row.id)
                         .values(identity=identity))
            row = conn.execute(
                sa.select(experiments_t).where(experiments_t.c.id == row.id)).first()
        if row is not None and row.identity != identity:
            raise StoreError(
                f"experiment {name!r} already exists in {self.display_url} with a different "
                "search space, workload or training length; give the new round a new name "
                "(only the objective, goal and trial budget may change between runs)")
        if row is None:
            exp_id = _new_id(conn.execute(sa.insert(experiments_t).values(
                name=name, identity=identity, config=json.dumps(config),
                created_at=now, updated_at=now)))
        else:
            exp_id = row.id
            conn.execute(sa.update(experiments_t).where(experiments_t.c.id == exp_id)
                         .values(config=json.dumps(config), updated_at=now))
        existing = {r.name: r for r in conn.execute(
            sa.select(studies_t).where(studies_t.c.experiment_id == exp_id))}
        for st in studies:
            if st["name"] in existing:
                study_id = existing[st["name"]].id
                conn.execute(sa.update(studies_t).where(studies_t.c.id == study_id)
                             .values(budget=st["budget"]))
            else:
                study_id = _new_id(conn.execute(sa.insert(studies_t).values(
                    experiment_id=exp_id, name=st["name"], position=st["position"],
                    scientific=json.dumps(st["scientific"]), algorithm=st["algorithm"],
                    seed=st["seed"], budget=st["budget"], designer_state="{}",
                )))
            have = {r[0] for r in conn.execute(
                sa.select(trials_t.c.idx).where(trials_t.c.study_id == study_id))}
            new = [{"study_id": study_id, "idx": i, "params": json.dumps(p), "seed": s,
                    "status": "pending", "attempts": 0, "created_at": now, "run_seconds": 0.0}
                   for i, p, s in trials.get(st["name"], ()) if i not in have]
            if new:
                conn.execute(sa.insert(trials_t), new)
        return int(exp_id)

    def studies(self, experiment_id: int) -> list[StudyRow]:
        """The studies of an experiment, in order."""
        rows = self._tx(lambda conn: conn.execute(sa.select(studies_t).where(
            studies_t.c.experiment_id == experiment_id).order_by(studies_t.c.position)).all())
        return [StudyRow(r.id, r.experiment_id, r.name, r.position, json.loads(r.scientific),
                         r.algorithm, r.seed, r.budget) for r in rows]

    # ----------------------------------------------------------------- trials
    def _trial_select(self) -> sa.Select[Any]:
        return sa.select(trials_t, studies_t.c.name.label("study_name")).join(
            studies_t, trials_t.c.study_id == studies_t.c.id)

    @staticmethod
    def _trial(row: Any) -> TrialRow:
        m = row._mapping
        return TrialRow(
            id=m["id"], study_id=m["study_id"], study=m["study_name"], index=m["idx"],
            params=json.loads(m["params"]), seed=m["seed"], status=m["status"],
            attempts=m["attempts"], worker=m["worker"], heartbeat=m["heartbeat"],
            created_at=m["created_at"], started_at=m["started_at"],
            finished_at=m["finished_at"], run_seconds=m["run_seconds"] or 0.0,
            error=m["error"], infeasible_reason=m["infeasible_reason"],
            infeasible_step=m["infeasible_step"], checkpoint_step=m["checkpoint_step"],
            best_step=m["best_step"], best_value=m["best_value"],
            final_step=m["final_step"], final_value=m["final_value"])

    def trials(self, experiment_id: int, study: str | None = None,
               statuses: Iterable[str] | None = None) -> list[TrialRow]:
        """Trials of an experiment ordered by study then index."""
        q = self._trial_select().where(studies_t.c.experiment_id == experiment_id)
        if study is not None:
            q = q.where(studies_t.c.name == study)
        if statuses is not None:
            q = q.where(trials_t.c.status.in_(tuple(statuses)))
        q = q.order_by(studies_t.c.position, trials_t.c.idx)
        return [self._trial(r) for r in self._tx(lambda conn: conn.execute(q).all())]

    def trial(self, trial_id: int) -> TrialRow:
        """One trial by id."""
        row = self._tx(lambda conn: conn.execute(
            self._trial_select().where(trials_t.c.id == trial_id)).first())
        if row is None:
            raise StoreError(f"no trial with id {trial_id}")
        return self._trial(row)

    def counts(self, experiment_id: int) -> dict[str, int]:
        """Number of trials per status (within each study's current budget)."""
        q = (sa.select(trials_t.c.status, sa.func.count())
             .join(studies_t, trials_t.c.study_id == studies_t.c.id)
             .where(studies_t.c.experiment_id == experiment_id, _in_budget())
             .group_by(trials_t.c.status))
        return {status: n for status, n in self._tx(lambda conn: conn.execute(q).all())}

    def best_trial(self, experiment_id: int, goal: str) -> TrialRow | None:
        """The completed trial with the best stored objective value, or None."""
        order = trials_t.c.best_value.asc() if goal == "minimize" else trials_t.c.best_value.desc()
        q = (self._trial_select()
             .where(studies_t.c.experiment_id == experiment_id,
                    trials_t.c.status == "completed", trials_t.c.best_value.is_not(None))
             .order_by(order, trials_t.c.idx, trials_t.c.id).limit(1))
        row = self._tx(lambda conn: conn.execute(q).first())
        return None if row is None else self._trial(row)

    def claim(self, experiment_id: int, worker: str) -> TrialRow | None:
        """Atomically take the next claimable trial (lowest index first, studies interleaved).

        A compare-and-swap on the status: of two workers racing for the same row exactly one
        update matches, the other tries the next candidate. Trials beyond a study's budget (it
        was lowered) stay in the store, dormant. A worker runs one trial at a time: after an
        outage the trial it already holds in this experiment (an earlier attempt of this
        claim committed, its reply was lost) is returned rather than a second one.
        """
        check_text("worker name", worker, MAX_WORKER_LENGTH)
        # One start time for every attempt: first_start recognises the attempt that set it.
        start = time.time()
        params = {"exp_id": experiment_id, "who": worker, "start": start}

        def take(conn: Connection) -> tuple[Any, bool]:
            # One statement: pick the next candidate and take it. Another worker may win the
            # race for the same row (its status is then no longer claimable and nothing is
            # updated): try again. On PostgreSQL, SKIP LOCKED lets racing workers pick
            # different rows.
            row = conn.execute(self._claim_statement(), {**params, "now": time.time()}).first()
            if row is None and conn.execute(self._claimable_statement(), params).first():
                return None, True
            return row, False

        def held(conn: Connection) -> tuple[Any, bool] | None:
            row = conn.execute(self._reclaim_statement(), {**params, "now": time.time()}).first()
            return None if row is None else (row, False)

        for _ in range(1000):
            row, again = self._tx(take, recover=held)
            if again:
                continue
            if row is None:
                return None
            m = row._mapping
            return TrialRow(
                id=m["id"], study_id=m["study_id"], study=self._study_name(m["study_id"]),
                index=m["idx"], params=json.loads(m["params"]), seed=m["seed"],
                status=m["status"], attempts=m["attempts"], worker=m["worker"],
                heartbeat=m["heartbeat"], created_at=m["created_at"],
                started_at=m["started_at"], run_seconds=m["run_seconds"] or 0.0,
                error=m["error"], checkpoint_step=m["checkpoint_step"],
                first_start=m["started_at"] == start and m["attempts"] == 1)
        return None

    def _claim_statement(self) -> Any:
        if self._claim is None:
            candidate = (
                sa.select(trials_t.c.id)
                .join(studies_t, trials_t.c.study_id == studies_t.c.id)
                .where(studies_t.c.experiment_id == sa.bindparam("exp_id"),
                       trials_t.c.status.in_(CLAIMABLE), _in_budget())
                .order_by(trials_t.c.idx, studies_t.c.position).limit(1)
                .with_for_update(skip_locked=True, of=trials_t)
                .scalar_subquery())
            self._claim = (
                sa.update(trials_t)
                .where(trials_t.c.id == candidate, trials_t.c.status.in_(CLAIMABLE))
                .values(status="running", worker=sa.bindparam("who"),
                        heartbeat=sa.bindparam("now"), attempts=trials_t.c.attempts + 1,
                        started_at=sa.func.coalesce(trials_t.c.started_at,
                                                    sa.bindparam("start")))
                .returning(*trials_t.c))
        return self._claim

    def _reclaim_statement(self) -> Any:
        """The trial a worker already holds in an experiment, its heartbeat refreshed."""
        if self._reclaim is None:
            self._reclaim = (
                sa.update(trials_t)
                .where(trials_t.c.worker == sa.bindparam("who"), trials_t.c.status == "running",
                       trials_t.c.study_id.in_(sa.select(studies_t.c.id).where(
                           studies_t.c.experiment_id == sa.bindparam("exp_id"))))
                .values(heartbeat=sa.bindparam("now"))
                .returning(*trials_t.c))
        return self._reclaim

    def _claimable_statement(self) -> Any:
        if self._claimable is None:
            self._claimable = (
                sa.select(trials_t.c.id)
                .join(studies_t, trials_t.c.study_id == studies_t.c.id)
                .where(studies_t.c.experiment_id == sa.bindparam("exp_id"),
                       trials_t.c.status.in_(CLAIMABLE), _in_budget()).limit(1))
        return self._claimable

    def _study_name(self, study_id: int) -> str:
        name = self._study_names.get(study_id)
        if name is None:
            rows = self._tx(lambda conn: conn.execute(
                sa.select(studies_t.c.id, studies_t.c.name)).all())
            self._study_names.update((sid, sname) for sid, sname in rows)
            name = self._study_names[study_id]
        return name

    def heartbeat(self, trial_id: int, worker: str) -> bool:
        """Refresh a running trial's heartbeat; False if the worker no longer owns it."""
        res = self._tx(lambda conn: conn.execute(sa.update(trials_t).where(
            trials_t.c.id == trial_id, trials_t.c.worker == worker,
            trials_t.c.status == "running").values(heartbeat=time.time())))
        return res.rowcount == 1

    def finish(self, trial_id: int, worker: str, status: str, *, elapsed: float = 0.0,
               **fields: Any) -> bool:
        """Record the end of an attempt; ignored (False) if ``worker`` lost the trial."""
        if status not in (*TERMINAL, "interrupted", "pending"):
            raise ValueError(f"cannot finish a trial as {status!r}")
        # A workload's error message with a NUL in it must not make its trial unrecordable on
        # PostgreSQL: the text is kept, the character escaped.
        values: dict[str, Any] = {
            k: v.replace("\x00", "\\x00") if isinstance(v, str) else v for k, v in fields.items()}
        values.update(status=status, heartbeat=None, run_seconds=trials_t.c.run_seconds + elapsed)
        if status in TERMINAL:
            values["finished_at"] = time.time()
        if status == "interrupted":
            # A user's Ctrl-C does not count against the trial's attempts.
            values["attempts"] = trials_t.c.attempts - 1

        def end(conn: Connection) -> bool:
            res = conn.execute(sa.update(trials_t).where(
                trials_t.c.id == trial_id, trials_t.c.worker == worker,
                trials_t.c.status == "running").values(**values))
            return bool(res.rowcount == 1)

        def ended(conn: Connection) -> bool | None:
            # Redone after a lost reply the update matches nothing: the trial already shows
            # this worker's outcome, and that is a success, not a lost trial.
            row = conn.execute(sa.select(trials_t.c.status, trials_t.c.worker)
                               .where(trials_t.c.id == trial_id)).first()
            return True if row is not None and tuple(row) == (status, worker) else None

        return self._tx(end, recover=ended)

    def release_worker(self, worker: str, reason: str, max_attempts: int,
                       interrupted: bool = False) -> list[int]:
        """Put back the running trials of a worker that is gone.

        Returns the ids released. A trial that already used ``max_attempts`` fails instead,
        with ``reason``; with ``interrupted`` the trial is marked interrupted (user stop).
        """
        return self._release(trials_t.c.worker == worker, reason, max_attempts, interrupted)

    def release_stale(self, experiment_id: int, older_than: float, max_attempts: int,
                      exclude_workers: Sequence[str] = ()) -> list[int]:
        """Put back running trials whose heartbeat is older than ``older_than`` seconds,
        except those of ``exclude_workers`` (known to be alive)."""
        cutoff = time.time() - older_than
        study_ids = sa.select(studies_t.c.id).where(studies_t.c.experiment_id == experiment_id)
        cond = sa.and_(trials_t.c.study_id.in_(study_ids), trials_t.c.heartbeat < cutoff)
        if exclude_workers:
            cond = sa.and_(cond, trials_t.c.worker.not_in(list(exclude_workers)))
        return self._release(cond, "worker stopped sending heartbeats", max_attempts, False)

    def requeue_failed(self, experiment_id: int) -> list[int]:
        """Put the experiment's failed trials back in the queue (``--retry-failed``).

        Their attempts start again from zero; the error stays until the trial finishes again.
        Infeasible trials are results, not failures: they are never re-queued. Returns the ids.
        """
        study_ids = sa.select(studies_t.c.id).where(studies_t.c.experiment_id == experiment_id)
        # Safe to redo (only failed trials match); a redo after a lost reply returns no ids.
        rows = self._tx(lambda conn: conn.execute(
            sa.update(trials_t).where(trials_t.c.study_id.in_(study_ids),
                                      trials_t.c.status == "failed")
            .values(status="pending", attempts=0, finished_at=None, worker=None,
                    heartbeat=None).returning(trials_t.c.id)).all())
        return [r[0] for r in rows]

    def mark_completed(self, trial_ids: Sequence[int]) -> None:
        """Failed trials that turn out to be complete (they failed only for not reporting an
        objective that has since been corrected) become ``completed``, their error cleared."""
        if not trial_ids:
            return
        self._tx(lambda conn: conn.execute(
            sa.update(trials_t).where(trials_t.c.id.in_(list(trial_ids)),
                                      trials_t.c.status == "failed")
            .values(status="completed", error=None)))

    def _release(self, cond: Any, reason: str, max_attempts: int, interrupted: bool) -> list[int]:
        # One UPDATE ... RETURNING, never a read then a write: on SQLite a transaction that
        # read first cannot take the write lock once a worker has committed in between.
        attempts = trials_t.c.attempts
        if interrupted:
            values: dict[str, Any] = {
                "status": "interrupted",
                "attempts": sa.case((attempts > 0, attempts - 1), else_=0)}
        else:
            gave_up = attempts >= max_attempts
            text_attempts = sa.cast(attempts, sa.String)
            values = {
                "status": sa.case((gave_up, "failed"), else_="pending"),
                "finished_at": sa.case((gave_up, time.time()), else_=trials_t.c.finished_at),
                "error": sa.case(
                    (gave_up, sa.literal(f"{reason}; gave up after ") + text_attempts
                     + sa.literal(" attempts")),
                    else_=sa.literal("attempt ") + text_attempts + sa.literal(f": {reason}"))}
        # Safe to redo (only running trials match), but a redo after a lost reply returns no
        # ids: the trials were released all the same.
        rows = self._tx(lambda conn: conn.execute(
            sa.update(trials_t).where(cond, trials_t.c.status == "running")
            .values(heartbeat=None, **values).returning(trials_t.c.id)).all())
        return [r[0] for r in rows]

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        """Remember the step of the trial's latest complete checkpoint."""
        check_int("checkpoint step", int(step), MAX_STEP)
        self._tx(lambda conn: conn.execute(sa.update(trials_t).where(trials_t.c.id == trial_id)
                                           .values(checkpoint_step=step)))

    def set_summaries(self, rows: Sequence[dict[str, Any]]) -> None:
        """Update best/final summaries: dicts with id, best_step, best_value, final_*."""
        if not rows:
            return

        def update(conn: Connection) -> None:
            for r in rows:
                conn.execute(sa.update(trials_t).where(trials_t.c.id == r["id"]).values(
                    best_step=r["best_step"], best_value=r["best_value"],
                    final_step=r["final_step"], final_value=r["final_value"]))

        self._tx(update)

    # ----------------------------------------------------------------- measurements
    def add_measurements(self, trial_id: int, rows: Sequence[tuple[int, str, float]]) -> None:
        """Write ``(step, metric, value)`` rows; a repeated (step, metric) replaces the old value.

        Bulk path: one transaction, one executemany of a driver-level statement, no ORM
        objects. An upsert, so safe to redo. Metric names longer than
        :data:`MAX_METRIC_LENGTH` or holding NUL, and steps beyond :data:`MAX_STEP`, refuse the
        whole batch (StoreError) before anything is written.
        """
        if not rows:
            return
        for metric in {m for _, m, _ in rows}:
            check_text("metric name", metric, MAX_METRIC_LENGTH)
        data = [(trial_id, metric, int(step), None if math.isnan(v) else v)
                for step, metric, v in rows]
        for _, _, step, _ in data:
            check_int("step", step, MAX_STEP)
        mark = "?" if self.is_sqlite else "%s"
        sql = ("INSERT INTO measurements (trial_id, metric, step, value) "
               f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (trial_id, metric, step) "
               "DO UPDATE SET value = excluded.value")
        # exec_driver_sql, not the raw DBAPI cursor: a dropped connection is then recognised
        # (and the pooled connection discarded) like anywhere else.
        self._tx(lambda conn: conn.exec_driver_sql(sql, data))

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        """Delete a trial's measurements past ``after_step`` (they are about to be recomputed).

        Safe to redo; a redo after a lost reply counts 0 deleted rows.
        """
        res = self._tx(lambda conn: conn.execute(sa.delete(measurements_t).where(
            measurements_t.c.trial_id == trial_id, measurements_t.c.step > after_step)))
        return int(res.rowcount or 0)

    def measurements(self, trial_ids: Sequence[int] | None = None, metric: str | None = None,
                     experiment_id: int | None = None) -> list[tuple[int, int, str, float]]:
        """``(trial_id, step, metric, value)`` rows ordered by trial, metric, step.

        NaN comes back as ``float('nan')``.
        """
        q = sa.select(measurements_t.c.trial_id, measurements_t.c.step,
                      measurements_t.c.metric, measurements_t.c.value)
        if trial_ids is not None:
            q = q.where(measurements_t.c.trial_id.in_(list(trial_ids)))
        if experiment_id is not None:
            q = q.where(measurements_t.c.trial_id.in_(
                sa.select(trials_t.c.id).join(studies_t, trials_t.c.study_id == studies_t.c.id)
                .where(studies_t.c.experiment_id == experiment_id)))
        if metric is not None:
            q = q.where(measurements_t.c.metric == metric)
        q = q.order_by(measurements_t.c.trial_id, measurements_t.c.metric, measurements_t.c.step)
        rows = self._tx(lambda conn: conn.execute(q).all())
        return [(t, s, m, math.nan if v is None else float(v)) for t, s, m, v in rows]

    def metric_names(self, experiment_id: int) -> list[str]:
        """Every metric name any trial of the experiment reported."""
        q = (sa.select(measurements_t.c.metric).distinct()
             .where(measurements_t.c.trial_id.in_(
                 sa.select(trials_t.c.id).join(studies_t, trials_t.c.study_id == studies_t.c.id)
                 .where(studies_t.c.experiment_id == experiment_id))))
        return sorted(r[0] for r in self._tx(lambda conn: conn.execute(q).all()))

    # ----------------------------------------------------------------- runs
    def start_run(self, experiment_id: int, host: str, workers: int,
                  provenance: dict[str, Any]) -> int:
        """Record that a run of the experiment started; returns its id."""
        started = time.time()
        host = host.replace("\x00", "")[:MAX_NAME_LENGTH]

        def insert(conn: Connection) -> int:
            return _new_id(conn.execute(sa.insert(runs_t).values(
                experiment_id=experiment_id, started_at=started, host=host,
                workers=workers, provenance=json.dumps(provenance))))

        def inserted(conn: Connection) -> int | None:
            # Guarded, not a rare duplicate: a run row that never ends would show in the
            # history. Its start time, taken once for every attempt, identifies it.
            found = conn.execute(sa.select(runs_t.c.id).where(
                runs_t.c.experiment_id == experiment_id, runs_t.c.host == host,
                runs_t.c.started_at == started)).scalar()
            return None if found is None else int(found)

        return self._tx(insert, recover=inserted)

    def end_run(self, run_id: int, outcome: dict[str, Any]) -> None:
        """Record how a run ended (counts per status, interrupted or not)."""
        self._tx(lambda conn: conn.execute(sa.update(runs_t).where(runs_t.c.id == run_id).values(
            finished_at=time.time(), outcome=json.dumps(outcome))))

    def runs(self, experiment_id: int) -> list[dict[str, Any]]:
        """Runs of an experiment, oldest first, as dicts (provenance and outcome decoded)."""
        rows = self._tx(lambda conn: conn.execute(
            sa.select(runs_t).where(runs_t.c.experiment_id == experiment_id)
            .order_by(runs_t.c.id)).all())
        return [{"id": r.id, "started_at": r.started_at, "finished_at": r.finished_at,
                 "host": r.host, "workers": r.workers, "provenance": json.loads(r.provenance),
                 "outcome": json.loads(r.outcome) if r.outcome else None} for r in rows]

    # ----------------------------------------------------------------- notes
    def add_note(self, experiment_id: int, text: str, study: str | None = None) -> None:
        """Attach a free-text note to an experiment (or one of its studies)."""
        check_text("note", text, None)
        if study is not None:
            check_text("study name", study, MAX_NAME_LENGTH)
        created = time.time()

        def insert(conn: Connection) -> bool:
            conn.execute(sa.insert(notes_t).values(
                experiment_id=experiment_id, study=study, created_at=created, text=text))
            return True

        def inserted(conn: Connection) -> bool | None:
            # Guarded like start_run: the same note twice would read as a user's mistake.
            found = conn.execute(sa.select(notes_t.c.id).where(
                notes_t.c.experiment_id == experiment_id, notes_t.c.created_at == created,
                notes_t.c.text == text)).first()
            return None if found is None else True

        self._tx(insert, recover=inserted)

    def notes(self, experiment_id: int) -> list[tuple[float, str | None, str]]:
        """``(created_at, study, text)`` for an experiment, oldest first."""
        rows = self._tx(lambda conn: conn.execute(
            sa.select(notes_t.c.created_at, notes_t.c.study, notes_t.c.text)
            .where(notes_t.c.experiment_id == experiment_id).order_by(notes_t.c.id)).all())
        return [(r[0], r[1], r[2]) for r in rows]

    # --- designer state, lazy trials, procedure results (issue 8) ---
    def designer_state(self, study_id: int) -> dict[str, Any]:
        """What the runner saved for the study's designer (``{}`` before the first save)."""
        row = self._tx(lambda conn: conn.execute(sa.select(studies_t.c.designer_state).where(
            studies_t.c.id == study_id)).first())
        if row is None:
            raise StoreError(f"no study with id {study_id} in {self.display_url}")
        state: dict[str, Any] = json.loads(row[0] or "{}")
        return state

    def save_designer_state(self, study_id: int, state: dict[str, Any]) -> None:
        """Replace the study's designer state (safe to redo)."""
        self._tx(lambda conn: conn.execute(sa.update(studies_t).where(studies_t.c.id == study_id)
                                           .values(designer_state=json.dumps(state))))

    def add_trials(self, study_id: int, rows: Sequence[tuple[int, dict[str, Any], int]],
                   designer_state: dict[str, Any]) -> int:
        """Append ``(index, params, seed)`` trials to a study and save the designer state that
        suggested them, in one transaction: a run killed in between finds both or neither.

        Indices already there are kept untouched (safe to redo). Returns how many were added.
        """
        for index, _params, seed in rows:
            check_int("trial index", int(index), MAX_STEP)
            check_int(f"trial {index}: seed", int(seed), MAX_SEED)

        def append(conn: Connection) -> int:
            now = time.time()
            have = {r[0] for r in conn.execute(sa.select(trials_t.c.idx).where(
                trials_t.c.study_id == study_id, trials_t.c.idx.in_([r[0] for r in rows])))}
            new = [{"study_id": study_id, "idx": i, "params": json.dumps(p), "seed": seed,
                    "status": "pending", "attempts": 0, "created_at": now, "run_seconds": 0.0}
                   for i, p, seed in rows if i not in have]
            if new:
                conn.execute(sa.insert(trials_t), new)
            conn.execute(sa.update(studies_t).where(studies_t.c.id == study_id)
                         .values(designer_state=json.dumps(designer_state)))
            return len(new)

        return self._tx(append)

    def add_recommendation(self, experiment: str, procedure: str,
                           payload: dict[str, Any]) -> int:
        """Record a procedure's result for the base experiment ``experiment``; returns its id."""
        check_text("experiment name", experiment, MAX_NAME_LENGTH)
        check_text("procedure name", procedure, 64)
        created, text = time.time(), json.dumps(payload, allow_nan=False)
        values = {"experiment": experiment, "procedure": procedure, "created_at": created,
                  "payload": text}

        def insert(conn: Connection) -> int:
            return _new_id(conn.execute(sa.insert(recommendations_t).values(**values)))

        def inserted(conn: Connection) -> int | None:
            # A retry after a lost reply must not record the result twice.
            found = conn.execute(sa.select(recommendations_t.c.id).where(
                *(recommendations_t.c[k] == v for k, v in values.items()))).first()
            return None if found is None else int(found[0])

        return self._tx(insert, recover=inserted)

    def recommendations(self, experiment: str,
                        procedure: str | None = None) -> list[RecommendationRow]:
        """The recommendations recorded for ``experiment`` (of one procedure), oldest first."""
        q = sa.select(recommendations_t).where(recommendations_t.c.experiment == experiment)
        if procedure is not None:
            q = q.where(recommendations_t.c.procedure == procedure)
        rows = self._tx(lambda conn: conn.execute(q.order_by(recommendations_t.c.id)).all())
        return [RecommendationRow(r.id, r.experiment, r.procedure, r.created_at,
                                  json.loads(r.payload)) for r in rows]
