"""The exceptions tunebook raises on purpose: one family, messages that name where and what."""

from __future__ import annotations

import pytest

from tunebook.errors import ConfigError, Infeasible, StoreError, TunebookError, WorkloadError


@pytest.mark.parametrize("kind", [ConfigError, WorkloadError, StoreError, Infeasible])
def test_every_error_is_a_tunebook_error(kind: type[Exception]) -> None:
    assert issubclass(kind, TunebookError) and issubclass(TunebookError, Exception)


def test_a_config_error_names_source_key_and_problem() -> None:
    err = ConfigError("exp.yaml", "nuisance.lr.low", "must be > 0, got -1")
    assert str(err) == "exp.yaml: nuisance.lr.low: must be > 0, got -1"
    assert (err.source, err.key, err.message) == ("exp.yaml", "nuisance.lr.low",
                                                  "must be > 0, got -1")


def test_a_config_error_about_the_whole_document_has_no_key() -> None:
    err = ConfigError("exp.yaml", "", "the experiment description is empty")
    assert str(err) == "exp.yaml: the experiment description is empty"


def test_infeasible_keeps_reason_and_step() -> None:
    err = Infeasible("loss is nan", step=120)
    assert (err.reason, err.step) == ("loss is nan", 120)
    assert str(err) == "loss is nan (step 120)"
    assert str(Infeasible("diverged")) == "diverged" and Infeasible("diverged").step is None


def test_plain_errors_carry_their_message() -> None:
    assert str(StoreError("the store is gone")) == "the store is gone"
    with pytest.raises(TunebookError, match="cannot import"):
        raise WorkloadError("cannot import toy")

