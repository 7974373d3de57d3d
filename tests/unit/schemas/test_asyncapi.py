"""``churn schemas asyncapi``: a valid AsyncAPI 3.0 document whose messages are the topic contracts.

Validated against the official AsyncAPI 3.0.0 JSON Schema, vendored in ``asyncapi/``
(source, commit and licence in ``asyncapi/LICENSE``); it includes the Kafka binding
schemas, so partitions and keys are checked too.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from churn_stream.cli import main
from plumbing.clients import topic_partitions
from plumbing.settings import Settings
from schemas.asyncapi import asyncapi_document, topic_contracts
from schemas.http import EXAMPLE_CUSTOMER
from schemas.jsonschema import json_schema_for
from schemas.topics import Topics

ASYNCAPI_SCHEMA = Path(__file__).resolve().parent / "asyncapi" / "3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    # The bundled schema carries every definition it references under its own $id.
    registry: Registry = Registry().with_resources(
        (d["$id"], Resource.from_contents(d, default_specification=DRAFT7)) for d in schema["definitions"].values()
    )
    return jsonschema.Draft7Validator(schema, registry=registry)


@pytest.fixture(scope="module")
def doc() -> dict:
    settings = Settings()
    return asyncapi_document(
        "telco", topic_partitions(settings), settings.kafka_bootstrap_servers, settings.consumer_group
    )


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300] for e in validator.iter_errors(doc)]


def _resolve(doc: dict, ref: str):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _inline(node, root: dict, prefix: str):
    """``node`` with every ``$ref`` starting with ``prefix`` replaced by its target (recursively)."""
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith(prefix):
            return _inline(_resolve(root, node["$ref"]), root, prefix)
        return {k: _inline(v, root, prefix) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, root, prefix) for v in node]
    return node


def test_document_is_valid_asyncapi_3(validator, doc):
    assert doc["asyncapi"] == "3.0.0"
    assert _errors(validator, doc) == []


def test_the_validator_does_check_the_document_and_its_kafka_bindings(validator, doc):
    assert _errors(validator, {**doc, "asyncapi": "2.6.0"})
    bad = json.loads(json.dumps(doc))
    bad["channels"][Topics.CUSTOMERS]["bindings"]["kafka"]["partitions"] = 0  # the binding says minimum 1
    assert _errors(validator, bad)
    bad = json.loads(json.dumps(doc))
    bad["components"]["messages"]["CustomerEvent"]["bindings"]["kafka"]["keyy"] = {"type": "string"}
    assert _errors(validator, bad)


def test_every_reference_resolves(doc):
    refs = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs and all(r.startswith("#/") for r in refs)
    for ref in refs:
        _resolve(doc, ref)  # KeyError if dangling


def test_one_channel_per_topic_with_its_contract_as_payload(doc):
    assert [c["address"] for c in doc["channels"].values()] == Topics.all()
    for topic in Topics.all():
        (message_ref,) = doc["channels"][topic]["messages"].values()
        payload = _inline(_resolve(doc, message_ref["$ref"])["payload"], doc, "#/components/schemas/")
        exported = json_schema_for(topic)
        exported = _inline({k: v for k, v in exported.items() if k not in ("$schema", "$id")}, exported, "#/$defs/")
        exported.pop("$defs", None)
        assert payload == exported, topic


def test_partitions_and_keys(doc):
    partitions = topic_partitions(Settings())
    for topic in Topics.all():
        assert doc["channels"][topic]["bindings"]["kafka"]["partitions"] == partitions[topic]
    assert doc["channels"][Topics.CUSTOMERS]["bindings"]["kafka"]["partitions"] == 4
    messages = doc["components"]["messages"]
    for topic in (Topics.CUSTOMERS, Topics.SCORES, Topics.ALERTS):
        key = messages[topic_contracts()[topic].__name__]["bindings"]["kafka"]["key"]
        assert key["type"] == "string" and "customer id" in key["description"] and key["examples"] == ["7590-VHVEG"]
    assert messages["DeadLetter"]["bindings"]["kafka"]["key"]["type"] == ["string", "null"]
    assert "model name" in messages["ModelUpdatedEvent"]["bindings"]["kafka"]["key"]["description"]


def test_operations_say_who_sends_and_receives(doc):
    def ops(service: str, action: str) -> set[str]:
        return {
            _resolve(doc, op["channel"]["$ref"])["address"]
            for op in doc["operations"].values()
            if op["action"] == action and op["tags"] == [{"name": service}]
        }

    assert ops("worker", "receive") == {Topics.CUSTOMERS, Topics.MODEL_UPDATED}
    assert ops("worker", "send") == {Topics.SCORES, Topics.ALERTS, Topics.CUSTOMERS_DLQ, Topics.DRIFT}
    assert ops("batch", "send") == {Topics.MODEL_UPDATED}
    assert ops("api", "receive") == {Topics.MODEL_UPDATED}
    (score,) = [op for op in doc["operations"].values() if op.get("bindings")]
    assert score["bindings"]["kafka"]["groupId"]["enum"] == [Settings().consumer_group]
    for op in doc["operations"].values():  # an operation's messages are its channel's
        channel = op["channel"]["$ref"]
        assert all(m["$ref"].startswith(channel + "/messages/") for m in op["messages"])


def test_a_customer_event_validates_against_its_message_payload(doc):
    payload = {"$ref": "#/components/schemas/CustomerEvent", "components": doc["components"]}
    event = {**EXAMPLE_CUSTOMER, "event_id": "e-1", "event_time": "2026-03-02T09:15:00Z", "schema_version": 1}
    jsonschema.Draft7Validator(payload).validate(event)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(payload).validate({**event, "tenure_months": "twelve"})


def test_cli_writes_json_and_yaml(tmp_path, validator, doc):
    runner = CliRunner()
    result = runner.invoke(main, ["schemas", "asyncapi", "--out", str(tmp_path / "topics.json")], env={})
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "topics.json").read_text())
    assert written == doc and _errors(validator, written) == []
    result = runner.invoke(
        main, ["schemas", "asyncapi", "--dataset", "telco", "--out", str(tmp_path / "t.yaml")], env={}
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "t.yaml").read_text()) == doc
    result = runner.invoke(main, ["schemas", "asyncapi"], env={})
    assert result.exit_code == 0 and json.loads(result.output) == doc


def test_cli_unknown_dataset_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["schemas", "asyncapi", "--dataset", "nope", "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: unknown dataset 'nope'; known: ") and "'retail'" in line and "'telco'" in line
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ValueError, match="unknown dataset"):
        topic_contracts("nope")


def test_another_dataset_gets_its_own_topic_names_and_contract(validator):
    from schemas.events import customer_event_model
    from schemas.namespace import Namespace
    from schemas.profiles import RETAIL

    doc = asyncapi_document("retail", topic_partitions(Settings()), consumer_group="churn-scorer")
    namespace = Namespace.for_dataset("retail")
    assert [c["address"] for c in doc["channels"].values()] == namespace.topics()
    assert [c["bindings"]["kafka"]["topic"] for c in doc["channels"].values()] == namespace.topics()
    assert doc["operations"]["scoreCustomers"]["bindings"]["kafka"]["groupId"]["enum"] == [namespace.consumer_group]
    customers = doc["components"]["schemas"][customer_event_model(RETAIL).__name__]
    assert customers["x-dataset"] == "retail" and customers["x-contract-sha256"] == RETAIL.digest
    assert set(RETAIL.source_columns.values()) - {RETAIL.classification_target} <= set(customers["properties"])
    assert _errors(validator, doc) == []


def test_cli_dataset_defaults_to_the_configured_one():
    from schemas.namespace import Namespace

    result = CliRunner().invoke(main, ["schemas", "asyncapi"], env={"CHURN_DATASET": "retail"})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [c["address"] for c in doc["channels"].values()] == Namespace.for_dataset("retail").topics()
