"""A finding: one of the playbook's checks, fired, with its evidence and the suggested action."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["SEVERITIES", "Finding", "Severity"]

Severity = Literal["info", "warning", "problem"]
SEVERITIES: tuple[Severity, ...] = ("problem", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """The result of one check that fired.

    Attributes:
        check: a stable identifier (``boundary``, ``overfitting``, ...), for scripts.
        severity: ``problem`` (conclusions are at risk), ``warning`` or ``info``.
        message: one sentence for a person.
        evidence: the numbers behind it (trial ids, values, steps), JSON-serialisable.
        section: the playbook section the check comes from.
        action: what the playbook suggests doing about it.
        hyperparameter: the hyperparameter concerned, when there is one.
        study: the study concerned, when there is one.
    """

    check: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    section: str = ""
    action: str = ""
    hyperparameter: str | None = None
    study: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the ``tunebook findings --format json`` schema)."""
        return asdict(self)
