"""What callers of the store rely on: the :class:`StoreAPI` protocol and the rows it takes and
returns.

The runner, workers, analysis, report and CLI are written against this module, never against
SQL: :class:`tunebook.store.sql.Store` (SQLAlchemy over SQLite or PostgreSQL) is one implementation;
a second backend or a client of a remote store is another. Nothing here imports SQLAlchemy, so
annotating with these names costs nothing at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "ACTIVE",
    "CLAIMABLE",
    "TERMINAL",
    "ExperimentRow",
    "FinalEvalRow",
    "LaunchRow",
    "NewTrial",
    "RecommendationRow",
    "RunOutcome",
    "RunRow",
    "StoreAPI",
    "StudyRow",
    "StudySpec",
    "TrialRow",
    "TrialSummary",
]

CLAIMABLE = ("pending", "interrupted")
ACTIVE = ("pending", "interrupted", "running")
TERMINAL = ("completed", "infeasible", "failed")


# ----------------------------------------------------------------- rows returned
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


@dataclass(frozen=True)
class RunRow:
    """One run of an experiment as stored: ``outcome`` is None while it runs (or if it died)."""

    id: int
    started_at: float
    finished_at: float | None
    host: str
    workers: int
    provenance: dict[str, Any]
    outcome: dict[str, Any] | None


@dataclass(frozen=True)
class RecommendationRow:
    """A procedure's result as stored; ``payload`` is the procedure's own JSON document."""

    id: int
    experiment: str
    procedure: str
    created_at: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class LaunchRow:
    """A launch as stored: the reference that became the baseline, when, the user's note and
    the evidence (``payload``: configuration, replicate statistics, comparison)."""

    id: int
    ref: str
    created_at: float
    note: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class FinalEvalRow:
    """One look at the test set as stored: the trial evaluated, when, from which host, how it
    was chosen (``selection``, e.g. ``{"rule": "best", "metric": ..., "goal": ...}``) and the
    test metrics it gave."""

    id: int
    experiment_id: int
    trial_id: int
    created_at: float
    host: str
    selection: dict[str, Any]
    metrics: dict[str, float]


# ----------------------------------------------------------------- inputs
@dataclass(frozen=True)
class StudySpec:
    """A study to register: its place, its scientific values, how its trials are designed."""

    name: str
    position: int
    scientific: Mapping[str, Any]
    algorithm: str
    seed: int
    budget: int


class NewTrial(NamedTuple):
    """A trial to register in a study: its index there, hyperparameters, seed."""

    idx: int  # not ``index``: a tuple has an index() method
    params: Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class TrialSummary:
    """A trial's best and final objective values (and their steps), as the store keeps them."""

    id: int
    best_step: int | None
    best_value: float | None
    final_step: int | None
    final_value: float | None


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: its counts per status, or, with ``abandoned``, why a later run closed it.

    Stored as JSON and read back as :attr:`RunRow.outcome`.
    """

    counts: Mapping[str, int] = field(default_factory=dict)
    interrupted: bool = False
    signal: str | None = None
    elapsed: float = 0.0
    abandoned: str | None = None  # the reason; its process died without closing the run

    def as_dict(self) -> dict[str, Any]:
        """The stored form: an abandoned run keeps only the reason."""
        if self.abandoned is not None:
            return {"abandoned": True, "reason": self.abandoned}
        return {"counts": dict(self.counts), "interrupted": self.interrupted,
                "signal": self.signal, "elapsed": self.elapsed}


# ----------------------------------------------------------------- the protocol
@runtime_checkable
class StoreAPI(Protocol):
    """Everything tunebook asks of a store: experiments, the trial queue, measurements, runs.

    A second backend or a client of a remote store implements every method below with the same
    meaning as :class:`tunebook.store.sql.Store` (whose docstrings are the reference), and passes
    ``tests/store/test_store.py`` (the conformance suite, parametrised by backend). What it must
    guarantee beyond the signatures:

    - each method is atomic, and safe to call again after a lost reply (an outage): ``claim``
      hands a worker back the trial it already holds, ``finish`` of an attempt already recorded
      returns True, ``start_run``, ``add_note``, ``add_recommendation`` and
      ``add_final_eval`` never record twice, ``register`` and ``add_trials`` only add what is
      missing;
    - ``claim`` is a compare-and-swap: two workers never hold the same trial;
    - ``finish``, ``heartbeat`` ignore (False) a worker that no longer owns the trial;
    - outages are ridden out for ``outage_seconds`` (reporting through ``on_outage``), then,
      like every other failure, surface as :class:`tunebook.errors.StoreError`.
    """

    url: str
    display_url: str
    outage_seconds: float
    on_outage: Callable[[float, str], None] | None

    def close(self) -> None:
        """Release connections."""

    # experiments
    def get_experiment(self, name: str) -> ExperimentRow | None:
        """The experiment called ``name``, or None."""

    def require_experiment(self, name: str) -> ExperimentRow:
        """The experiment called ``name``; StoreError naming the known ones if absent."""

    def experiments(self) -> list[ExperimentRow]:
        """Every experiment, oldest first."""

    def register(self, name: str, identity: str, config: Mapping[str, Any],
                 studies: Sequence[StudySpec],
                 trials: Mapping[str, Sequence[NewTrial]]) -> int:
        """Create or extend an experiment with its studies and trials; returns its id."""

    def studies(self, experiment_id: int) -> list[StudyRow]:
        """The studies of an experiment, in order."""

    # trials and the queue
    def trials(self, experiment_id: int, study: str | None = None,
               statuses: Iterable[str] | None = None) -> list[TrialRow]:
        """Trials of an experiment ordered by study then index."""

    def trial(self, trial_id: int) -> TrialRow:
        """One trial by id."""

    def counts(self, experiment_id: int) -> dict[str, int]:
        """Number of trials per status (within each study's current budget)."""

    def study_counts(self, experiment_id: int) -> dict[str, dict[str, int]]:
        """Number of trials per study and status (within each study's current budget)."""

    def best_trial(self, experiment_id: int, goal: str) -> TrialRow | None:
        """The completed trial with the best stored objective value, or None."""

    def claim(self, experiment_id: int, worker: str) -> TrialRow | None:
        """Atomically take the next claimable trial, or None."""

    def heartbeat(self, trial_id: int, worker: str) -> bool:
        """Refresh a running trial's heartbeat; False if the worker no longer owns it."""

    def finish(self, trial_id: int, worker: str, status: str, *, elapsed: float = 0.0,
               **fields: Any) -> bool:
        """Record the end of an attempt; False if ``worker`` lost the trial."""

    def release_worker(self, worker: str, reason: str, max_attempts: int,
                       interrupted: bool = False) -> list[int]:
        """Put back the running trials of a worker that is gone; returns their ids."""

    def release_stale(self, experiment_id: int, older_than: float, max_attempts: int,
                      exclude_workers: Sequence[str] = ()) -> list[int]:
        """Put back running trials whose heartbeat is older than ``older_than`` seconds."""

    def requeue_failed(self, experiment_id: int) -> list[int]:
        """Put the experiment's failed trials back in the queue; returns their ids."""

    def mark_completed(self, trial_ids: Sequence[int]) -> None:
        """Failed trials that turn out complete become ``completed``, their error cleared."""

    def set_checkpoint_step(self, trial_id: int, step: int, *, worker: str | None = None
                            ) -> bool:
        """Remember the step of the trial's latest complete checkpoint (with ``worker``: only
        while it holds the trial; False once it lost it)."""

    def set_summaries(self, rows: Sequence[TrialSummary]) -> None:
        """Replace the best/final summaries of the trials named."""

    # measurements
    def add_measurements(self, trial_id: int, rows: Sequence[tuple[int, str, float]], *,
                         worker: str | None = None) -> bool:
        """Write ``(step, metric, value)`` rows; a repeated (step, metric) replaces the old
        (with ``worker``: only while it holds the trial; False, nothing written, once it lost
        it)."""

    def add_measurements_many(self, batches: Mapping[int, Sequence[tuple[int, str, float]]]
                              ) -> None:
        """Write ``{trial_id: [(step, metric, value), ...]}`` in one transaction (bulk path);
        same rules as ``add_measurements``."""

    def truncate_measurements(self, trial_id: int, after_step: int, *,
                              worker: str | None = None) -> int:
        """Delete a trial's measurements past ``after_step``; returns how many (with
        ``worker``: only while it holds the trial)."""

    def measurements(self, trial_ids: Sequence[int] | None = None, metric: str | None = None,
                     experiment_id: int | None = None) -> list[tuple[int, int, str, float]]:
        """``(trial_id, step, metric, value)`` rows ordered by trial, metric, step."""

    def curves(self, experiment_id: int, *, trial_ids: Sequence[int] | None = None,
               metrics: Sequence[str] | None = None, skip: Sequence[int] = (),
               every: int = 1, keep: Sequence[int] = ()
               ) -> list[tuple[int, str, Sequence[int], Sequence[float]]]:
        """The experiment's curves as ``(trial_id, metric, steps, values)``, ordered by trial
        and metric, steps increasing (NaN as ``math.nan``): only of ``trial_ids`` (None: all),
        of ``metrics`` (None: all), of none of the trials in ``skip``. With ``every`` > 1 each
        curve is a sample: the steps that are multiples of ``every`` or in ``keep``, and its
        last point (where a trial that stopped early ended). What large reads use: a curve
        comes as two sequences, not a row per point."""

    def metric_names(self, experiment_id: int) -> list[str]:
        """Every metric name any trial of the experiment reported."""

    # runs and notes
    def start_run(self, experiment_id: int, host: str, workers: int,
                  provenance: Mapping[str, Any]) -> int:
        """Record that a run of the experiment started; returns its id."""

    def end_run(self, run_id: int, outcome: RunOutcome) -> None:
        """Record how a run ended."""

    def runs(self, experiment_id: int) -> list[RunRow]:
        """Runs of an experiment, oldest first."""

    def add_note(self, experiment_id: int, text: str, study: str | None = None) -> None:
        """Attach a free-text note to an experiment (or one of its studies)."""

    def notes(self, experiment_id: int) -> list[tuple[float, str | None, str]]:
        """``(created_at, study, text)`` for an experiment, oldest first."""

    # designer state, lazy trials, procedure results
    def designer_state(self, study_id: int) -> dict[str, Any]:
        """What the runner saved for the study's designer (``{}`` before the first save)."""

    def save_designer_state(self, study_id: int, state: Mapping[str, Any]) -> None:
        """Replace the study's designer state."""

    def add_trials(self, study_id: int, rows: Sequence[NewTrial],
                   designer_state: Mapping[str, Any]) -> int:
        """Append trials to a study with the designer state that suggested them, atomically;
        indices already there are kept. Returns how many were added."""

    def swap_designer_state(self, study_id: int, expected: Mapping[str, Any],
                            state: Mapping[str, Any], rows: Sequence[NewTrial] = ()) -> int | None:
        """Save ``state`` and add ``rows`` atomically if the stored state still is ``expected``
        (returns how many trials were added); else write nothing and return None."""

    def add_recommendation(self, experiment: str, procedure: str,
                           payload: Mapping[str, Any]) -> int:
        """Record a procedure's result for the base experiment ``experiment``; returns its id."""

    def recommendations(self, experiment: str,
                        procedure: str | None = None) -> list[RecommendationRow]:
        """The recommendations recorded for ``experiment`` (of one procedure), oldest first."""

    # launches (tunebook launch)
    def add_launch(self, ref: str, note: str, payload: Mapping[str, Any]) -> int:
        """Record that ``ref`` became the baseline, with a note and its evidence; returns its
        id; never records twice after a lost reply."""

    def launches(self) -> list[LaunchRow]:
        """Every launch of the store, oldest first."""

    # the test set's ledger
    def add_final_eval(self, experiment_id: int, trial_id: int, selection: Mapping[str, Any],
                       metrics: Mapping[str, float], host: str = "") -> int:
        """Record the test metrics of a final evaluation (once across outages); returns its id."""

    def final_evals(self, experiment_id: int) -> list[FinalEvalRow]:
        """The final evaluations of an experiment, oldest first."""
