"""A read-only view of one experiment for notebooks: pandas frames, findings, and the report
rendered inline (``tunebook.load``).

Where it sits: in the report layer, because its ``_repr_html_`` shows the report's own page
(:func:`tunebook.report.html.render_report`), so there is one drawing, not a notebook copy. Its
data comes from the functions the command line prints (:mod:`tunebook.analysis.rows`):
:meth:`ExperimentView.trials_frame` is ``tunebook trials NAME --format json`` as a frame and
:meth:`ExperimentView.findings` is ``tunebook findings NAME``.

The store: every read opens the store, reads and closes it, so a view kept in a notebook for
hours holds no connection (a SQLite store left open keeps its ``-wal`` and ``-shm`` files) and
each call sees trials that finished since, even while ``tunebook run`` works. Inside
``with tunebook.load(...) as exp:`` one connection serves every read of the block and
:meth:`ExperimentView.close` (or leaving the block) releases it; a read after that opens its own
again. A store object passed in is the caller's: the view never closes it.

pandas is an optional extra (``pip install 'tunebook[frames]'``), imported by the two frame
methods only.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebook.analysis.data import TrialData
from tunebook.analysis.findings import Finding, trials_text
from tunebook.errors import TunebookError
from tunebook.objective import Objective, resolve
from tunebook.store.api import StoreAPI

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PARAM_PREFIX", "ExperimentView", "load"]

PARAM_PREFIX = "params_"
"""Prefix of the parameter columns of :meth:`ExperimentView.trials_frame`: the JSON row's
``params["lr"]`` is the column ``params_lr`` (Optuna's ``trials_dataframe`` convention)."""
_INSTALL = "pip install 'tunebook[frames]'"
_STEP_COLUMNS = ("best_step", "final_step", "infeasible_step")
# The columns of a frame without rows (an experiment whose studies have no budget yet); with
# rows, the columns are the rows' own keys, so a key added to the JSON appears here too.
_EMPTY_COLUMNS = ("trial_id", "study", "index", "status", "seed", "attempts", "best_step",
                  "best_value", "final_step", "final_value", "run_seconds", "error",
                  "infeasible_reason", "infeasible_step", "checkpoint")
_MEASUREMENT_COLUMNS = ("trial_id", "study", "index", "step", "metric", "value")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ModuleNotFoundError(f"tunebook's data frames need pandas: {_INSTALL}") from exc
    return pandas


def load(name: str, root: str | Path = "tunebook", store: str | StoreAPI | None = None, *,
         metric: str | None = None, goal: str | None = None,
         final: bool = False) -> ExperimentView:
    """A read-only view of experiment ``name`` for a notebook or a script.

    Args:
        name: the experiment's name.
        root: the tunebook root folder it ran under (its SQLite store and trial folders), as
            ``--root``.
        store: a database URL (as ``--store``) instead of the root's SQLite store, or an open
            :class:`~tunebook.store.api.StoreAPI` (the caller's to close).
        metric, goal, final: the objective to summarise and rank by, as ``--metric``,
            ``--goal`` and ``--final`` (default: the experiment's).

    Raises:
        StoreError: no store there, or it has no experiment ``name`` (naming the store and the
            experiments it has).
        TunebookError: ``metric`` was never reported or ``goal`` is not a direction.
    """
    return ExperimentView(name, root, store, metric=metric, goal=goal, final=final)


def _check_metrics(store: StoreAPI, exp_id: int, name: str, what: str,
                   metrics: Sequence[str]) -> None:
    """A metric nobody reported is a typo: one line naming it, the nearest and the known."""
    if not metrics:
        return
    known = store.metric_names(exp_id)
    for m in metrics:
        if known and m not in known:
            import difflib

            close = difflib.get_close_matches(m, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TunebookError(f"{what}: no trial of {name!r} reported {m!r}{hint}; "
                                f"reported: {', '.join(known)}")


class ExperimentView:
    """One experiment, read-only: frames of its trials and measurements, its findings, and its
    report inline in Jupyter. Made by :func:`load` (:func:`tunebook.load`).

    Every read goes to the store, so a view of a running experiment shows the trials finished
    since the last call. Use it as a context manager (or call :meth:`close`) to hold one
    connection for several reads; see the module docstring.
    """

    objective: Objective
    """The objective the frames' best/final values and the findings follow."""

    def __init__(self, name: str, root: str | Path = "tunebook",
                 store: str | StoreAPI | None = None, *, metric: str | None = None,
                 goal: str | None = None, final: bool = False) -> None:
        self.name = name
        self.root = Path(root)
        self._url = store if isinstance(store, str) else None
        self._borrowed = None if store is None or isinstance(store, str) else store
        self._held: StoreAPI | None = None
        self._choice = (metric, goal, final)
        with self._open() as s:
            exp = s.require_experiment(name)
            _check_metrics(s, exp.id, name, "metric", [metric] if metric else [])
            try:
                self.objective = resolve(exp.config["objective"], metric, goal, final)
            except ValueError as exc:
                raise TunebookError(f"goal: {exc}") from None

    # ------------------------------------------------------------------ the store
    def _connect(self) -> StoreAPI:
        from tunebook.store.sql import Store

        # create=False: a view never makes a store (a typo in root is an error, not a new file).
        return (Store(self._url, create=False) if self._url is not None
                else Store.at_root(self.root, create=False))

    @contextmanager
    def _open(self) -> Iterator[StoreAPI]:
        if self._borrowed is not None:
            yield self._borrowed
        elif self._held is not None:
            yield self._held
        else:
            store = self._connect()
            try:
                yield store
            finally:
                store.close()

    def __enter__(self) -> ExperimentView:
        if self._borrowed is None and self._held is None:
            self._held = self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection a ``with`` block holds (a store passed in is left open). The
        view stays usable: a later read opens the store for itself."""
        if self._held is not None:
            self._held.close()
            self._held = None

    # ------------------------------------------------------------------ reads
    def trial_rows(self) -> list[dict[str, Any]]:
        """``tunebook trials NAME --format json``'s rows, as dicts (NaN kept as NaN)."""
        from tunebook.analysis.rows import trial_rows

        with self._open() as s:
            return trial_rows(s, self.name, self.objective, root=self.root)

    def trials_frame(self) -> pd.DataFrame:
        """One row per trial within each study's current budget, in the order of ``tunebook
        trials NAME --format json`` and with the same values: ``trial_id``, ``study``,
        ``index``, ``status``, ``seed``, ``attempts``, ``best_step``/``best_value`` and
        ``final_step``/``final_value`` of the objective, ``run_seconds``, ``error``,
        ``infeasible_reason``/``infeasible_step``, ``checkpoint`` (the best checkpoint's folder
        or None), then one ``params_<name>`` column per hyperparameter (sorted; empty where a
        conditional one does not apply). Steps are nullable integers (``Int64``).

        Raises:
            ModuleNotFoundError: pandas is not installed (with the install command).
        """
        pd = _pandas()
        rows = self.trial_rows()
        names = sorted({k for r in rows for k in r["params"]})
        base = [k for k in rows[0] if k != "params"] if rows else list(_EMPTY_COLUMNS)
        base.sort(key=lambda k: k != "trial_id")  # the id first, the JSON's order after it
        records = [{**{k: r[k] for k in base},
                    **{PARAM_PREFIX + p: r["params"].get(p) for p in names}} for r in rows]
        frame = pd.DataFrame.from_records(records, columns=[*base, *(PARAM_PREFIX + p
                                                                     for p in names)])
        return frame.astype({c: "Int64" for c in _STEP_COLUMNS if c in frame.columns})

    def measurements_frame(self, metrics: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Every measurement of the trials :meth:`trials_frame` lists, long format: columns
        ``trial_id``, ``study``, ``index``, ``step``, ``metric``, ``value``, ordered by trial
        (as in :meth:`trials_frame`), metric and step. ``metrics`` (a name or a list) keeps only
        those, and only those are read from the store. Join with the trials on ``trial_id``.

        Raises:
            TunebookError: a metric in ``metrics`` was never reported (naming the nearest).
            ModuleNotFoundError: pandas is not installed (with the install command).
        """
        pd = _pandas()
        wanted = [metrics] if isinstance(metrics, str) else metrics
        from tunebook.analysis.results import trial_records

        with self._open() as s:
            exp_id = s.require_experiment(self.name).id
            if wanted is not None:
                _check_metrics(s, exp_id, self.name, "metrics", wanted)
            trials = trial_records(s, self.name, self.objective.metric, self.objective.goal)
            if wanted is None:
                measured = s.measurements(experiment_id=exp_id)
            else:  # one query per metric: the store filters, not Python
                measured = [row for m in dict.fromkeys(wanted)
                            for row in s.measurements(experiment_id=exp_id, metric=m)]
        order = {t.id: (i, t.study, t.index) for i, t in enumerate(trials)}
        # Trial order as in trials_frame, then metric and step (as the store orders one query).
        kept = sorted(((order[tid], m, step, v) for tid, step, m, v in measured if tid in order),
                      key=lambda row: row[:3])
        frame = pd.DataFrame.from_records(
            [(trials[i].id, study, index, step, m, v) for (i, study, index), m, step, v in kept],
            columns=list(_MEASUREMENT_COLUMNS))
        return frame.astype({"trial_id": "int64", "index": "int64", "step": "int64",
                             "value": "float64"})

    def findings(self) -> list[Finding]:
        """The playbook's checks on this experiment: ``tunebook findings NAME``'s findings
        (the report's too), most severe first."""
        from tunebook.analysis.rows import experiment_findings

        metric, goal, final = self._choice
        with self._open() as s:
            return experiment_findings(s, self.name, metric=metric, goal=goal, final=final)

    def report_html(self) -> str:
        """The experiment's report page, as ``tunebook report NAME`` writes it (one
        self-contained HTML document: style, data and plotting script embedded)."""
        from tunebook.report.html import render_report

        metric, goal, final = self._choice
        with self._open() as s:
            return render_report(s, self.name, metric=metric, goal=goal, final=final).html

    # ------------------------------------------------------------------ Jupyter
    def _repr_html_(self) -> str:
        """Jupyter's rendering: a compact summary (trials per study and status, the best
        trial, the findings) above the full report, collapsed, in a sandboxed frame so that its
        style and script stay out of the notebook."""
        from tunebook.analysis.results import trial_records
        from tunebook.report.html import render_report

        metric, goal, final = self._choice
        with self._open() as s:
            trials = trial_records(s, self.name, self.objective.metric, self.objective.goal)
            report = render_report(s, self.name, metric=metric, goal=goal, final=final)
        return _summary_html(self.name, self.objective, trials, report.findings) + (
            "<details><summary>Report: plots and tables</summary>"
            "<iframe sandbox='allow-scripts' style='width:100%;height:640px;border:1px solid "
            f"#ccc' srcdoc=\"{html.escape(report.html, quote=True)}\"></iframe></details>")

    def __repr__(self) -> str:
        return f"<tunebook experiment {self.name!r} at {str(self.root)!r}>"


def _summary_html(name: str, objective: Objective, trials: Sequence[TrialData],
                  findings: Sequence[Finding]) -> str:
    """The summary above the report: counts, the best trial, the findings (all escaped)."""
    e = html.escape
    statuses = sorted({t.status for t in trials})
    counts: dict[str, dict[str, int]] = {}
    for t in trials:
        per = counts.setdefault(t.study, {})
        per[t.status] = per.get(t.status, 0) + 1
    head = "".join(f"<th>{e(st)}</th>" for st in statuses)
    body = "".join(f"<tr><td>{e(study)}</td>"
                   + "".join(f"<td>{per.get(st, 0)}</td>" for st in statuses) + "</tr>"
                   for study, per in counts.items())
    mode = "final value" if objective.final else "best over training"
    ranked = objective.ranked(trials)
    if ranked:
        b = ranked[0]
        params = ", ".join(f"{k}={v!r}" for k, v in b.params.items())
        step = b.final_step if objective.final else b.best_step
        best_html = (f"<p>Best trial: <b>{e(b.label)}</b> (id {b.id}): {e(objective.metric)} "
                     f"= {objective.value(b)!r} at step {step}; {e(params)}</p>")
    else:
        best_html = "<p>No completed trial with a finite value yet.</p>"
    items = "".join(
        f"<li><b>[{e(f.severity)}] {e(f.check)}</b>"
        f"{' (' + e(f.study) + ')' if f.study else ''}: {e(f.message)}"
        f"{' Action: ' + e(f.action) if f.action else ''}"
        f"{' Trials: ' + e(trials_text(f.trials)) if f.trials else ''}</li>" for f in findings)
    found = f"<ul>{items}</ul>" if findings else "<p>None of the playbook's checks fired.</p>"
    return (f"<div class='tunebook-view'><p><b>{e(name)}</b>: {len(trials)} trials; objective "
            f"{e(objective.metric)} ({e(objective.goal)}, {mode})</p>"
            f"<table><tr><th>study</th>{head}</tr>{body}</table>{best_html}"
            f"<p>Findings ({len(findings)}):</p>{found}</div>")
