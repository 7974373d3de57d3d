"""Following ``model-updated`` and the registry: the task that keeps a :class:`ModelStore` current.

Every worker and API process runs :func:`follow_model_updates` next to its store. Announcements
are hints that make the store ask the registry at once (:meth:`ModelStore.apply_update`); the
registry check (:meth:`ModelStore.reconcile`) runs every ``CHURN_MODEL_RECONCILE_S`` seconds,
and sooner after an announcement the registry could not confirm.
"""

from __future__ import annotations

import asyncio
import logging

from schemas.events import ModelUpdatedEvent
from schemas.topics import Topics
from stream_app.model_store import ModelStore

logger = logging.getLogger(__name__)


async def _handle_update(store: ModelStore, message) -> None:  # aiokafka ConsumerRecord
    try:
        event = ModelUpdatedEvent.model_validate_json(message.value)
    except Exception as exc:  # noqa: BLE001 - a bad announcement must not stop the service
        store.reloads_failed += 1
        store.last_error = f"invalid model-updated event at offset {message.offset}: {exc}"
        logger.error("%s", store.last_error)
        return
    await store.apply_update(event)


async def follow_model_updates(settings, store: ModelStore) -> None:
    """Load the champion and then apply every model-updated event, forever.

    Reads the data set's ``model-updated`` topic (and the shared one, where cycles of every
    data set may announce; the store ignores other data sets' model names) outside any
    consumer group, so every worker and API process sees every announcement. The read
    position is fixed at the end of the topic *before* the registry is asked for the champion, so an announcement made
    in between is not missed. Every ``settings.model_reconcile_s`` seconds the
    registry's aliases are compared with the models held (:meth:`ModelStore.reconcile`).
    """
    from aiokafka import AIOKafkaConsumer

    from plumbing.clients import kafka_kwargs

    topics = sorted({store.namespace.model_updated, Topics.MODEL_UPDATED})
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        while store.current is None:
            if await store.load_champion_async():
                break
            logger.info("no champion registered yet; waiting for a model-updated event")
            batch = await consumer.getmany(timeout_ms=2000)
            for msgs in batch.values():
                for m in msgs:
                    await _handle_update(store, m)
        if store.value_models or store.challengers:
            await asyncio.to_thread(store.load_secondary)
        # A task of its own: with MLflow down its client retries for minutes, and announcements
        # must not wait for that.
        checker = asyncio.create_task(_reconcile_forever(store, max(1.0, settings.model_reconcile_s)))
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    for m in msgs:
                        await _handle_update(store, m)
        finally:
            checker.cancel()
    finally:
        await consumer.stop()


async def _reconcile_forever(store: ModelStore, interval_s: float) -> None:
    """:meth:`ModelStore.reconcile` every ``interval_s`` seconds, and sooner when asked, for ever.

    :meth:`ModelStore.recheck_later` (an announcement the registry could not confirm) brings the
    next check forward; while the registry stays unreachable, such a check is repeated every
    :data:`~stream_app.model_store.RECHECK_S` seconds until it answers.
    """
    while True:
        try:
            await asyncio.wait_for(store.recheck.wait(), interval_s)
        except TimeoutError:
            pass
        early = store.take_recheck()
        try:
            swapped = await store.reconcile()
        except Exception as exc:  # noqa: BLE001 - the registry unreachable: keep serving, try again later
            logger.warning("registry check failed error=%s", f"{type(exc).__name__}: {exc}"[:200])
            if early:
                store.recheck_later()
            continue
        if early:
            logger.info(
                "registry checked again after an announcement it could not confirm; swapped: %s",
                ", ".join(swapped) or "nothing (the models in service are the registry's)",
            )
