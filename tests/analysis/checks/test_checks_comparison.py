"""The isolation check: one finding per experiment, the comparison's verdict and numbers."""

from __future__ import annotations

import numpy as np
from checkdata import make_data, only, tr
from scenarios_comparison import curve, lrs, response, studies

from tunebook.analysis.checks import check_isolation, run_checks
from tunebook.analysis.comparison import ComparisonThresholds, compare


def test_isolation_is_one_info_finding_with_the_verdict() -> None:
    base = [response(lr) for lr in lrs()]
    data = studies({"a": base, "b": [v + 0.1 for v in base]}, seed=4)
    f = only(check_isolation(data))
    cmp = compare(data)
    assert cmp is not None
    assert f.severity == "info" and f.section == "Extracting insight from experimental results"
    assert f.advice == {"studies": "differ"} and f.evidence == cmp.as_dict()
    assert [t["label"] for t in f.trials] == [t.label for t in cmp.trials]
    assert f.message == cmp.summary() and f.message.count("Verdict:") == 1
    assert "beats b on 12 of 12 shared nuisance points" in f.message


def test_isolation_needs_two_comparable_studies() -> None:
    rng = np.random.default_rng(0)
    one = make_data([tr(curve(0.3, rng, 0.001), params={"lr": lr}) for lr in lrs()],
                    max_train_steps=200)
    assert check_isolation(one) == []
    failed = make_data([tr(curve(0.3, rng, 0.001), study="a"),
                        tr(None, study="b", status="infeasible")], max_train_steps=200)
    assert check_isolation(failed) == []


def test_isolation_thresholds_come_from_the_experiment_file() -> None:
    # a difference on every nuisance point, which only the pairs show
    points = lrs()
    base = [response(lr, depth=0.05, center=float(np.log10(points[5]))) for lr in points]
    data = studies({"a": base, "b": [v + 0.004 for v in base]}, shared_noise=True, noise=0.0005,
                   seed=2)
    assert only(check_isolation(data)).advice == {"studies": "differ"}
    strict = ComparisonThresholds(min_pairs=13)  # 12 pairs: judged unpaired, the IQR hides it
    f = only(check_isolation(data, strict))
    assert f.advice == {"studies": "within_spread"} and f.evidence["paired"] is False
    found = run_checks(data, only=["isolation"], thresholds={"comparison": strict})
    assert only(found).advice == {"studies": "within_spread"}
