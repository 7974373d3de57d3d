"""Hot reloads in ``churn bench stream``: the champion is swapped twice while the latency phase runs.

A third of the way into the worker's latency phase, the champion's artifact is registered
again as a new version of the same registered model, the ``champion`` alias is moved to it
and the move is announced on the data set's ``model-updated`` topic, as a batch cycle
does after a promotion. Two thirds of the way (or once the worker serves the copy, if that
is later), the alias is moved back to the original version and announced again. At the
run's end the copy is deleted, so the registry holds what it held before.

Each swap is timed from the alias move to the last score made by the previous version
(from then on every score is the new version's), read from the score records' timestamps
(set when the worker's producer queued them) and ``model_version`` fields. Any other
worker following the same data set's champion on this stack reloads twice as well, onto
the same artifact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from plumbing.settings import Settings
from schemas.registry import CHAMPION

logger = logging.getLogger(__name__)

#: Fractions of the latency phase at which the champion is swapped, then swapped back.
SWAP_AT = (1 / 3, 2 / 3)
#: Longest the swap back waits for the worker to serve the copy, seconds.
SERVED_TIMEOUT_S = 20.0
#: Longest a new model version may stay pending registration, seconds.
READY_TIMEOUT_S = 30.0
#: Tag of a bench copy: the version it copies (an interrupted run leaves the alias on it).
COPY_TAG = "churn.bench_copy_of"


class ChampionSwap:
    """Move the champion alias to a copy of its version and back, announcing each move.

    Parameters
    ----------
    settings : Settings
        The MLflow registry and the broker of the ``model-updated`` topic.
    model_name : str
        The data set's registered classifier (:attr:`schemas.namespace.Namespace.classifier_name`).
    version : str
        The version the alias names now.
    model_updated_topic : str
        The data set's announcement topic (:attr:`schemas.namespace.Namespace.model_updated`).
    run : str
        The bench run's id, written in the copy's description.
    client : mlflow.MlflowClient, optional
        Default: a client of ``settings.mlflow_tracking_uri``.

    Attributes
    ----------
    announced : list of (float, str, str)
        Per move: the Unix time just before the alias moved, the version it left, the one it named.
    error : str or None
        Why a move failed (the measurement then has fewer swaps).
    stopped : threading.Event
        Set to end :meth:`run` early (an interrupted run): its waits return at once and no
        further move is made; :meth:`restore` then puts the alias back.
    """

    def __init__(
        self,
        settings: Settings,
        model_name: str,
        version: str,
        model_updated_topic: str,
        run: str,
        client: Any = None,
    ) -> None:
        from mlflow import MlflowClient

        self.settings, self.name, self.version = settings, model_name, str(version)
        self.topic, self.run_id = model_updated_topic, run
        uri = settings.mlflow_tracking_uri
        self.client = client or MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.copy: str | None = None
        self.announced: list[tuple[float, str, str]] = []
        self.error: str | None = None
        self.stopped = threading.Event()

    def _register_copy(self) -> str:
        original = self.client.get_model_version(self.name, self.version)
        if original.source is None:
            raise RuntimeError(f"{self.name} version {self.version} has no source to register again")
        mv = self.client.create_model_version(
            self.name,
            source=original.source,
            run_id=original.run_id,
            tags={**original.tags, COPY_TAG: self.version},
            description=f"churn bench stream {self.run_id}: a copy of version {self.version} for the hot-reload "
            "measurement, deleted at the run's end",
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while mv.status != "READY":
            if time.monotonic() > deadline:
                raise RuntimeError(f"model version {mv.version} still {mv.status} after {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
            mv = self.client.get_model_version(self.name, mv.version)
        return str(mv.version)

    def _move(self, to: str, left: str) -> None:
        from batch.announce import publish_model_updated
        from plumbing.artifacts import version_artifact_uri

        mv = self.client.get_model_version(self.name, to)
        t = time.time()
        self.client.set_registered_model_alias(self.name, CHAMPION, to)
        registered: dict[str, Any] = {
            "model_name": self.name,
            "model_version": to,
            "alias": CHAMPION,
            "artifact_uri": version_artifact_uri(mv),
            "sha256": mv.tags["sha256"],
            "feature_names": [],
            "run_id": mv.run_id,
        }
        publish_model_updated(self.settings, registered, topic=self.topic)
        self.announced.append((t, left, to))

    def run(self, latency_s: float, served: Callable[[str], bool]) -> None:
        """Swap at ``SWAP_AT[0] * latency_s`` seconds from now, and back at ``SWAP_AT[1]`` (thread target).

        Parameters
        ----------
        latency_s : float
            Duration of the phase the swaps fall in, seconds.
        served : callable
            ``served(version)`` is True once the worker scores with ``version`` (its ``/health``).
        """
        t0 = time.monotonic()
        try:
            self.copy = self._register_copy()  # before the first swap's time: not part of the reload
            if self.stopped.wait(max(0.0, t0 + SWAP_AT[0] * latency_s - time.monotonic())):
                return
            self._move(self.copy, self.version)
            deadline = time.monotonic() + SERVED_TIMEOUT_S
            while not served(self.copy) and time.monotonic() < deadline:
                if self.stopped.wait(0.05):
                    return
            if self.stopped.wait(max(0.0, t0 + SWAP_AT[1] * latency_s - time.monotonic())):
                return
            self._move(self.version, self.copy)
        except Exception as exc:  # noqa: BLE001 - reported in the figures; restore() still runs
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("champion swap failed: %s", self.error)

    def restore(self) -> None:
        """Point the alias at the original version again (announcing it if it had moved) and delete the copy."""
        if self.copy is None:
            return
        try:
            current = str(self.client.get_model_version_by_alias(self.name, CHAMPION).version)
            if current != self.version:
                self._move(self.version, current)
            self.client.delete_model_version(self.name, self.copy)
            self.copy = None
        except Exception as exc:  # noqa: BLE001 - a leftover copy must not hide the run's figures
            logger.warning(
                "champion copy %s of %s not cleaned up (%s); the next churn bench stream on this data set moves "
                "the alias back to version %s and deletes the copy",
                self.copy,
                self.name,
                f"{type(exc).__name__}: {exc}"[:200],
                self.version,
            )


def repair_interrupted_swap(settings: Settings, client: Any, name: str, model_updated_topic: str) -> str | None:
    """Undo what an interrupted run left: the alias on a bench copy (tag :data:`COPY_TAG`) goes back, the copy goes.

    Parameters
    ----------
    settings : Settings
    client : mlflow.MlflowClient
    name : str
        The registered classifier.
    model_updated_topic : str
        Where the move back is announced.

    Returns
    -------
    str or None
        The version the alias was moved back to, None when there was nothing to repair.

    Raises
    ------
    mlflow.exceptions.MlflowException
        The registry did not answer, or has no champion alias for ``name``.
    """
    import sys

    mv = client.get_model_version_by_alias(name, CHAMPION)
    original = (mv.tags or {}).get(COPY_TAG)
    if original is None:
        return None
    swap = ChampionSwap(settings, name, original, model_updated_topic, "repair", client=client)
    swap._move(original, str(mv.version))
    client.delete_model_version(name, str(mv.version))
    print(
        f"{name}@{CHAMPION} was left on version {mv.version}, a copy of version {original} by an interrupted "
        f"churn bench stream: moved back to {original} (announced) and the copy deleted",
        file=sys.stderr,
    )
    return original


def reload_figures(
    announced: Sequence[tuple[float, str, str]], score_versions: Sequence[tuple[float, str]]
) -> list[dict[str, Any]]:
    """Per swap: seconds from the alias move to the first score by the new version and the last by the old.

    Parameters
    ----------
    announced : sequence of (float, str, str)
        :attr:`ChampionSwap.announced`: Unix time of the alias move, version left, version named.
    score_versions : sequence of (float, str)
        Score record timestamp (Unix seconds) and ``model_version`` of every score of the phase.

    Returns
    -------
    list of dict
        ``from``, ``to``, ``first_new_s`` (None when no score by ``to`` followed before the
        next swap), ``last_old_s`` (0.0 when no score by ``from`` followed the move) and
        ``reload_s``: the larger of the two, the time until every score came from ``to``
        (None with ``first_new_s``).
    """
    out = []
    for i, (t, left, to) in enumerate(announced):
        end = announced[i + 1][0] if i + 1 < len(announced) else float("inf")
        window = [(ts, v) for ts, v in score_versions if t <= ts < end]
        first_new = min((ts for ts, v in window if v == to), default=None)
        last_old = max((ts for ts, v in window if v == left), default=t)
        first_new_s = None if first_new is None else round(first_new - t, 3)
        last_old_s = round(last_old - t, 3)
        out.append(
            {
                "from": left,
                "to": to,
                "first_new_s": first_new_s,
                "last_old_s": last_old_s,
                "reload_s": None if first_new_s is None else max(first_new_s, last_old_s),
            }
        )
    return out


def start_swaps(swap: ChampionSwap, latency_s: float, served: Callable[[str], bool]) -> threading.Thread:
    """Run :meth:`ChampionSwap.run` in a daemon thread, started now."""
    thread = threading.Thread(target=swap.run, args=(latency_s, served), name="bench-champion-swap", daemon=True)
    thread.start()
    return thread
