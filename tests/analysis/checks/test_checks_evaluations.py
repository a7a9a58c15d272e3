"""Evaluation checks: evaluations at regular steps."""

from __future__ import annotations

from checkdata import (
    GOOD,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_eval_steps,
)


# ----------------------------------------------------------------------------- 9. eval steps
def test_eval_steps_flags_offsets_and_gaps() -> None:
    ok = tr(GOOD)
    odd = tr([1.0, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
             steps=[10, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100])
    gap = tr([1.0, 0.9, 0.8, 0.7], steps=[10, 20, 30, 100])
    f = only(check_eval_steps(make_data([ok, odd, gap])))
    assert f.severity == "warning"
    ex = f.evidence["examples"]
    assert [e["id"] for e in ex] == [2, 3]
    assert ex[0]["unexpected"] == [25] and ex[0]["n_missing"] == 0
    assert ex[1]["missing"] == [40, 50, 60, 70, 80] and ex[1]["n_missing"] == 6
    assert f.evidence["n_checked"] == 3 and f.evidence["n_irregular"] == 2
    assert f.trials == [{"id": 2, "label": "main #1"}, {"id": 3, "label": "main #2"}]
    assert f.advice == {}  # how the workload reports, not a tuning knob


def test_eval_steps_trials_lists_every_irregular_trial_beyond_the_examples() -> None:
    gaps = [tr([1.0, 0.9, 0.8, 0.7], steps=[10, 20, 30, 100]) for _ in range(7)]
    f = only(check_eval_steps(make_data([tr(GOOD), *gaps])))
    assert len(f.evidence["examples"]) == 5 and len(f.trials) == 7
    assert [t["id"] for t in f.trials] == list(range(2, 9))


def test_eval_steps_regular_with_final_step_and_step_zero() -> None:
    steps = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    data = make_data([tr([1.0 - 0.05 * i for i in range(11)], steps=steps),
                      tr([1.0], status="infeasible", steps=[7])],  # not completed: ignored
                     max_train_steps=95)
    assert check_eval_steps(data) == []


def test_eval_steps_repeated_step() -> None:
    data = make_data([tr([1.0, 0.9, 0.9, 0.8], steps=[10, 20, 20, 30])], max_train_steps=30)
    assert only(check_eval_steps(data)).evidence["examples"][0]["unexpected"] == [20]
