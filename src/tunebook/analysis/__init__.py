"""Analysis: pure functions over trial records that return plain data.

Nothing here draws or prints. :func:`load` reads an experiment from the store into
:class:`ExperimentData` (it is the one loader: the command line's ``best`` and ``trials`` read
their :class:`TrialData` records through it too); the other modules compute what the
playbook says to look at (axis and isolation plots, training curves, best-of-k bootstraps) and
its checks, written as :class:`Finding` objects. The objective — which metric, which
direction, best over training or final value (one :class:`tunebook.objective.Objective`) — is a
parameter everywhere, so it can change without re-running anything.
"""

from __future__ import annotations

from tunebook.analysis.data import Curve, ExperimentData, TrialData, load
from tunebook.analysis.findings import Finding

__all__ = ["Curve", "ExperimentData", "Finding", "TrialData", "load"]
