"""The topics one worker reads and writes, and their creation.

The names are those of the served data set's namespace (:class:`schemas.namespace.Namespace`;
Telco's are :class:`schemas.topics.Topics`); a worker may append a suffix to them
(benchmarks and tests run on their own topics).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from plumbing.clients import create_missing_topics, served_dataset, topic_partitions
from plumbing.settings import Settings
from schemas.namespace import Namespace
from schemas.topics import Topics


@dataclass(frozen=True)
class WorkerTopics:
    """Topics one worker reads and writes (``model-updated`` is always the shared one).

    Attributes
    ----------
    customers, scores, alerts, dead_letters, drift : str
        Topic names; by default those of :class:`schemas.topics.Topics`.
    """

    customers: str = Topics.CUSTOMERS
    scores: str = Topics.SCORES
    alerts: str = Topics.ALERTS
    dead_letters: str = Topics.CUSTOMERS_DLQ
    drift: str = Topics.DRIFT

    @classmethod
    def from_settings(cls, settings: Settings, namespace: Namespace | None = None) -> WorkerTopics:
        """The namespace's topics, each with ``settings.topic_suffix`` appended (benchmarks use one).

        Parameters
        ----------
        settings : Settings
        namespace : Namespace, optional
            Default: the namespace of ``settings.dataset`` (:func:`plumbing.clients.served_dataset`).

        Returns
        -------
        WorkerTopics
        """
        ns = namespace or served_dataset(settings)[1]
        suffix = settings.topic_suffix
        return cls(*(name + suffix for name in (ns.customers, ns.scores, ns.alerts, ns.customers_dlq, ns.drift)))


def ensure_worker_topics(settings: Settings, topics: WorkerTopics) -> None:
    """Create missing worker topics with the partitions of their unsuffixed names (idempotent, blocking).

    Parameters
    ----------
    settings : Settings
    topics : WorkerTopics
        Usually suffixed (benchmarks, tests); the unsuffixed ones exist after
        :func:`plumbing.clients.ensure_topics` already.
    """
    partitions = topic_partitions(settings, Namespace.for_dataset())  # by role: Telco's names are the roles
    wanted = {
        topics.customers: partitions[Topics.CUSTOMERS],
        topics.scores: partitions[Topics.SCORES],
        topics.alerts: partitions[Topics.ALERTS],
        topics.dead_letters: partitions[Topics.CUSTOMERS_DLQ],
        topics.drift: partitions[Topics.DRIFT],
    }
    asyncio.run(create_missing_topics(settings, wanted))
