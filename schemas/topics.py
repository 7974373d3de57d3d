"""Kafka topic names: one place, used by producers, the worker, the API and the dashboard."""

from __future__ import annotations


class Topics:
    """Topic names of the system."""

    #: Customer events in (key = customer id).
    CUSTOMERS = "customers"
    #: One score per customer event (key = customer id).
    SCORES = "churn-scores"
    #: Customers at or above the champion's threshold.
    ALERTS = "churn-alerts"
    #: Announcements of new registered model versions (hot reload).
    MODEL_UPDATED = "model-updated"
    #: Dead letters: customer events that could not be decoded, validated or featurised.
    CUSTOMERS_DLQ = "customers.dlq"
    #: Periodic input-drift records (per-feature PSI) of each scoring worker; not in :meth:`all`
    #: (an operational stream, not part of the scoring contract's topic set).
    DRIFT = "churn-drift"

    @classmethod
    def all(cls) -> list[str]:
        """Every topic, in a stable order."""
        return [cls.CUSTOMERS, cls.SCORES, cls.ALERTS, cls.MODEL_UPDATED, cls.CUSTOMERS_DLQ, cls.DRIFT]
