"""AsyncAPI 3.0 document of the Kafka topics, generated from the event contracts.

One channel per topic of :class:`~schemas.topics.Topics`; each message's payload is the
JSON Schema of the topic's pydantic contract (the same models and mode as
:func:`schemas.jsonschema.json_schema_for`, with the shared definitions moved to
``components/schemas`` so references resolve inside one document). Kafka bindings give
each topic's partitions and each message's key. Operations say which service sends or
receives what. ``churn schemas asyncapi`` writes it. Pure code, no I/O: partition
counts, the broker address and the workers' consumer group come in as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from schemas.events import SCHEMA_VERSION
from schemas.jsonschema import topic_schemas
from schemas.namespace import Namespace
from schemas.profiles import TELCO, DatasetProfile, get_profile
from schemas.topics import Topics

#: The AsyncAPI version the document follows.
ASYNCAPI_VERSION = "3.0.0"
#: The Kafka bindings version used (the latest the AsyncAPI 3.0.0 schema knows).
KAFKA_BINDING_VERSION = "0.5.0"


@dataclass(frozen=True)
class _Key:
    """A message key: what it holds and an example."""

    description: str
    example: str
    nullable: bool = False


_CUSTOMER_KEY = _Key("The customer id (UTF-8), so one customer's events stay in order on one partition.", "7590-VHVEG")
_MODEL_KEY = _Key("The registered model name (UTF-8).", "churn-classifier")

#: Each topic: a title, what it carries, and its record key.
_TOPICS: dict[str, tuple[str, str, _Key]] = {
    Topics.CUSTOMERS: (
        "Customer events",
        "Customer records to score, one event per customer change (`churn produce`, or any producer).",
        _CUSTOMER_KEY,
    ),
    Topics.SCORES: (
        "Churn scores",
        "One score per customer event; `event_id` is the scored event's, so duplicates are recognisable.",
        _Key("The scored customer event's key: the customer id (UTF-8).", "7590-VHVEG"),
    ),
    Topics.ALERTS: (
        "Churn alerts",
        "Customers at or above the champion's threshold, with the features that pushed their score up "
        "and the value at risk.",
        _Key("The scored customer event's key: the customer id (UTF-8).", "7590-VHVEG"),
    ),
    Topics.MODEL_UPDATED: (
        "Model updates",
        "A registered model version is ready: workers and the API download it, verify its sha256 and swap it in.",
        _MODEL_KEY,
    ),
    Topics.CUSTOMERS_DLQ: (
        "Dead letters",
        "Customer events that could not be decoded, validated or featurised, with their original bytes and "
        "coordinates (`churn dlq replay` re-sends them).",
        _Key(
            "The original record's key (the customer id when its producer set one); null when it had none.",
            "7590-VHVEG",
            nullable=True,
        ),
    ),
    Topics.DRIFT: (
        "Input drift",
        "Per-feature PSI of a worker's last events against the champion's training data, published every "
        "minute; `alert` is true above the threshold (0.25).",
        _MODEL_KEY,
    ),
}


@dataclass(frozen=True)
class _Operation:
    action: str  # "send" or "receive"
    topic: str
    service: str
    summary: str


#: Who sends and who receives each topic's records.
_OPERATIONS: dict[str, _Operation] = {
    "produceCustomers": _Operation("send", Topics.CUSTOMERS, "producer", "`churn produce` sends customer events."),
    "scoreCustomers": _Operation(
        "receive", Topics.CUSTOMERS, "worker", "The scoring worker receives customer events in micro-batches."
    ),
    "sendScores": _Operation("send", Topics.SCORES, "worker", "The worker sends one score per customer event."),
    "sendAlerts": _Operation("send", Topics.ALERTS, "worker", "The worker sends customers at or above the threshold."),
    "sendDeadLetters": _Operation("send", Topics.CUSTOMERS_DLQ, "worker", "The worker dead-letters bad input."),
    "sendDrift": _Operation("send", Topics.DRIFT, "worker", "The worker sends its input-drift record every minute."),
    "announceModel": _Operation(
        "send", Topics.MODEL_UPDATED, "batch", "A batch cycle announces each newly promoted champion."
    ),
    "followModelUpdatesWorker": _Operation(
        "receive", Topics.MODEL_UPDATED, "worker", "The worker swaps announced champions in without a restart."
    ),
    "followModelUpdatesApi": _Operation(
        "receive", Topics.MODEL_UPDATED, "api", "The prediction API swaps announced champions in as well."
    ),
    "watchScores": _Operation("receive", Topics.SCORES, "dashboard", "The dashboard shows scores live."),
    "watchAlerts": _Operation("receive", Topics.ALERTS, "dashboard", "The dashboard shows alerts live."),
    "replayDeadLetters": _Operation(
        "receive", Topics.CUSTOMERS_DLQ, "dlq-replay", "`churn dlq replay` reads dead letters to re-send them."
    ),
}


def _move_refs(schema: Any) -> Any:
    """``schema`` with every ``#/$defs/X`` reference pointing at ``#/components/schemas/X``."""
    if isinstance(schema, dict):
        return {
            k: (
                "#/components/schemas/" + v[len("#/$defs/") :]
                if k == "$ref" and v.startswith("#/$defs/")
                else _move_refs(v)
            )
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_move_refs(v) for v in schema]
    return schema


