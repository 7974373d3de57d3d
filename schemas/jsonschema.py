"""JSON Schema export: one document per topic, generated from the pydantic contracts."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.events import ChurnAlert, CustomerEvent, DeadLetter, DriftRecord, ModelUpdatedEvent, ScoreEvent
from schemas.topics import Topics

#: The contract of each topic's record values.
TOPIC_SCHEMAS: dict[str, type[BaseModel]] = {
    Topics.CUSTOMERS: CustomerEvent,
    Topics.SCORES: ScoreEvent,
    Topics.ALERTS: ChurnAlert,
    Topics.MODEL_UPDATED: ModelUpdatedEvent,
    Topics.CUSTOMERS_DLQ: DeadLetter,
    Topics.DRIFT: DriftRecord,
}


def json_schema_for(topic: str) -> dict:
    """JSON Schema (draft 2020-12) of ``topic``'s record values.

    Raises
    ------
    KeyError
        If the topic is not one of :class:`~schemas.topics.Topics`.
    """
    schema = TOPIC_SCHEMAS[topic].model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:churn-stream:topic:{topic}"
    return schema


def export_json_schemas(directory: str | Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``directory``; return the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in TOPIC_SCHEMAS:
        path = out / f"{topic}.schema.json"
        path.write_text(json.dumps(json_schema_for(topic), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
