"""Execution: running trials.

``trial`` (the :class:`~tunebook.execution.trial.Trial` a workload reports to), ``workload``
(Python and ``command:`` workloads), ``worker`` (claims and runs trials in one process),
``runner`` (registers an experiment and supervises its workers), ``executors`` (the executor
seam: local processes or inline), ``suggestions`` (designers -> trials in the store),
``bookkeeping`` (what a run does to the store besides running trials) and ``provenance`` (what
ran where).
"""
