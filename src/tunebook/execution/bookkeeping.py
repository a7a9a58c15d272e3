"""What the runner does to the store around a run, besides running trials.

When the objective changed, every trial's best and final values are recomputed
(:func:`refresh_summaries`); records of earlier runs whose process died are closed; failed trials
are put back in the queue by ``--retry-failed``; and a typo in ``objective.metric`` stops the
run at the first trial that shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunebook.core.paths import TRIAL_LOG, trial_dir
from tunebook.core.processes import host_name, pid_alive
from tunebook.errors import WorkloadError
from tunebook.execution.worker import NO_OBJECTIVE
from tunebook.experiment import Experiment
from tunebook.objective import resolve
from tunebook.store.api import RunOutcome, StoreAPI, TrialSummary

__all__ = [
    "check_objective",
    "close_abandoned_runs",
    "refresh_summaries",
    "requeue_failed",
    "unknown_metric",
]


def refresh_summaries(store: StoreAPI, experiment_id: int, metric: str, goal: str) -> None:
    """Recompute every trial's best/final values for ``metric`` (the objective changed).

    Trials that failed only because they never reported the previous objective (a typo in
    ``objective.metric``), and did report this one, are complete after all.
    """
    trials = store.trials(experiment_id)
    objective = resolve({"metric": metric, "goal": goal})
    summaries = objective.summaries(store.measurements(experiment_id=experiment_id, metric=metric),
                                    [t.id for t in trials])
    store.set_summaries([TrialSummary(tid, s.best_step, s.best_value, s.final_step, s.final_value)
                         for tid, s in summaries.items()])
    store.mark_completed([t.id for t in trials if t.status == "failed"
                          and (t.error or "").startswith(NO_OBJECTIVE)
                          and (found := summaries.get(t.id)) is not None
                          and found.best_value is not None])


def close_abandoned_runs(store: StoreAPI, experiment_id: int) -> None:
    """Close the records of earlier runs on this host whose process died without closing them."""
    host = host_name()
    for r in store.runs(experiment_id):
        pid = r.provenance.get("pid")
        if (r.finished_at is None and r.host == host and isinstance(pid, int)
                and pid != os.getpid() and not pid_alive(pid)):
            store.end_run(r.id, RunOutcome(abandoned="its process died without closing the run "
                                                     "(killed?); closed by the next run"))


def requeue_failed(store: StoreAPI, experiment: Experiment, exp_id: int, root: Path) -> int:
    """Put failed trials back in the queue; their error goes to the trial's log first."""
    failed = store.trials(exp_id, statuses=("failed",))
    for t in failed:
        path = trial_dir(root, experiment.name, t.study, t.index) / TRIAL_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- failed after {t.attempts} attempt(s); re-queued by --retry-failed. "
                    f"The error was:\n{(t.error or '').rstrip()}\n")
    return len(store.requeue_failed(exp_id)) if failed else 0


def unknown_metric(experiment: Experiment, names: list[str]) -> WorkloadError:
    """The error for an ``objective.metric`` the workload never reports, with did-you-mean."""
    import difflib

    metric = experiment.objective.metric
    close = difflib.get_close_matches(metric, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return WorkloadError(
        f"{experiment.source}: objective.metric: the workload never reports {metric!r}{hint}; "
        f"it reports {', '.join(names)}")


def check_objective(store: StoreAPI, exp_id: int, experiment: Experiment) -> None:
    """A typo in ``objective.metric`` stops the run at the first trial that shows it."""
    metric = experiment.objective.metric
    names = store.metric_names(exp_id)
    if metric in names:
        return
    if names:
        raise unknown_metric(experiment, names)
    done = [t for t in store.trials(exp_id, statuses=("completed", "failed"))
            if (t.error or "").startswith(NO_OBJECTIVE) or t.status == "completed"]
    if done:
        raise WorkloadError(
            f"{experiment.source}: objective.metric: trial {done[0].study}#{done[0].index} "
            f"finished without reporting any metric (expected {metric!r})")
