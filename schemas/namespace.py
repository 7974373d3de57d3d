"""Per-dataset namespaces: topic names, registered model names and consumer group of one dataset.

Every dataset profile gets its own names, so two datasets trained, served and scored on one
stack never touch each other's topics, champions or committed offsets. The default dataset
(``telco``) keeps the historical names (``customers``, ``churn-classifier``, ``churn-scorer``),
so existing deployments, topics and registered models keep working unchanged; any other
dataset ``NAME`` gets ``NAME.customers``, ``NAME-churn-classifier``, ``churn-scorer-NAME`` and
so on. S3 objects already live under ``<bucket>/<dataset>/...``. Pure naming, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.registry import CLASSIFIER_NAME, REGRESSOR_NAME
from schemas.topics import Topics

#: The dataset the product serves when none is named (``CHURN_DATASET``, ``--dataset``).
DEFAULT_DATASET = "telco"

#: A dataset name usable in topic names, registered model names and S3 keys
#: (the same pattern as a profile's ``name``).
_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Namespace:
    """The names one dataset's events, models and consumers use.

    Build it with :meth:`for_dataset`; the attributes are plain strings.

    Attributes
    ----------
    dataset : str
        The profile's name.
    customers, scores, alerts, model_updated, customers_dlq, drift : str
        Topic names (see :class:`schemas.topics.Topics` for what each carries).
    classifier_name, regressor_name : str
        Registered MLflow model names of the churn classifier and the customer-value regressor.
    consumer_group : str
        Kafka consumer group of the dataset's scoring workers.
    """

    dataset: str
    customers: str
    scores: str
    alerts: str
    model_updated: str
    customers_dlq: str
    drift: str
    classifier_name: str
    regressor_name: str
    consumer_group: str

    @classmethod
    def for_dataset(cls, dataset: str = DEFAULT_DATASET, base_group: str = "churn-scorer") -> Namespace:
        """The namespace of ``dataset``.

        Parameters
        ----------
        dataset : str, default "telco"
            A dataset profile's name (lower-case letters, digits, ``_`` and ``-``; at most 40).
        base_group : str, default "churn-scorer"
            The configured consumer group (``CHURN_CONSUMER_GROUP``); other datasets append
            ``-<dataset>`` to it.

        Returns
        -------
        Namespace

        Raises
        ------
        ValueError
            If ``dataset`` is not a valid dataset name.
        """
        if not _DATASET_NAME.match(dataset):
            raise ValueError(
                f"dataset: expected a name of lower-case letters, digits, '_' or '-' (at most 40), got {dataset!r}"
            )
        if dataset == DEFAULT_DATASET:
            return cls(
                dataset=dataset,
                customers=Topics.CUSTOMERS,
                scores=Topics.SCORES,
                alerts=Topics.ALERTS,
                model_updated=Topics.MODEL_UPDATED,
                customers_dlq=Topics.CUSTOMERS_DLQ,
                drift=Topics.DRIFT,
                classifier_name=CLASSIFIER_NAME,
                regressor_name=REGRESSOR_NAME,
                consumer_group=base_group,
            )
        return cls(
            dataset=dataset,
            customers=f"{dataset}.{Topics.CUSTOMERS}",
            scores=f"{dataset}.{Topics.SCORES}",
            alerts=f"{dataset}.{Topics.ALERTS}",
            model_updated=f"{dataset}.{Topics.MODEL_UPDATED}",
            customers_dlq=f"{dataset}.{Topics.CUSTOMERS_DLQ}",
            drift=f"{dataset}.{Topics.DRIFT}",
            classifier_name=f"{dataset}-{CLASSIFIER_NAME}",
            regressor_name=f"{dataset}-{REGRESSOR_NAME}",
            consumer_group=f"{base_group}-{dataset}",
        )

    def topics(self) -> list[str]:
        """Every topic of the namespace, in the order of :meth:`schemas.topics.Topics.all`."""
        return [self.customers, self.scores, self.alerts, self.model_updated, self.customers_dlq, self.drift]

    def registered_models(self) -> tuple[str, str]:
        """Registered model names, classifier first."""
        return (self.classifier_name, self.regressor_name)
