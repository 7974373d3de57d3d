"""The model store: the champion in service, loaded at start and swapped atomically on updates.

The worker reads :attr:`ModelStore.current` once per micro-batch, so a swap takes
effect between micro-batches and no batch is scored by a half-loaded model.

Only the registry decides what is served: a ``model-updated`` announcement makes the store
ask MLflow at once which version the alias names (:mod:`stream_app.registry_check`), and it
loads that version or nothing. Announcements that disagree with the registry are refused,
logged and counted; the store moves back to an older version only when the registry did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from plumbing.artifacts import ArtifactVerificationError, download_pipeline
from schemas.events import ModelUpdatedEvent, contract_refusal
from schemas.namespace import Namespace
from schemas.registry import CHALLENGER, CHAMPION, CLASSIFIER_NAME, REGRESSOR_NAME  # noqa: F401 - re-exported
from scratch_models.pipeline import ScoringPipeline
from stream_app.contract import TELCO_CONTRACT, EventContract
from stream_app.registry_check import (
    AliasLookup,
    AliasTarget,
    RegistryUnavailableError,
    is_older,
    mlflow_alias_lookup,
)
from stream_app.scoring import LoadedModel

logger = logging.getLogger(__name__)

#: Seconds before :meth:`ModelStore.reconcile` tries again a registry version it failed to load
#: (an unverifiable artifact is not downloaded every few seconds).
RECONCILE_RETRY_S = 300.0
#: Why a model was not served: the label of ``churn_model_refusals`` and ``model_refusals``.
REFUSAL_REASONS = ("contract", "features", "sha256", "error")
#: Why an announcement was not followed: the label of ``churn_model_announcements_refused`` and
#: ``announcements_refused``. ``not_registry_version``: the alias names another version (a registered
#: non-champion, or no such version); ``older``: the same, and the announced version is older than the
#: one in service (a replayed announcement); ``no_alias``: the registry has no such alias;
#: ``registry_unreachable``: the registry could not be asked (the aliases are checked again soon).
ANNOUNCEMENT_REFUSALS = ("not_registry_version", "older", "no_alias", "registry_unreachable")
#: Seconds an announcement waits for the registry's answer before it is refused as unconfirmed.
REGISTRY_CHECK_TIMEOUT_S = 5.0
#: Seconds after an unconfirmed announcement before the registry's aliases are checked again.
RECHECK_S = 5.0


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
    registry : callable, optional
        ``(model_name, alias) -> AliasTarget or None``, raising
        :class:`~stream_app.registry_check.RegistryUnavailableError` when it cannot answer; defaults
        to :func:`~stream_app.registry_check.mlflow_alias_lookup` of ``tracking_uri``. The only
        source of the version, artifact URI and SHA-256 a store loads.

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
    announcements_refused : dict of str to int
        Announcements not followed because the registry did not confirm them, by
        :data:`ANNOUNCEMENT_REFUSALS` label.
    recheck : asyncio.Event
        Set when the registry should be checked before the next interval
        (an announcement it could not confirm).
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
        registry: AliasLookup | None = None,
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
        self._lookup = registry or mlflow_alias_lookup(tracking_uri)
        self.announcements_refused: dict[str, int] = dict.fromkeys(ANNOUNCEMENT_REFUSALS, 0)
        self.recheck = asyncio.Event()
        self._recheck_at: float | None = None  # loop time of the pending early registry check
        self._probe: asyncio.Future[AliasTarget | None] | None = None  # an announcement's registry question
        self.value_models = value_models
        self.challengers = challengers
        self.current: LoadedModel | None = None
        self.value_model: LoadedModel | None = None
        self.challenger: LoadedModel | None = None
        self.ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # whose tasks await ``ready``
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
        self._set_ready()
        logger.info(
            "model in service model=%s model_version=%s threshold=%.3f", model_name, model_version, pipeline.threshold
        )

    def _set_ready(self) -> None:
        """Set :attr:`ready`, from the event loop's thread or from a thread of :meth:`load_champion_async`.

        ``asyncio.Event`` is not thread-safe: set from another thread, its waiters are woken
        only when the loop next wakes for something else (and asyncio's debug mode refuses
        it), so the set is handed to the loop.
        """
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                on_loop = asyncio.get_running_loop() is loop
            except RuntimeError:  # no loop in this thread
                on_loop = False
            if not on_loop:
                loop.call_soon_threadsafe(self.ready.set)
                return
        self.ready.set()

    async def load_champion_async(self, model_name: str | None = None) -> bool:
        """:meth:`load_champion` on a worker thread, so the event loop keeps running while it downloads.

        Parameters
        ----------
        model_name : str, optional
            Default: the store's classifier name.

        Returns
        -------
        bool
            Whether a champion was loaded; :attr:`ready` is set on this loop when one was.
        """
        self._loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self.load_champion, model_name)

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

    def _alias_version(self, model_name: str, alias: str) -> AliasTarget | None:
        """What ``model_name@alias`` names in the registry now (blocking; None when there is no such alias).

        Raises
        ------
        RegistryUnavailableError
            When the registry cannot be asked.
        """
        return self._lookup(model_name, alias)

    def _fetch_alias(self, model_name: str, alias: str) -> tuple[ScoringPipeline, str] | None:
        target = self._alias_version(model_name, alias)
        if target is None:
            return None
        return self._download(self.tracking_uri, target.artifact_uri, target.sha256), target.version

    async def _ask(self, model_name: str, alias: str, timeout_s: float | None = None) -> AliasTarget | None:
        """:meth:`_alias_version` off the event loop, waiting at most ``timeout_s`` seconds for the answer.

        With a timeout, one question at a time: while an earlier one is still unanswered (MLflow's
        client retries a dead server for minutes), the registry counts as unreachable at once, so
        announcements never pile up blocked threads.
        """
        if timeout_s is None:
            return await asyncio.to_thread(self._alias_version, model_name, alias)
        if self._probe is not None and not self._probe.done():
            raise RegistryUnavailableError("the registry has not answered an earlier check yet")
        probe = asyncio.get_running_loop().run_in_executor(None, self._alias_version, model_name, alias)
        probe.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late failure is not "never retrieved"
        self._probe = probe
        done, _ = await asyncio.wait({probe}, timeout=timeout_s)
        if not done:
            raise RegistryUnavailableError(f"no answer from the registry within {timeout_s:g} s")
        return probe.result()

    def recheck_later(self, delay_s: float | None = None) -> None:
        """Bring the next registry check forward to ``delay_s`` seconds from now (default :data:`RECHECK_S`).

        The check is run by :func:`stream_app.model_follow.follow_model_updates`'s checker task.
        """
        delay_s = RECHECK_S if delay_s is None else delay_s
        loop = asyncio.get_running_loop()
        if self._recheck_at is not None and self._recheck_at > loop.time():
            return  # one pending already
        self._recheck_at = loop.time() + delay_s
        loop.call_later(delay_s, self.recheck.set)

    def take_recheck(self) -> bool:
        """Whether an early registry check was due (:meth:`recheck_later`); clears it."""
        due = self.recheck.is_set()
        self.recheck.clear()
        self._recheck_at = None
        return due

    async def reconcile(self, now: float | None = None) -> list[str]:
        """Load what the registry's aliases name where it differs from what this store holds.

        Announcements on ``model-updated`` are the fast path (each one is checked against the
        registry, :meth:`apply_update`); this is the safety net. It catches an announcement this
        process did not read (a broker replaced or wiped, a cycle that moved the alias but failed
        to announce), one it could not confirm (the registry was unreachable) and an alias moved
        by hand in MLflow, e.g. to roll the champion back. A difference is loaded from the registry
        (downloaded, verified, warmed up, swapped in between micro-batches). A version that failed
        to load is retried after :data:`RECONCILE_RETRY_S`.

        Returns
        -------
        list of str
            ``"model_name@alias=version"`` of each swap made.

        Raises
        ------
        RegistryUnavailableError
            When the registry cannot be asked; nothing is swapped.
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
            target = await self._ask(model_name, alias)
            if target is None:
                continue
            key = (model_name, alias, target.version)
            if now - self._refused.get(key, -RECONCILE_RETRY_S) < RECONCILE_RETRY_S:
                continue
            async with self._swap_lock:
                held = getattr(self, slot)
                if held is not None and held.model_version == target.version:
                    continue
                if self._swapped_at < asked_at:
                    logger.warning(
                        "registry names %s@%s version %s but version %s is in service here (announcement "
                        "missed or unconfirmed, or alias moved by hand); loading it",
                        model_name,
                        alias,
                        target.version,
                        held.model_version if held is not None else None,
                    )
                if await self._follow(slot, target, asked_at):
                    swapped.append(f"{model_name}@{alias}={target.version}")
        return swapped

    async def _follow(self, slot: str, target: AliasTarget, asked_at: float) -> bool:
        """Swap in the version the registry named at ``asked_at`` (the caller holds the swap lock).

        Nothing is done when the answer is stale (a swap happened since it was asked: the next
        check decides). A version older than the one in service is loaded only when the registry
        still names it when asked again here, under the lock: the registry itself moved back
        (a rollback), which is followed and logged.
        """
        held = getattr(self, slot)
        if held is not None and held.model_version == target.version:
            return False
        if self._swapped_at >= asked_at:
            return False
        if held is not None and is_older(target.version, held.model_version):
            try:
                again = await self._ask(target.model_name, target.alias, timeout_s=REGISTRY_CHECK_TIMEOUT_S)
            except RegistryUnavailableError as exc:
                logger.warning(
                    "rollback of %s@%s to version %s not confirmed, registry unreachable (%s); checking again later",
                    target.model_name,
                    target.alias,
                    target.version,
                    exc,
                )
                self.recheck_later()
                return False
            if again is None or again.version != target.version:
                return False
            logger.warning(
                "rollback: the registry moved %s@%s back from version %s to version %s; following it",
                target.model_name,
                target.alias,
                held.model_version,
                target.version,
            )
        return await self._load(slot, target)

    async def _load(self, slot: str, target: AliasTarget) -> bool:
        """Download (registry's URI and SHA-256), verify, warm up and swap in; refuse and keep the old on failure."""
        try:
            pipeline = await asyncio.to_thread(self._download, self.tracking_uri, target.artifact_uri, target.sha256)
            await asyncio.to_thread(self._check_and_warm, pipeline)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model
            self._refused[(target.model_name, target.alias, target.version)] = time.monotonic()
            self.refuse(exc, target.model_name, target.version)
            return False
        if slot == "current":
            self.install(pipeline, target.model_name, target.version)
        else:
            self.install_secondary(slot, pipeline, target.model_name, target.version)
        self.reloads_ok += 1
        return True

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

    def refuse_announcement(
        self, event: ModelUpdatedEvent, registry_version: str | None, reason: str, detail: str = ""
    ) -> None:
        """Count and log an announcement not followed (:data:`ANNOUNCEMENT_REFUSALS`); nothing is swapped."""
        self.announcements_refused[reason] = self.announcements_refused.get(reason, 0) + 1
        self.reloads_failed += 1
        self.last_error = (
            f"announcement refused: {event.model_name}@{event.alias} version {event.model_version}, "
            f"registry names {registry_version} ({reason}{'; ' + detail if detail else ''})"
        )
        logger.warning(
            "announcement refused model=%s alias=%s announced_version=%s registry_version=%s reason=%s dataset=%s%s",
            event.model_name,
            event.alias,
            event.model_version,
            registry_version,
            reason,
            self.namespace.dataset,
            f" error={detail}" if detail else "",
        )

    def load_champion(self, model_name: str | None = None) -> bool:
        """Load the registry's ``champion`` (blocking). Returns False when there is none yet.

        A champion this store refuses (another contract, missing features, a bad artifact)
        is logged and counted once per version (:meth:`refuse`) and not downloaded again
        while the alias still names it: False, as if there were none. An unreachable
        registry is logged and also gives False (the caller asks again).
        """
        model_name = model_name or self.classifier_name
        try:
            target = self._alias_version(model_name, CHAMPION)
        except RegistryUnavailableError as exc:
            logger.warning("registry unreachable, no champion loaded yet error=%s", exc)
            return False
        if target is None:
            return False
        key = (model_name, CHAMPION, target.version)
        if key in self._refused:
            return False
        try:
            pipeline = self._download(self.tracking_uri, target.artifact_uri, target.sha256)
            self.install(pipeline, model_name, target.version)
        except Exception as exc:  # noqa: BLE001 - refused: keep waiting for a champion this store can serve
            self._refused[key] = time.monotonic()
            self.refuse(exc, model_name, target.version)
            return False
        return True

    def load_secondary(self) -> None:
        """Load the followed value model and challenger from the registry, when registered (blocking).

        A missing or broken one is logged and left out: alerts then carry no value at
        risk, and no shadow scoring happens, until a registry check brings a good one.
        """
        for model_name, alias in ((self.regressor_name, CHAMPION), (self.classifier_name, CHALLENGER)):
            slot = self._slot(model_name, alias)
            if slot is None or slot == "current":
                continue
            try:
                found = self._fetch_alias(model_name, alias)
                if found is not None:
                    self.install_secondary(slot, found[0], model_name, found[1])
            except RegistryUnavailableError as exc:
                logger.warning("registry unreachable, %s@%s not loaded yet error=%s", model_name, alias, exc)
            except Exception as exc:  # noqa: BLE001 - optional models never block scoring
                self.refuse(exc, model_name, alias)

    async def apply_update(self, event: ModelUpdatedEvent) -> bool:
        """Check an announcement against the registry now, and follow the registry if it agrees.

        The event is only a hint: the registry is asked which version the announced alias names
        (waiting at most :data:`REGISTRY_CHECK_TIMEOUT_S`), and that version is loaded from the
        registry's artifact URI and SHA-256, never the event's. An announcement of another version
        than the alias names is refused, logged and counted in :attr:`announcements_refused`
        (reasons :data:`ANNOUNCEMENT_REFUSALS`); so is one the registry could not confirm, and the
        aliases are then checked again in :data:`RECHECK_S` seconds. Announcements of models or
        aliases this store does not follow, and of the version in service, are ignored.

        Returns
        -------
        bool
            True when a model was swapped in. On any failure the model in service stays, the
            failure is counted in :attr:`reloads_failed` and the reason logged. Swaps are
            serialised with :meth:`reconcile`'s.
        """
        slot = self._slot(event.model_name, event.alias)
        if slot is None:
            return False
        held = getattr(self, slot)
        if held is not None and held.model_version == event.model_version:
            return False
        asked_at = time.monotonic()
        try:
            target = await self._ask(event.model_name, event.alias, timeout_s=REGISTRY_CHECK_TIMEOUT_S)
        except RegistryUnavailableError as exc:
            self.refuse_announcement(event, None, "registry_unreachable", str(exc)[:200])
            self.recheck_later()
            return False
        if target is None:
            self.refuse_announcement(event, None, "no_alias")
            return False
        if target.version != event.model_version:
            held = getattr(self, slot)
            older = held is not None and is_older(event.model_version, held.model_version)
            self.refuse_announcement(event, target.version, "older" if older else "not_registry_version")
            return False
        key = (target.model_name, target.alias, target.version)
        if asked_at - self._refused.get(key, -RECONCILE_RETRY_S) < RECONCILE_RETRY_S:
            return False  # failed to load moments ago: refused and counted then; the registry check retries
        async with self._swap_lock:
            return await self._follow(slot, target, asked_at)
