"""The evidence of a procedure drawn: per procedure, the figures of its page.

Each drawer reads the stored recommendation's evidence and the curves of the experiments it
ran (``rec.experiments``) and returns the page's parts, each a heading, a sentence and its
figures: ``xy`` plot specs (plots.js ``xyPlot``: series of points or lines on linear, log or
log2 axes, unstable ones dashed or crossed, red reference lines) or ``{"kind": "hist", ...}``
histograms (plots.js ``histogram``). A piece of evidence that is missing leaves its figure out.
See :mod:`tunebook.report.procedures` for the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tunebook.analysis.data import Curve, ExperimentData, load
from tunebook.core.formatting import format_value as _fmt
from tunebook.report.html import _histogram
from tunebook.store.api import StoreAPI

if TYPE_CHECKING:
    from tunebook.procedures import Recommendation

__all__ = ["DRAWN", "Figure", "Part"]

POINTS = 200  # points per drawn curve at most

#: A figure: an ``xy`` plot spec (see plots.js ``xyPlot``) or ``{"kind": "hist", ...}``.
Figure = dict[str, Any]
#: A part of the evidence: a heading, a sentence, its figures.
Part = tuple[str, str, list[Figure]]


# ----------------------------------------------------------------- figures
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _series(name: str, xs: Iterable[Any], ys: Iterable[Any], xscale: str = "linear",
            yscale: str = "linear", **extra: Any) -> dict[str, Any]:
    """A series of the finite points drawable on the scales (positive on a log scale), at
    most :data:`POINTS` of them (evenly thinned, the last kept)."""
    def ok(v: float | None, scale: str) -> bool:
        return v is not None and (scale == "linear" or v > 0)

    pts = [(x, y) for x, y in zip(map(_num, xs), map(_num, ys), strict=False)
           if ok(x, xscale) and ok(y, yscale)]
    if len(pts) > POINTS:
        every = math.ceil(len(pts) / POINTS)
        pts = pts[::every] + ([pts[-1]] if (len(pts) - 1) % every else [])
    return {"name": name, "x": [p[0] for p in pts], "y": [p[1] for p in pts], **extra}


def _xy(title: str, xlabel: str, ylabel: str, series: list[dict[str, Any]], *,
        xscale: str = "linear", yscale: str = "linear",
        vlines: Sequence[tuple[Any, str]] = (), hlines: Sequence[tuple[Any, str]] = ()
        ) -> Figure | None:
    """An ``xy`` figure, or None when none of its series has a drawable point."""
    # An unstable series without a finite point (it diverged at once) stays in the legend.
    series = [s for s in series if s["x"] or s.get("unstable")]
    if not any(s["x"] for s in series):
        return None

    def lines(pairs: Sequence[tuple[Any, str]], key: str, scale: str) -> list[dict[str, Any]]:
        nums = [(_num(v), label) for v, label in pairs]
        return [{key: v, "label": label} for v, label in nums
                if v is not None and (scale == "linear" or v > 0)]

    return {"kind": "xy", "title": title, "xlabel": xlabel, "ylabel": ylabel,
            "xscale": xscale, "yscale": yscale, "series": series,
            "vlines": lines(vlines, "x", xscale), "hlines": lines(hlines, "y", yscale)}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _positive(values: Iterable[Any]) -> str:
    """``log`` when every finite value is positive (losses), else ``linear``."""
    vals = [v for v in map(_num, values) if v is not None]
    return "log" if vals and min(vals) > 0 and max(vals) / min(vals) > 10 else "linear"


def _load(store: StoreAPI, name: str, metrics: Sequence[str] | None = None
          ) -> ExperimentData | None:
    """The experiment's data, or None when it is not in the store (deleted since)."""
    if store.get_experiment(name) is None:
        return None
    return load(store, name, metrics=metrics)


def _stage(rec: Recommendation, kind: str) -> list[str]:
    """The experiments of ``rec`` of one stage (``<base>.<proc>.<kind>[-...]``)."""
    return [n for n in rec.experiments if n.rsplit(".", 1)[-1].split("-")[0] == kind]


