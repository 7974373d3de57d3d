"""The model store: the champion in service, loaded at start and swapped atomically on updates.

The worker reads :attr:`ModelStore.current` once per micro-batch, so a swap takes
effect between micro-batches and no batch is scored by a half-loaded model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from churn_stream.artifacts import download_pipeline
from schemas.events import ModelUpdatedEvent
from schemas.topics import Topics
from scratch_models.pipeline import ScoringPipeline
from stream_app.scoring import LoadedModel

logger = logging.getLogger(__name__)

CLASSIFIER_NAME = "churn-classifier"


class ModelStore:
    """Holds the champion ``LoadedModel`` and applies model-updated events.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking server (registry and artifact proxy).
    expected_features : sequence of str, optional
        Raw columns the stream provides; a model needing others is refused.
    downloader : callable, optional
        ``(tracking_uri, artifact_uri, sha256) -> ScoringPipeline``; defaults to
        :func:`churn_stream.artifacts.download_pipeline`.
    """

    def __init__(self, tracking_uri: str, expected_features: list[str] | None = None,
                 downloader: Callable[[str, str, str], ScoringPipeline] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.expected_features = set(expected_features) if expected_features else None
        self._download = downloader or download_pipeline
        self.current: LoadedModel | None = None
        self.ready = asyncio.Event()
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_error: str | None = None

    def _check_and_warm(self, pipeline: ScoringPipeline) -> None:
        if self.expected_features is not None:
            missing = set(pipeline.feature_names_in) - self.expected_features
            if missing:
                raise ValueError(f"model needs features the stream does not provide: {sorted(missing)}")
        # Warm-up: one synthetic row through the whole pipeline catches a broken artifact
        # before it serves traffic.
        cols = {}
        pre = pipeline.preprocessor
        for name, med in zip(pre.numeric_features, pre.median_):
            cols[name] = np.array([med])
        for name, cats in zip(pre.categorical_features, pre.categories_):
            cols[name] = np.array([cats[0]])
        p = pipeline.predict_proba(cols)
        if not (p.shape == (1,) and np.isfinite(p).all()):
            raise ValueError("warm-up produced an invalid probability")

    def install(self, pipeline: ScoringPipeline, model_name: str, model_version: str) -> None:
        """Check, warm up and swap in a pipeline (raises and keeps the old one on failure)."""
        self._check_and_warm(pipeline)
        self.current = LoadedModel(pipeline, model_name, model_version)
        self.ready.set()
        logger.info("model in service model=%s model_version=%s threshold=%.3f",
                    model_name, model_version, pipeline.threshold)

    def load_champion(self, model_name: str = CLASSIFIER_NAME) -> bool:
        """Load the registry's ``champion`` (blocking). Returns False when there is none yet."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        try:
            mv = client.get_model_version_by_alias(model_name, "champion")
        except MlflowException:
            return False
        uri = f"runs:/{mv.run_id}/{mv.tags.get('artifact_path', 'model/pipeline.npz')}"
        pipeline = self._download(self.tracking_uri, uri, mv.tags["sha256"])
        self.install(pipeline, model_name, str(mv.version))
        return True

    async def apply_update(self, event: ModelUpdatedEvent) -> bool:
        """Download, verify, warm up and swap in an announced champion.

        Returns True when swapped in; on any failure keeps the model in service,
        logs why, counts it in :attr:`reloads_failed` and returns False.
        """
        if event.alias != "champion" or event.model_name != CLASSIFIER_NAME:
            return False
        if self.current is not None and self.current.model_version == event.model_version:
            return False
        try:
            pipeline = await asyncio.to_thread(self._download, self.tracking_uri, event.artifact_uri, event.sha256)
            await asyncio.to_thread(self._check_and_warm, pipeline)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model
            self.reloads_failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error("model reload refused model=%s model_version=%s error=%s",
                         event.model_name, event.model_version, self.last_error)
            return False
        self.install(pipeline, event.model_name, event.model_version)
        self.reloads_ok += 1
        return True


async def _handle_update(store: ModelStore, message) -> None:  # noqa: ANN001 - aiokafka ConsumerRecord
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

    Reads ``model-updated`` outside any consumer group, so every worker and API
    process sees every announcement. The read position is fixed at the end of the
    topic *before* the registry is asked for the champion, so an announcement made
    in between is not missed.
    """
    from aiokafka import AIOKafkaConsumer

    from churn_stream.clients import kafka_kwargs

    consumer = AIOKafkaConsumer(Topics.MODEL_UPDATED, **kafka_kwargs(settings), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        while store.current is None:
            if await asyncio.to_thread(store.load_champion):
                break
            logger.info("no champion registered yet; waiting for a model-updated event")
            batch = await consumer.getmany(timeout_ms=2000)
            for msgs in batch.values():
                for m in msgs:
                    await _handle_update(store, m)
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                for m in msgs:
                    await _handle_update(store, m)
    finally:
        await consumer.stop()
