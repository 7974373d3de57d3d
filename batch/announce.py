"""Publishing model-updated events once a version is ready in the registry."""

from __future__ import annotations

import logging
from typing import Any

from schemas.events import ModelUpdatedEvent, new_event_id, utc_now
from schemas.topics import Topics

logger = logging.getLogger(__name__)


def model_updated_event(registered: dict[str, Any]) -> ModelUpdatedEvent:
    """The event announcing a registered version.

    See :func:`batch.promotion.register_version` and :func:`batch.promotion.promote`.
    """
    return ModelUpdatedEvent(
        event_id=new_event_id(),
        event_time=utc_now(),
        model_name=registered["model_name"],
        model_version=registered["model_version"],
        alias=registered["alias"],
        artifact_uri=registered["artifact_uri"],
        sha256=registered["sha256"],
        feature_names=registered["feature_names"],
        run_id=registered.get("run_id"),
    )


def publish_model_updated(settings, registered: dict[str, Any], topic: str = Topics.MODEL_UPDATED) -> ModelUpdatedEvent:
    """Send the model-updated event and wait for the broker's acknowledgement.

    Parameters
    ----------
    settings : plumbing.settings.Settings
    registered : dict
        The promoted version (:func:`batch.promotion.promote`).
    topic : str, default "model-updated"
        The dataset's model-updated topic (:attr:`schemas.namespace.Namespace.model_updated`);
        created when missing.

    Returns
    -------
    ModelUpdatedEvent
    """
    import asyncio

    from plumbing.clients import create_missing_topics, produce_records

    event = model_updated_event(registered)
    # Only this topic: a cycle of one data set creates no other data set's topics (Telco's included).
    asyncio.run(create_missing_topics(settings, {topic: 1}))
    produce_records(settings, topic, [(event.model_name.encode(), event.model_dump_json().encode())])
    logger.info(
        "announced model=%s version=%s alias=%s topic=%s", event.model_name, event.model_version, event.alias, topic
    )
    return event
