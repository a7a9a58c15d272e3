"""The store: the durable source of truth for experiments, trials and measurements.

``api`` holds the :class:`~tunebook.store.api.StoreAPI` protocol that every caller is typed
against, and its row types (no SQLAlchemy import); ``sql`` is the SQLAlchemy implementation
over SQLite or PostgreSQL (:class:`~tunebook.store.sql.Store`), built from ``schema``,
``queries``, ``history`` and ``tx`` (the one transaction helper: retries through an outage
with ``retry``, error mapping) and ``checks`` (limits on what may be written).
"""