def _loss_metric(data: ExperimentData, preferred: str = "train_loss") -> str:
    reported = {m for t in data.trials for m in t.curves}
    return preferred if preferred in reported else data.metric


def _curves_figure(store: StoreAPI, names: Sequence[str], title: str, *,
                   label: Callable[[str, Any], str | None] = lambda n, t: t.label,
                   unstable: Callable[[Any], bool] = lambda t: False,
                   metric: str | None = None) -> Figure | None:
    """The training-loss curves (``metric``) of the trials of experiments ``names``, one series
    each, named by ``label(experiment, trial)`` (None: left out), dashed when ``unstable``."""
    series: list[tuple[str, Curve, bool]] = []
    values: list[float] = []
    picked = "train_loss"
    for name in names:
        data = _load(store, name)
        if data is None:
            continue
        picked = metric or _loss_metric(data)
        for t in data.trials:
            name_ = label(name, t)
            curve = t.curves.get(picked, Curve((), ()))
            if name_ is None or not curve.steps:
                continue
            values += curve.values
            series.append((name_, curve, unstable(t)))
    yscale = _positive(values)
    return _xy(title, "step", picked + (" (log)" if yscale == "log" else ""),
               [_series(n + (" (unstable)" if bad else ""), c.steps, c.values, "linear", yscale,
                        unstable=bad) for n, c, bad in series], yscale=yscale)


# ----------------------------------------------------------------- per procedure
def _stability(rec: Recommendation, store: StoreAPI) -> list[Part]:
    ev = rec.evidence
    rows = [r for r in ev.get("sweep") or () if isinstance(r, dict)]
    by_study = {r.get("study"): r for r in rows}
    bad_lr = ev.get("unstable_base_learning_rate")
    parts: list[Part] = []
    marks = [(bad_lr, "smallest unstable rate")]

    def is_bad(t: Any) -> bool:
        return bool((by_study.get(t.study) or {}).get("unstable"))

    sweep_figs = [_curves_figure(store, _stage(rec, "sweep"), "the sweep: one curve per "
                                 "learning rate", label=lambda n, t: t.study, unstable=is_bad)]
    if rows:
        lr = [r.get("learning_rate") for r in rows]
        final = [next((v for v in reversed(r.get("losses") or []) if _num(v) is not None), None)
                 for r in rows]
        worst = [max((v for v in r.get("losses") or [] if _num(v) is not None), default=None)
                 for r in rows]
        yscale = _positive(final + worst)
        ok = [not r.get("unstable") for r in rows]
        sweep_figs.append(_xy(
            "training loss against the learning rate", "learning rate (log)",
            "training loss" + (" (log)" if yscale == "log" else ""), [
                _series("final loss, stable", [x for x, g in zip(lr, ok, strict=True) if g],
                        [y for y, g in zip(final, ok, strict=True) if g], "log", yscale,
                        points=True),
                _series("final loss, unstable", [x for x, g in zip(lr, ok, strict=True)
                                                 if not g],
                        [y for y, g in zip(final, ok, strict=True) if not g], "log", yscale,
                        points=True, unstable=True),
                _series("largest loss", lr, worst, "log", yscale)],
            xscale="log", yscale=yscale, vlines=marks))
    parts.append(("The learning-rate sweep", str(ev.get("rule") or "") + ". Dashed curves "
                  "and crosses are unstable; the red line is the smallest unstable rate.",
                  [f for f in sweep_figs if f]))
    early = _dict(ev.get("early_run"))
    fig = _curves_figure(store, _stage(rec, "early"), "the early run, evaluated every step",
                         unstable=lambda t: bool(early.get("unstable")))
    if fig:
        parts.append(("The early run", f"A short run at the unstable rate, evaluated at every "
                      f"step: {early.get('unstable') or 'stable'}.", [fig]))
    study = {r.get("warmup_steps"): r for r in ev.get("warmup_study") or ()
             if isinstance(r, dict)}

    def warm_row(t: Any) -> dict[str, Any]:
        return study.get(t.params.get("warmup_steps")) or {}

    fig = _curves_figure(store, _stage(rec, "warmup"), "the warmup study, one curve per "
                         "warmup length", label=lambda n, t: t.study,
                         unstable=lambda t: bool(warm_row(t).get("unstable")))
    if fig:
        parts.append(("The warmup study", "At 10x the unstable rate, each run warms up then "
                      "holds the rate for twice the warmup; dashed runs are unstable.", [fig]))
    clip = _dict(ev.get("clipping"))
    fig = _curves_figure(store, _stage(rec, "clip"), "the clipped run, no warmup",
                         unstable=lambda t: bool(clip.get("unstable")))
    if fig:
        parts.append(("Gradient clipping", f"No warmup was stable: the same rate, clipped at "
                      f"{_fmt(clip.get('grad_clip'))} (the 90th percentile of the stable sweep "
                      f"trials' norms): {clip.get('unstable') or 'stable'}.", [fig]))
    return parts


