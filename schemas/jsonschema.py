"""JSON Schema export: one document per topic of a data set's namespace, generated from the pydantic contracts."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.events import (
    ChurnAlert,
    DeadLetter,
    DriftRecord,
    ModelUpdatedEvent,
    ScoreEvent,
    customer_event_model,
)
from schemas.namespace import Namespace
from schemas.profiles import TELCO, DatasetProfile


def topic_schemas(profile: DatasetProfile = TELCO) -> dict[str, type[BaseModel]]:
    """The contract of each topic's record values in ``profile``'s namespace.

    Parameters
    ----------
    profile : DatasetProfile, default Telco
        Its customer events are :func:`~schemas.events.customer_event_model`'s; topic names
        are :meth:`~schemas.namespace.Namespace.for_dataset`'s.

    Returns
    -------
    dict of str to pydantic model class
        Topic name -> the model of its record values, in :meth:`Namespace.topics` order.
    """
    ns = Namespace.for_dataset(profile.name)
    return {
        ns.customers: customer_event_model(profile),
        ns.scores: ScoreEvent,
        ns.alerts: ChurnAlert,
        ns.model_updated: ModelUpdatedEvent,
        ns.customers_dlq: DeadLetter,
        ns.drift: DriftRecord,
    }


#: The contract of each Telco topic's record values.
TOPIC_SCHEMAS: dict[str, type[BaseModel]] = topic_schemas(TELCO)


def json_schema_for(topic: str, profile: DatasetProfile = TELCO) -> dict:
    """JSON Schema (draft 2020-12) of ``topic``'s record values in ``profile``'s namespace.

    Raises
    ------
    KeyError
        If the topic is not one of the namespace's.
    """
    schema = topic_schemas(profile)[topic].model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:churn-stream:topic:{topic}"
    if topic == Namespace.for_dataset(profile.name).customers:
        # The contract hash a model artifact records: which events a champion can score.
        schema["x-contract-sha256"] = profile.digest
        schema["x-dataset"] = profile.name
    return schema


def export_json_schemas(directory: str | Path, profile: DatasetProfile = TELCO) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic of ``profile``'s namespace into ``directory``.

    Parameters
    ----------
    directory : str or Path
        Created when missing.
    profile : DatasetProfile, default Telco

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    OSError
        If the directory cannot be created or written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in topic_schemas(profile):
        path = out / f"{topic}.schema.json"
        path.write_text(json.dumps(json_schema_for(topic, profile), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
