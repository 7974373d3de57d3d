"""The model store: the champion in service, loaded at start and swapped atomically on updates.

The worker reads :attr:`ModelStore.current` once per micro-batch, so a swap takes
effect between micro-batches and no batch is scored by a half-loaded model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from plumbing.artifacts import ArtifactVerificationError, download_pipeline, version_artifact_uri
from schemas.events import ModelUpdatedEvent, contract_refusal, new_event_id, utc_now
from schemas.namespace import Namespace
from schemas.registry import CHALLENGER, CHAMPION, CLASSIFIER_NAME, REGRESSOR_NAME  # noqa: F401 - re-exported
from schemas.topics import Topics
from scratch_models.pipeline import ScoringPipeline
from stream_app.contract import TELCO_CONTRACT, EventContract
from stream_app.scoring import LoadedModel

logger = logging.getLogger(__name__)

#: Seconds before :meth:`ModelStore.reconcile` tries again a registry version it failed to load
#: (an unverifiable artifact is not downloaded every few seconds).
RECONCILE_RETRY_S = 300.0
#: Why a model was not served: the label of ``churn_model_refusals`` and ``model_refusals``.
REFUSAL_REASONS = ("contract", "features", "sha256", "error")


class ContractRefusedError(ValueError):
    """A model trained on another contract than the one served (its profile or contract hash differs)."""


def refusal_reason(exc: BaseException) -> str:
    """The :data:`REFUSAL_REASONS` label of a failed load or swap."""
    if isinstance(exc, ContractRefusedError):
        return "contract"
    if isinstance(exc, ArtifactVerificationError):
        return "sha256"
    if isinstance(exc, ValueError) and "features" in str(exc):
        return "features"
    return "error"


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
        :func:`plumbing.artifacts.download_pipeline`.
    value_models : bool, default False
        Also hold the ``sales-regressor`` champion in :attr:`value_model` (loaded,
        verified and swapped like the classifier) for value at risk on alerts.
    challengers : bool, default False
        Also hold the ``churn-classifier`` challenger in :attr:`challenger` (shadow scoring).
    contract : EventContract, optional
        The data set contract served. A model whose artifact records another contract
        (:func:`schemas.events.contract_refusal`) is refused, logged and counted in
        :attr:`refusals`; ``expected_features`` defaults to what the contract provides.
        Without one (tests of hand-built pipelines), Telco's events and no contract check.
    namespace : Namespace, optional
        Registered model names and the data set's ``model-updated`` topic (default: Telco's).

    Attributes
    ----------
    current : LoadedModel or None
        The churn-classifier champion in service.
    value_model : LoadedModel or None
        The sales-regressor champion, when ``value_models`` and one is registered.
    challenger : LoadedModel or None
        The churn-classifier challenger, when ``challengers`` and one is registered.
    refusals : dict of str to int
        Models not served, by :data:`REFUSAL_REASONS` label.
    """

    def __init__(
        self,
        tracking_uri: str,
        expected_features: list[str] | None = None,
        downloader: Callable[[str, str, str], ScoringPipeline] | None = None,
        value_models: bool = False,
        challengers: bool = False,
        contract: EventContract | None = None,
        namespace: Namespace | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.contract = contract
        self.namespace = namespace or Namespace.for_dataset(contract.name if contract else "telco")
        self.classifier_name = self.namespace.classifier_name
        self.regressor_name = self.namespace.regressor_name
        if expected_features is None and contract is not None:
            expected_features = sorted(contract.provides())
        self.expected_features = set(expected_features) if expected_features else None
        self.refusals: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self._download = downloader or download_pipeline
        self.value_models = value_models
        self.challengers = challengers
        self.current: LoadedModel | None = None
        self.value_model: LoadedModel | None = None
        self.challenger: LoadedModel | None = None
        self.ready = asyncio.Event()
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_error: str | None = None
        self._refused: dict[tuple[str, str, str], float] = {}  # (name, alias, version) -> when reconcile failed
        self._swapped_at = float("-inf")  # time.monotonic() of the last swap, whatever its source
        self._swap_lock = asyncio.Lock()  # announcements and registry checks swap one at a time

    def _check_and_warm(self, pipeline: ScoringPipeline) -> None:
        if self.contract is not None:
            reason = contract_refusal(pipeline.metadata, self.contract.profile)
            if reason is not None:
                raise ContractRefusedError(reason)
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
        if getattr(pipeline.model, "task", "classifier") == "regressor":
            p = pipeline.predict(cols)
            if not (p.shape == (1,) and np.isfinite(p).all()):
                raise ValueError("warm-up produced an invalid prediction")
            return
        p = pipeline.predict_proba(cols)
        if not (p.shape == (1,) and np.isfinite(p).all()):
            raise ValueError("warm-up produced an invalid probability")

    def install(self, pipeline: ScoringPipeline, model_name: str, model_version: str) -> None:
        """Check, warm up and swap in a pipeline (raises and keeps the old one on failure)."""
        self._check_and_warm(pipeline)
        self.current = LoadedModel(pipeline, model_name, model_version, self.contract or TELCO_CONTRACT)
        self._swapped_at = time.monotonic()
        self.ready.set()
        logger.info(
            "model in service model=%s model_version=%s threshold=%.3f", model_name, model_version, pipeline.threshold
        )

    def _slot(self, model_name: str, alias: str) -> str | None:
        """Attribute that holds ``model_name@alias`` in this store, or None if not followed."""
        if model_name == self.classifier_name and alias == CHAMPION:
            return "current"
        if model_name == self.regressor_name and alias == CHAMPION and self.value_models:
            return "value_model"
        if model_name == self.classifier_name and alias == CHALLENGER and self.challengers:
            return "challenger"
        return None

    def install_secondary(self, slot: str, pipeline: ScoringPipeline, model_name: str, model_version: str) -> None:
        """Check, warm up and swap in a value model or challenger (raises and keeps the old one)."""
        self._check_and_warm(pipeline)
        setattr(self, slot, LoadedModel(pipeline, model_name, model_version, self.contract or TELCO_CONTRACT))
        self._swapped_at = time.monotonic()
        logger.info("model in service role=%s model=%s model_version=%s", slot, model_name, model_version)

    def _alias_version(self, model_name: str, alias: str):  # mlflow ModelVersion or None
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        try:
            return client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            return None

    def _fetch_alias(self, model_name: str, alias: str) -> tuple[ScoringPipeline, str] | None:
        mv = self._alias_version(model_name, alias)
        if mv is None:
            return None
        return self._download(self.tracking_uri, version_artifact_uri(mv), mv.tags["sha256"]), str(mv.version)

    async def reconcile(self, now: float | None = None) -> list[str]:
        """Load what the registry's aliases name where it differs from what this store holds.

        Announcements on ``model-updated`` are the fast path; this is the safety net. It
        catches an announcement this process did not read (a broker replaced or wiped, a
        cycle that moved the alias but failed to announce) and an alias moved by hand in
        MLflow, e.g. to roll the champion back. A difference is applied exactly like an
        announcement (:meth:`apply_update`: downloaded, verified, warmed up, swapped in
        between micro-batches). A version that failed to load is retried after
        :data:`RECONCILE_RETRY_S`.

        Returns
        -------
        list of str
            ``"model_name@alias=version"`` of each swap made.
        """
        now = time.monotonic() if now is None else now
        swapped = []
        for model_name, alias in (
            (self.classifier_name, CHAMPION),
            (self.regressor_name, CHAMPION),
            (self.classifier_name, CHALLENGER),
        ):
            slot = self._slot(model_name, alias)
            if slot is None:
                continue
            asked_at = time.monotonic()
            mv = await asyncio.to_thread(self._alias_version, model_name, alias)
            if mv is None:
                continue
            key = (model_name, alias, str(mv.version))
            if now - self._refused.get(key, -RECONCILE_RETRY_S) < RECONCILE_RETRY_S:
                continue
            async with self._swap_lock:
                held = getattr(self, slot)
                if held is not None and held.model_version == str(mv.version):
                    continue
                if self._swapped_at >= asked_at:
                    continue  # an announcement swapped a model in since the registry was asked: ask next time
                logger.warning(
                    "registry names %s@%s version %s but version %s is in service here (announcement "
                    "missed, or alias moved by hand); loading it",
                    model_name,
                    alias,
                    mv.version,
                    held.model_version if held is not None else None,
                )
                event = ModelUpdatedEvent(
                    event_id=new_event_id(),
                    event_time=utc_now(),
                    model_name=model_name,
                    model_version=str(mv.version),
                    alias=alias,
                    artifact_uri=version_artifact_uri(mv),
                    sha256=mv.tags.get("sha256", ""),
                    run_id=mv.run_id,
                )
                if await self._apply(event):
                    swapped.append(f"{model_name}@{alias}={mv.version}")
                else:
                    self._refused[key] = now
        return swapped

    def refuse(self, exc: BaseException, model_name: str, model_version: str) -> None:
        """Count and log why a model is not served (the model in service, if any, stays)."""
        reason = refusal_reason(exc)
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        self.reloads_failed += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        logger.error(
            "model refused model=%s model_version=%s reason=%s dataset=%s error=%s",
            model_name,
            model_version,
            reason,
            self.namespace.dataset,
            self.last_error,
        )

    def load_champion(self, model_name: str | None = None) -> bool:
        """Load the registry's ``champion`` (blocking). Returns False when there is none yet.

        A champion this store refuses (another contract, missing features, a bad artifact)
        is logged and counted once per version (:meth:`refuse`) and not downloaded again
        while the alias still names it: False, as if there were none.
        """
        model_name = model_name or self.classifier_name
        mv = self._alias_version(model_name, CHAMPION)
        if mv is None:
            return False
        key = (model_name, CHAMPION, str(mv.version))
        if key in self._refused:
            return False
        try:
            pipeline = self._download(self.tracking_uri, version_artifact_uri(mv), mv.tags["sha256"])
            self.install(pipeline, model_name, str(mv.version))
        except Exception as exc:  # noqa: BLE001 - refused: keep waiting for a champion this store can serve
            self._refused[key] = time.monotonic()
            self.refuse(exc, model_name, str(mv.version))
            return False
        return True

    def load_secondary(self) -> None:
        """Load the followed value model and challenger from the registry, when registered (blocking).

        A missing or broken one is logged and left out: alerts then carry no value at
        risk, and no shadow scoring happens, until an announcement brings a good one.
        """
        for model_name, alias in ((self.regressor_name, CHAMPION), (self.classifier_name, CHALLENGER)):
            slot = self._slot(model_name, alias)
            if slot is None or slot == "current":
                continue
            try:
                found = self._fetch_alias(model_name, alias)
                if found is not None:
                    self.install_secondary(slot, found[0], model_name, found[1])
            except Exception as exc:  # noqa: BLE001 - optional models never block scoring
                self.refuse(exc, model_name, alias)

    async def apply_update(self, event: ModelUpdatedEvent) -> bool:
        """Download, verify, warm up and swap in an announced champion.

        Returns True when swapped in; on any failure keeps the model in service,
        logs why, counts it in :attr:`reloads_failed` and returns False. Swaps are
        serialised with :meth:`reconcile`'s.
        """
        async with self._swap_lock:
            return await self._apply(event)

    async def _apply(self, event: ModelUpdatedEvent) -> bool:
        slot = self._slot(event.model_name, event.alias)
        if slot is None:
            return False
        held = getattr(self, slot)
        if held is not None and held.model_version == event.model_version:
            return False
        try:
            pipeline = await asyncio.to_thread(self._download, self.tracking_uri, event.artifact_uri, event.sha256)
            await asyncio.to_thread(self._check_and_warm, pipeline)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model
            self.refuse(exc, event.model_name, event.model_version)
            return False
        if slot == "current":
            self.install(pipeline, event.model_name, event.model_version)
        else:
            self.install_secondary(slot, pipeline, event.model_name, event.model_version)
        self.reloads_ok += 1
        return True


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
            if await asyncio.to_thread(store.load_champion):
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
    """:meth:`ModelStore.reconcile` every ``interval_s`` seconds (at least 1), for ever."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await store.reconcile()
        except Exception as exc:  # noqa: BLE001 - the registry unreachable: keep serving, try again later
            logger.warning("registry check failed error=%s", f"{type(exc).__name__}: {exc}"[:200])