def _clip(rec: Recommendation, store: StoreAPI) -> list[Part]:
    ev = rec.evidence
    figs: list[Figure | None] = []
    source, chosen = ev.get("norms_from"), set(ev.get("trials") or ())
    data = _load(store, source, ["grad_norm"]) if isinstance(source, str) else None
    norms = [v for t in (data.trials if data else ()) if f"{t.study}#{t.index}" in chosen
             for v in t.curves.get("grad_norm", Curve((), ())).finite().values]
    threshold = _num(ev.get("clip_threshold"))
    if norms:
        figs.append({"kind": "hist", **_histogram(norms), "marker": threshold,
                     "xlabel": "unclipped gradient norm", "ylabel": "steps",
                     "title": f"{len(norms)} recorded norms (red: the threshold)"})
    clipped = [n for n in rec.experiments if n.endswith(".clipped")]
    names = ([source] if isinstance(source, str) and data is not None else []) + clipped
    figs.append(_curves_figure(
        store, names, "the clipped run against the runs the norms came from",
        label=lambda n, t: ("clipped " + t.label if n in clipped else
                            "unclipped " + t.label if f"{t.study}#{t.index}" in chosen
                            else None)))
    fraction = _num(ev.get("fraction_clipped"))
    return [("The threshold and the clipped run",
             f"The {_fmt(ev.get('quantile'))} quantile of {len(norms)} unclipped per-step "
             f"norms of {', '.join(sorted(chosen)) or 'no trial'} is "
             f"{_fmt(threshold)}; it would have clipped "
             f"{'-' if fraction is None else f'{fraction:.1%}'} of those steps.",
             [f for f in figs if f])]


def _steps(rec: Recommendation, store: StoreAPI) -> list[Part]:
    ev = rec.evidence
    metric = ev.get("metric") if isinstance(ev.get("metric"), str) else None
    rows = {r.get("trial"): r for r in ev.get("trials") or () if isinstance(r, dict)}
    figs: list[Figure | None] = []
    for name in rec.experiments[:1]:
        data = _load(store, name)
        if data is None:
            continue
        metric = metric or _loss_metric(data)
        values = [v for t in data.trials for v in t.curves.get(metric, Curve((), ())).values]
        yscale = "linear" if "error" in metric else _positive(values)
        series, fx, fy = [], [], []
        for t in data.trials:
            curve = t.curves.get(metric, Curve((), ()))
            row = rows.get(t.label) or {}
            knobs = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items()
                              if k in row and _num(v) is not None)
            series.append(_series(f"{t.label} ({knobs})" if knobs else t.label, curve.steps,
                                  curve.values, "linear", yscale))
            fit = row.get("fit_step")
            if fit in curve.steps:
                fx.append(fit)
                fy.append(curve.values[curve.steps.index(fit)])
        series.append(_series("fit step", fx, fy, "linear", yscale, points=True))
        threshold = _num(ev.get("threshold"))
        figs.append(_xy(f"the sweep's {metric}", "step",
                        metric + (" (log)" if yscale == "log" else ""), series, yscale=yscale,
                        vlines=[(rec.values.get("max_train_steps"),
                                 "recommended max_train_steps")],
                        hlines=[(threshold, "fit threshold")]))
    return [("The constant learning-rate sweep",
             f"Each trial's {metric or 'training metric'}; a trial fits the training set at its "
             f"first evaluation at or below the threshold ({_fmt(ev.get('threshold'))}); dots "
             "mark where each did, the red vertical line the recommended max_train_steps.",
             [f for f in figs if f])]