def _add_schema(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """Put ``schema`` under ``name``; a name two contracts share must mean the same schema."""
    if name in components and components[name] != schema:
        raise ValueError(f"two different schemas named {name!r}")
    components[name] = schema


def _payload_schemas(model: type[BaseModel], components: dict[str, Any]) -> str:
    """Add ``model``'s JSON Schema and its definitions to ``components``; return its name."""
    schema = _move_refs(model.model_json_schema(mode="serialization"))
    for name, sub in schema.pop("$defs", {}).items():
        _add_schema(components, name, sub)
    _add_schema(components, model.__name__, schema)
    return model.__name__


def _profile(dataset: DatasetProfile | str) -> DatasetProfile:
    """``dataset`` as a profile: a :class:`DatasetProfile`, a shipped name or a profile file."""
    if isinstance(dataset, DatasetProfile):
        return dataset
    try:
        return get_profile(dataset)
    except KeyError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else f"unknown dataset {dataset!r}") from None


def topic_contracts(dataset: DatasetProfile | str = TELCO) -> dict[str, type[BaseModel]]:
    """The pydantic contract of each topic's record values for ``dataset``.

    The contracts are :func:`schemas.jsonschema.topic_schemas`' (the customer events are
    generated from the profile), keyed by the base topic names of :class:`Topics`.

    Parameters
    ----------
    dataset : DatasetProfile or str, default Telco
        A profile, a shipped profile's name or a profile file.

    Returns
    -------
    dict of str to pydantic model class
        Base topic name -> contract, in :meth:`Topics.all` order.

    Raises
    ------
    ValueError
        For an unknown dataset name; the message names the known ones.
    """
    by_address = topic_schemas(_profile(dataset))  # in Namespace.topics() order, which is Topics.all()'s
    return dict(zip(Topics.all(), by_address.values()))


def _servers(bootstrap_servers: str | None) -> dict[str, Any]:
    """One ``kafka`` server per bootstrap address."""
    hosts = [h.strip() for h in (bootstrap_servers or "").split(",") if h.strip()]
    return {
        f"broker{i}": {"host": host, "protocol": "kafka", "description": "A Kafka bootstrap server."}
        for i, host in enumerate(hosts)
    }


def _key_schema(key: _Key) -> dict[str, Any]:
    return {
        "type": ["string", "null"] if key.nullable else "string",
        "description": key.description,
        "examples": [key.example],
    }


def asyncapi_document(
    dataset: DatasetProfile | str = TELCO,
    partitions: Mapping[str, int] | None = None,
    bootstrap_servers: str | None = None,
    consumer_group: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic.

    Parameters
    ----------
    dataset : DatasetProfile or str, default Telco
        Whose customer contract the ``customers`` messages carry (:func:`topic_contracts`);
        the channel addresses are its topic names (:class:`~schemas.namespace.Namespace`).
    partitions : mapping of str to int, optional
        Partition count per base topic name (``plumbing.clients.topic_partitions``); topics
        missing from it get no ``partitions`` in their channel binding.
    bootstrap_servers : str, optional
        ``host:port[,host:port...]`` of the brokers: one ``kafka`` server per address.
        Without it the document has no ``servers``.
    consumer_group : str, optional
        The configured consumer group (``CHURN_CONSUMER_GROUP``); the dataset's scoring
        workers' group, derived from it, is stated on their receive operation.

    Returns
    -------
    dict
        JSON-able AsyncAPI 3.0.0 document.

    Raises
    ------
    ValueError
        For an unknown dataset name.
    """
    profile = _profile(dataset)
    contracts = topic_contracts(profile)
    # The dataset's own topic names (schemas.namespace); channel ids stay the base names.
    namespace = Namespace.for_dataset(profile.name, base_group=consumer_group or "churn-scorer")
    addresses = dict(zip(Topics.all(), namespace.topics()))
    partitions = partitions or {}
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for topic, model in contracts.items():
        title, description, key = _TOPICS[topic]
        name = _payload_schemas(model, schemas)
        if topic == Topics.CUSTOMERS:  # as schemas.jsonschema.json_schema_for: the contract a champion serves
            schemas[name]["x-contract-sha256"] = profile.digest
            schemas[name]["x-dataset"] = profile.name
        messages[name] = {
            "name": name,
            "title": title,
            "summary": (model.__doc__ or title).strip().splitlines()[0].replace("``", "`"),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": {"key": _key_schema(key), "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        binding: dict[str, Any] = {"topic": addresses[topic], "bindingVersion": KAFKA_BINDING_VERSION}
        if topic in partitions:
            binding["partitions"] = int(partitions[topic])
        channels[topic] = {
            "address": addresses[topic],
            "title": title,
            "description": description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": binding},
        }
    operations: dict[str, Any] = {}
    for op_id, op in _OPERATIONS.items():
        (message_name,) = channels[op.topic]["messages"]
        operation: dict[str, Any] = {
            "action": op.action,
            "channel": {"$ref": f"#/channels/{op.topic}"},
            "summary": op.summary,
            "messages": [{"$ref": f"#/channels/{op.topic}/messages/{message_name}"}],
            "tags": [{"name": op.service}],
        }
        if op_id == "scoreCustomers" and consumer_group:
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [namespace.consumer_group]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        operations[op_id] = operation
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "churn-stream topics",
            "version": str(SCHEMA_VERSION),
            "description": "Customer events in, churn scores, alerts, dead letters and drift out, and model "
            f"announcements, as JSON on Kafka. Dataset: {profile.name}. Every record carries `event_id`, "
            "`event_time` (UTC) and `schema_version`.",
            "tags": [{"name": s} for s in sorted({op.service for op in _OPERATIONS.values()})],
        },
        "defaultContentType": "application/json",
        "servers": _servers(bootstrap_servers),
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
    if not doc["servers"]:
        del doc["servers"]
    return doc
