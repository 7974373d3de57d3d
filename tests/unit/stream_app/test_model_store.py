"""The model store: refuse-and-keep on bad models, and announcements trusted only as far as the registry.

``ModelStore`` takes an injectable downloader and registry lookup: these are unit tests of the
store's decisions; the real MLflow lookup and download are covered by the integration tests
(tests/integration/test_announcement_trust.py, test_pipeline.py, test_api.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from batch.features import classification_data
from batch.ingest import read_source_csv
from schemas.events import ModelUpdatedEvent
from schemas.profiles import TELCO
from scratch_models import LogisticRegression, ScoringPipeline, TabularPreprocessor
from stream_app import model_store
from stream_app.metrics import WorkerMetrics
from stream_app.model_follow import _reconcile_forever
from stream_app.model_store import CLASSIFIER_NAME, ModelStore
from stream_app.registry_check import AliasTarget, RegistryUnavailableError, is_older, mlflow_alias_lookup

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pipeline(telco_csv) -> ScoringPipeline:
    data = classification_data(read_source_csv(telco_csv, TELCO), TELCO)
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    return ScoringPipeline(data.preprocessor, model, threshold=0.5, metadata={"dataset": "telco"})


class Registry:
    """The registry's aliases as a store's ``registry`` lookup sees them.

    ``names[(model, alias)]`` is a version, or a list of versions answered in turn (the
    registry moving between two questions). ``error`` makes every question fail.
    """

    def __init__(self, champion: str | None = "2") -> None:
        self.names: dict[tuple[str, str], str | list[str] | None] = {(CLASSIFIER_NAME, "champion"): champion}
        self.error: str | None = None
        self.asked: list[tuple[str, str]] = []

    def __call__(self, model_name: str, alias: str) -> AliasTarget | None:
        self.asked.append((model_name, alias))
        if self.error:
            raise RegistryUnavailableError(self.error)
        named = self.names.get((model_name, alias))
        if isinstance(named, list):
            named = named.pop(0) if len(named) > 1 else named[0]
        if named is None:
            return None
        return AliasTarget(model_name, alias, named, f"runs:/run-{named}/model/pipeline.npz", f"{int(named):064x}")


def _update(version: str, **changes) -> ModelUpdatedEvent:
    doc = {
        "event_id": f"upd-{version}",
        "event_time": NOW.isoformat(),
        "model_name": CLASSIFIER_NAME,
        "model_version": version,
        "alias": "champion",
        "artifact_uri": f"runs:/run-{version}/model/pipeline.npz",
        "sha256": "0" * 64,
    }
    doc.update(changes)
    return ModelUpdatedEvent.model_validate(doc)


def _pipeline_with_extra_feature(pipeline: ScoringPipeline) -> ScoringPipeline:
    rng = np.random.default_rng(0)
    cols = {"tenure_months": rng.integers(0, 72, 100).astype(float), "loyalty_score": rng.random(100)}
    pre = TabularPreprocessor(["tenure_months", "loyalty_score"], []).fit(cols)
    y = (rng.random(100) < 0.3).astype(int)
    return ScoringPipeline(pre, LogisticRegression().fit(pre.transform(cols), y))


def _store(pipeline, registry: Callable, downloads: list | None = None, served: str = "1", **kwargs) -> ModelStore:
    """A store serving ``pipeline`` as version ``served``, downloading copies of it (recorded in ``downloads``)."""

    def downloader(tracking_uri, artifact_uri, sha256):
        if downloads is not None:
            downloads.append((artifact_uri, sha256))
        return ScoringPipeline(pipeline.preprocessor, pipeline.model, threshold=0.42, metadata=pipeline.metadata)

    kwargs.setdefault("downloader", downloader)
    store = ModelStore("http://tracking.invalid", expected_features=list(TELCO.features), registry=registry, **kwargs)
    store.install(pipeline, CLASSIFIER_NAME, served)
    return store


# -------------------------------------------------------------- refuse and keep
def test_install_refuses_features_the_stream_lacks_and_keeps_old_model(pipeline):
    store = ModelStore(
        "http://unused.invalid",
        expected_features=list(TELCO.features),
        downloader=lambda *a: pytest.fail("install must not download"),
    )
    assert store.current is None and not store.ready.is_set()
    store.install(pipeline, CLASSIFIER_NAME, "1")
    assert store.current.model_version == "1" and store.current.pipeline is pipeline
    assert store.ready.is_set()
    with pytest.raises(ValueError, match="loyalty_score"):
        store.install(_pipeline_with_extra_feature(pipeline), CLASSIFIER_NAME, "2")
    assert store.current.model_version == "1"
    assert store.current.pipeline is pipeline


def test_install_refuses_when_nothing_is_in_service_yet(pipeline):
    store = ModelStore("http://unused.invalid", expected_features=list(TELCO.features))
    with pytest.raises(ValueError, match="does not provide"):
        store.install(_pipeline_with_extra_feature(pipeline), CLASSIFIER_NAME, "1")
    assert store.current is None and not store.ready.is_set()


def test_apply_update_with_failing_downloader_keeps_old_model(pipeline):
    calls = []

    def downloader(tracking_uri, artifact_uri, sha256):
        calls.append((tracking_uri, artifact_uri, sha256))
        raise RuntimeError("sha256 mismatch: expected 000..., got abc...")

    registry = Registry(champion="2")
    store = _store(pipeline, registry, downloader=downloader)
    assert asyncio.run(store.apply_update(_update("2"))) is False
    # The registry's artifact URI and SHA-256, not the event's ("0" * 64).
    assert calls == [("http://tracking.invalid", "runs:/run-2/model/pipeline.npz", f"{2:064x}")]
    assert store.current.model_version == "1" and store.current.pipeline is pipeline
    assert store.reloads_failed == 1 and store.reloads_ok == 0
    assert store.last_error == "RuntimeError: sha256 mismatch: expected 000..., got abc..."
    registry.names[(CLASSIFIER_NAME, "champion")] = "3"
    assert asyncio.run(store.apply_update(_update("3"))) is False
    assert store.reloads_failed == 2 and store.refusals["error"] == 2


def test_apply_update_refuses_incompatible_model_and_keeps_old(pipeline):
    store = _store(pipeline, Registry(champion="2"), downloader=lambda *a: _pipeline_with_extra_feature(pipeline))
    assert asyncio.run(store.apply_update(_update("2"))) is False
    assert store.current.model_version == "1"
    assert store.reloads_failed == 1
    assert "loyalty_score" in store.last_error


def test_apply_update_swaps_in_the_registrys_champion(pipeline):
    downloads: list = []
    store = _store(pipeline, Registry(champion="2"), downloads)
    assert asyncio.run(store.apply_update(_update("2"))) is True
    assert store.current.model_version == "2" and store.current.threshold == 0.42
    assert downloads == [("runs:/run-2/model/pipeline.npz", f"{2:064x}")]
    assert store.reloads_ok == 1 and store.reloads_failed == 0
    assert store.announcements_refused == dict.fromkeys(model_store.ANNOUNCEMENT_REFUSALS, 0)


@pytest.mark.parametrize(
    "changes",
    [{"alias": "challenger"}, {"model_name": "churn-regressor"}, {"model_version": "1"}],
)
def test_apply_update_ignores_other_aliases_models_and_same_version(pipeline, changes):
    registry = Registry(champion="2")
    store = _store(pipeline, registry, downloader=lambda *a: pytest.fail("must not download"))
    assert asyncio.run(store.apply_update(_update("2", **changes))) is False
    assert store.current.model_version == "1"
    assert store.reloads_ok == 0 and store.reloads_failed == 0
    assert registry.asked == []


# -------------------------------------------------------------- announcements vs the registry
@pytest.mark.parametrize(
    ("served", "champion", "announced", "reason"),
    [
        ("3", "3", "5", "not_registry_version"),  # a registered non-champion (or unknown) version
        ("3", "3", "2", "older"),  # an old announcement replayed
        ("3", "4", "5", "not_registry_version"),  # the alias moved, but not to the announced version
        ("3", None, "4", "no_alias"),
    ],
)
def test_an_announcement_the_registry_does_not_confirm_is_refused_logged_and_counted(
    pipeline, caplog, served, champion, announced, reason
):
    downloads: list = []
    store = _store(pipeline, Registry(champion=champion), downloads, served=served)
    with caplog.at_level(logging.WARNING, logger="stream_app.model_store"):
        assert asyncio.run(store.apply_update(_update(announced))) is False
    assert store.current.model_version == served and downloads == []
    assert store.announcements_refused[reason] == 1 and sum(store.announcements_refused.values()) == 1
    assert store.reloads_failed == 1 and store.reloads_ok == 0
    assert store.last_error.startswith(f"announcement refused: churn-classifier@champion version {announced}")
    (line,) = [r.getMessage() for r in caplog.records if "announcement refused" in r.getMessage()]
    assert f"announced_version={announced} registry_version={champion} reason={reason}" in line


def test_a_rollback_the_registry_made_is_followed_and_logged(pipeline, caplog):
    downloads: list = []
    store = _store(pipeline, Registry(champion="2"), downloads, served="5")
    with caplog.at_level(logging.WARNING, logger="stream_app.model_store"):
        assert asyncio.run(store.apply_update(_update("2"))) is True
    assert store.current.model_version == "2" and len(downloads) == 1
    assert any("rollback" in r.getMessage() and "from version 5 to version 2" in r.getMessage() for r in caplog.records)


def test_an_older_version_is_not_served_when_the_registry_moved_on_between_two_questions(pipeline):
    registry = Registry()
    registry.names[(CLASSIFIER_NAME, "champion")] = ["2", "6"]  # rolled back, then promoted again
    downloads: list = []
    store = _store(pipeline, registry, downloads, served="5")
    assert asyncio.run(store.apply_update(_update("2"))) is False
    assert store.current.model_version == "5" and downloads == []
    assert len(registry.asked) == 2  # asked again before moving back


def test_reconcile_follows_a_rollback_and_a_promotion_of_the_registry(pipeline, caplog):
    registry = Registry(champion="2")
    store = _store(pipeline, registry, served="5")
    with caplog.at_level(logging.WARNING, logger="stream_app.model_store"):
        assert asyncio.run(store.reconcile()) == ["churn-classifier@champion=2"]
    assert any("rollback" in r.getMessage() for r in caplog.records)
    registry.names[(CLASSIFIER_NAME, "champion")] = "6"
    assert asyncio.run(store.reconcile()) == ["churn-classifier@champion=6"]
    assert store.current.model_version == "6" and store.announcements_refused["older"] == 0


def test_an_unreachable_registry_refuses_the_announcement_and_checks_again_soon(pipeline, monkeypatch):
    monkeypatch.setattr(model_store, "RECHECK_S", 0.05)
    registry = Registry(champion="2")
    registry.error = "INTERNAL_ERROR: connection refused"
    downloads: list = []
    store = _store(pipeline, registry, downloads)

    async def scenario() -> list[str]:
        assert await store.apply_update(_update("2")) is False
        assert store.current.model_version == "1" and downloads == []
        assert store.announcements_refused["registry_unreachable"] == 1
        assert "connection refused" in store.last_error
        registry.error = None  # back: the early check follows the registry, not the event
        checker = asyncio.create_task(_reconcile_forever(store, interval_s=3600))
        try:
            for _ in range(100):
                if store.current.model_version == "2":
                    break
                await asyncio.sleep(0.01)
        finally:
            checker.cancel()
        return [a for _, a in registry.asked]

    asked = asyncio.run(scenario())
    assert store.current.model_version == "2" and len(downloads) == 1
    assert len(asked) >= 2  # the announcement's question, then the early check's


def test_a_registry_that_does_not_answer_in_time_is_unreachable_and_asked_once_at_a_time(pipeline, monkeypatch):
    import threading

    monkeypatch.setattr(model_store, "REGISTRY_CHECK_TIMEOUT_S", 0.05)
    monkeypatch.setattr(model_store, "RECHECK_S", 3600)
    release = threading.Event()
    registry = Registry(champion="2")

    def slow(model_name, alias):
        release.wait(5)
        return registry(model_name, alias)

    store = _store(pipeline, slow)

    async def scenario() -> None:
        assert await store.apply_update(_update("2")) is False
        assert await store.apply_update(_update("2")) is False  # the first question is still out
        release.set()

    asyncio.run(scenario())
    assert store.announcements_refused["registry_unreachable"] == 2
    assert store.current.model_version == "1"
    assert "earlier check" in store.last_error
    assert len(registry.asked) <= 1


def test_refused_announcements_are_prometheus_counters():
    m = WorkerMetrics()

    class Store:
        current = value_model = challenger = None
        reloads_ok, reloads_failed = 0, 3
        announcements_refused = {"not_registry_version": 2, "older": 1}

    m.sync_store(Store)
    m.sync_store(Store)  # totals, not scrapes
    text = m.render().decode()
    assert 'churn_model_announcements_refused_total{reason="not_registry_version"} 2.0' in text
    assert 'churn_model_announcements_refused_total{reason="older"} 1.0' in text
    assert 'churn_model_announcements_refused_total{reason="registry_unreachable"} 0.0' in text


def test_mlflow_lookup_of_an_unreachable_registry_raises_registry_unavailable(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(RegistryUnavailableError, match="UNREACHABLE"):
        mlflow_alias_lookup("http://127.0.0.1:1")(CLASSIFIER_NAME, "champion")


@pytest.mark.parametrize(
    ("a", "b", "older"), [("2", "10", True), ("10", "2", False), ("3", "3", False), ("x", "1", False)]
)
def test_versions_are_ordered_as_numbers(a, b, older):
    assert is_older(a, b) is older


# ------------------------------------------------------- loading at start-up
def test_champion_loaded_on_a_thread_wakes_the_loop_safely(pipeline):
    # load_champion downloads on a worker thread; asyncio.Event is not thread-safe, and the
    # loop's debug mode refuses a set from another thread (before: the load was refused and
    # the parked waiter never woke, so the loop runs on a thread of its own with a bound).
    downloaded = ScoringPipeline(pipeline.preprocessor, pipeline.model, threshold=0.42, metadata=pipeline.metadata)
    store = ModelStore(
        "http://tracking.invalid",
        expected_features=list(TELCO.features),
        registry=Registry(champion="4"),
        downloader=lambda *a: downloaded,
    )

    async def start() -> tuple[bool, bool]:
        waiter = asyncio.create_task(store.ready.wait())
        await asyncio.sleep(0)  # the waiter is parked on the event
        loaded = await store.load_champion_async()
        await asyncio.wait_for(asyncio.shield(waiter), timeout=5)
        return loaded, waiter.done()

    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(start(), debug=True)), daemon=True)
    runner.start()
    runner.join(timeout=20)
    assert outcome == [(True, True)]
    assert store.current is not None and store.current.model_version == "4"
    assert store.current.pipeline is downloaded and store.refusals == dict.fromkeys(store.refusals, 0)