def _batch_size(rec: Recommendation, store: StoreAPI) -> list[Part]:
    ev = rec.evidence
    sizes = [s for s in ev.get("sizes") or () if isinstance(s, dict)
             and _num(s.get("examples_per_second")) is not None]
    figs: list[Figure | None] = []
    marks = [(ev.get("recommended"), "recommended"),
             (ev.get("diminishing_returns_at"), "diminishing returns")]
    if sizes:
        key = "median_examples_per_second" if all(
            _num(s.get("median_examples_per_second")) is not None for s in sizes) \
            else "examples_per_second"
        spread: list[list[Any]] = [
            s["spread"] if isinstance(s.get("spread"), list) and len(s["spread"]) == 2
            else [s[key], s[key]] for s in sizes]
        b = [s["batch_size"] for s in sizes]
        t = [s[key] for s in sizes]
        perfect = [t[0] * x / b[0] for x in b]
        figs.append(_xy(
            "throughput against the batch size", "batch size (log2)",
            "examples/s (log2)", [
                _series("measured (" + ("median" if "median" in key else "mean")
                        + ", bar: repeats' range)", b, t, "log2", "log2", points=True,
                        low=[lo for lo, _ in spread], high=[hi for _, hi in spread]),
                _series("perfect scaling from the smallest", b, perfect, "log2", "log2",
                        dashed=True)],
            xscale="log2", yscale="log2", vlines=marks))
        figs.append(_xy("the input pipeline's share of the step time", "batch size (log2)",
                        "data share", [_series("data loading / step time", b,
                                               [s.get("data_share") for s in sizes], "log2",
                                               "linear", points=True)],
                        xscale="log2", hlines=[(ev.get("input_bound_share"), "input-bound")]))
    parts: list[Part] = [("Throughput", "Measured after warm-up with the same number of "
                          "timed steps per size; the playbook's choice is the largest size "
                          "that still raises throughput.", [f for f in figs if f])]
    reached = [r for r in ev.get("steps_to_result") or () if isinstance(r, dict)
               and _num(r.get("steps")) is not None and _num(r.get("batch_size")) is not None]
    if reached:
        b0, s0 = reached[0]["batch_size"], reached[0]["steps"]
        shape: dict[str, Any] = ev["scaling"] if isinstance(ev.get("scaling"), dict) else {}
        scaling_marks = [(shape.get("perfect_up_to"), "perfect scaling up to"),
                         (shape.get("diminishing_returns_at"), "diminishing returns"),
                         (shape.get("no_reduction_at"), "no reduction")]
        fig = _xy("steps to the target against the batch size", "batch size (log2)",
                  "steps to the target (log2)", [
                      _series("measured", [r["batch_size"] for r in reached],
                              [r["steps"] for r in reached], "log2", "log2", points=True),
                      _series("perfect scaling", [r["batch_size"] for r in reached],
                              [s0 * b0 / r["batch_size"] for r in reached], "log2", "log2",
                              dashed=True)], xscale="log2", yscale="log2",
                  vlines=[(ev.get("recommended"), "recommended"), *scaling_marks])
        if fig:
            parts.append(("Steps to result", "Shallue et al. (2018): doubling the batch size "
                          "halves the steps on the perfect-scaling line, then returns "
                          "diminish. The vertical lines are the steps' own scaling: the end of "
                          "the perfect-scaling region, where returns start to diminish and "
                          "where the steps stop falling.", [fig]))
    return parts


DRAWN: dict[str, Callable[[Recommendation, StoreAPI], list[Part]]] = {
    "stability": _stability, "clip": _clip, "steps": _steps, "batch-size": _batch_size}
