"""Announcements are trusted only as far as the registry (issue 17, point 7), on real servers.

A worker scores a steady load while ``model-updated`` carries, in turn: a registered version that
is not the champion, an old champion's version (both with their true artifact and SHA-256: what
anyone who can write the topic can send), then a real promotion and a registry rollback. Every
score is read back from ``churn-scores`` and checked against the champion the registry named
when it was scored.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime

import httpx
import orjson
import pytest

from schemas.topics import Topics
from tests.integration.kafka_tools import wait_for_count

pytestmark = pytest.mark.integration

FAST_ZOO = {"logistic_regression", "multiple_regression"}
#: Events per second of the steady load.
RATE = 300
#: Seconds of load kept on after each step, so a wrong swap would show in the scores.
SETTLE_S = 3.0


@pytest.fixture(scope="module")
def versions(stack_settings):
    """Three registered classifier versions: ``old`` (was champion), ``champion``, ``other`` (never champion)."""
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    old = run_cycle(stack_settings, storage, tracker, only=FAST_ZOO, margin=-1.0, announce=False).registered
    champion = run_cycle(stack_settings, storage, tracker, only=FAST_ZOO, margin=-1.0, announce=False).registered
    # margin=1: no model beats the champion by a whole AUC point, so this version is held as challenger.
    other = run_cycle(stack_settings, storage, tracker, only=FAST_ZOO, margin=1.0, announce=False).registered
    assert old["alias"] == champion["alias"] == "champion" and other["alias"] == "challenger"
    assert int(old["model_version"]) < int(champion["model_version"]) < int(other["model_version"])
    in_registry = tracker.get_model_version_by_alias(champion["model_name"], "champion")
    assert str(in_registry.version) == champion["model_version"]
    return {"old": old, "champion": champion, "other": other}


@pytest.fixture
def trust_worker(stack_settings, versions, monkeypatch):
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready
    from churn_stream.stack import LocalStack

    settings = stack_settings.with_overrides(
        topic_suffix="-trust", consumer_group="churn-scorer-trust", worker_web_port=LocalStack.free_ports(1)[0]
    )
    # The registry check is 10 minutes away: what the worker follows here, it follows on an announcement.
    monkeypatch.setenv("CHURN_MODEL_RECONCILE_S", "600")
    log = settings.data_dir / "logs" / "worker-trust.log"
    proc = start_worker(settings, log)
    try:
        wait_worker_ready(settings, proc, timeout_s=120)
        yield settings, log
    finally:
        stop_worker(proc)


def _health(settings) -> dict:
    return httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/health", timeout=5).json()


def _wait(settings, check, what: str, timeout_s: float = 30.0) -> float:
    """Poll ``/health`` until ``check(health)``; return the seconds it took."""
    t0 = time.monotonic()
    while not check(_health(settings)):
        assert time.monotonic() - t0 < timeout_s, f"worker: {what} not seen within {timeout_s} s: {_health(settings)}"
        time.sleep(0.05)
    return time.monotonic() - t0


def _serves_only(settings, version: str, what: str, until) -> None:
    """Poll ``/health`` until ``until(health)`` and then :data:`SETTLE_S` more; ``version`` in service throughout."""
    t0, settled_at = time.monotonic(), None
    while settled_at is None or time.monotonic() - settled_at < SETTLE_S:
        health = _health(settings)
        assert health["model_version"] == version, f"{what}: version {health['model_version']} put into service"
        if settled_at is None and until(health):
            settled_at = time.monotonic()
        assert time.monotonic() - t0 < 30, f"{what}: not refused within 30 s: {health}"
        time.sleep(0.05)


def _refused(health: dict, reason: str) -> bool:
    return health.get("announcements_refused", {}).get(reason) == 1


def _announce(settings, registered: dict) -> None:
    from batch.announce import publish_model_updated

    publish_model_updated(settings, dict(registered, alias="champion"))


def test_forged_announcements_are_refused_under_load_and_the_registry_is_followed(
    trust_worker, versions, stack_settings, telco_csv
):
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import make_tracker, produce_records
    from schemas.events import new_event_id

    settings, log = trust_worker
    tracker = make_tracker(stack_settings)
    name = versions["champion"]["model_name"]
    v_old, v_champ, v_other = (versions[k]["model_version"] for k in ("old", "champion", "other"))
    assert _health(settings)["model_version"] == v_champ

    base = [(k, orjson.loads(v)) for k, v in csv_to_customer_events(telco_csv, limit=RATE)]
    produced: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            chunk = [(k, orjson.dumps({**doc, "event_id": new_event_id()})) for k, doc in base]
            produce_records(settings, Topics.CUSTOMERS + settings.topic_suffix, chunk, rate=RATE)
            produced.update(orjson.loads(v)["event_id"] for _, v in chunk)

    producer = threading.Thread(target=load, daemon=True)
    producer.start()
    refused = {}
    try:
        time.sleep(SETTLE_S)
        # (a) A registered version that is not the champion, with its true artifact and SHA-256.
        _announce(settings, versions["other"])
        _serves_only(settings, v_champ, "(a) non-champion announced", lambda h: _refused(h, "not_registry_version"))
        # (b) An older champion's version: its announcement replayed.
        _announce(settings, versions["old"])
        _serves_only(settings, v_champ, "(b) older version announced", lambda h: _refused(h, "older"))
        refused = _health(settings)["announcements_refused"]
        # (c) A real promotion: the alias moves, then the announcement.
        promoted_at = time.time()
        tracker.set_registered_model_alias(name, "champion", v_other)
        _announce(settings, versions["other"])
        promotion_s = _wait(settings, lambda h: h["model_version"] == v_other, "promotion", timeout_s=10)
        time.sleep(SETTLE_S)
        # (d) A rollback in the registry to the old version, announced.
        rolled_back_at = time.time()
        tracker.set_registered_model_alias(name, "champion", v_old)
        _announce(settings, versions["old"])
        rollback_s = _wait(settings, lambda h: h["model_version"] == v_old, "rollback", timeout_s=10)
        time.sleep(SETTLE_S)
    finally:
        stop.set()
        producer.join(60)
        tracker.set_registered_model_alias(name, "champion", v_other)  # leave the newest champion for later tests

    seen: set[str] = set()

    def first_score(rec: dict) -> bool:
        eid = rec["value"]["event_id"]
        if eid in produced and eid not in seen:
            seen.add(eid)
            return True
        return False

    scores = wait_for_count(settings, Topics.SCORES + settings.topic_suffix, first_score, len(produced), 180)
    assert seen == produced  # nothing lost

    def scored_at(s: dict) -> float:
        return datetime.fromisoformat(s["value"]["scored_at"]).timestamp()

    phases = {
        "forged announcements (champion only)": [s for s in scores if scored_at(s) < promoted_at],
        "after the promotion": [s for s in scores if promoted_at <= scored_at(s) < rolled_back_at],
        "after the rollback": [s for s in scores if scored_at(s) >= rolled_back_at],
    }
    counts = {phase: Counter(s["value"]["model_version"] for s in batch) for phase, batch in phases.items()}
    print(
        f"events={len(produced)} refused={refused} promotion followed in {promotion_s:.2f} s, "
        f"rollback in {rollback_s:.2f} s; scores per model version: {counts}"
    )
    assert refused["not_registry_version"] == 1 and refused["older"] == 1
    assert set(counts["forged announcements (champion only)"]) == {v_champ}, counts
    assert set(counts["after the promotion"]) <= {v_champ, v_other} and counts["after the promotion"][v_other] > 0
    assert set(counts["after the rollback"]) <= {v_other, v_old} and counts["after the rollback"][v_old] > 0

    metrics = httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=5).text
    assert 'churn_model_announcements_refused_total{reason="not_registry_version"} 1.0' in metrics
    assert 'churn_model_announcements_refused_total{reason="older"} 1.0' in metrics
    text = log.read_text()
    assert (
        f"announcement refused model={name} alias=champion announced_version={v_other} "
        f"registry_version={v_champ} reason=not_registry_version" in text
    )
    assert f"announced_version={v_old} registry_version={v_champ} reason=older" in text
    assert f"rollback: the registry moved {name}@champion back from version {v_other} to version {v_old}" in text
