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

A copy names its run's owner (:data:`OWNER_TAG`: run id, host, pid and the process's start
time) and carries a heartbeat (:data:`HEARTBEAT_TAG`, refreshed every :data:`HEARTBEAT_S`
seconds while the copy exists). A run's start-up (:func:`repair_interrupted_swap`) repairs only
copies whose owner is gone: on this host, no process with that pid and start time; on another
host, a heartbeat older than :data:`STALE_AFTER_S`. A copy of a run still going stops the new
run with :class:`SwapInProgress` (two runs would move the same alias and time each other's
reloads), and a run that finds one when its own swap is due measures no reload.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
#: Tag of a bench copy: its run, as ``run=<id> host=<hostname> pid=<pid> started=<process start, Unix s>``.
OWNER_TAG = "churn.bench_owner"
#: Tag of a bench copy: Unix time of its run's last heartbeat.
HEARTBEAT_TAG = "churn.bench_heartbeat"
#: Seconds between heartbeats while a copy exists.
HEARTBEAT_S = 5.0
#: A copy made on another host whose heartbeat is older than this, seconds, is left over (its run is gone).
STALE_AFTER_S = 30.0


class SwapInProgress(RuntimeError):
    """Another ``churn bench stream`` run, still going, holds a bench copy of the data set's champion."""


def _owner(run: str) -> str:
    """This process as :data:`OWNER_TAG` names it."""
    import psutil

    started = psutil.Process().create_time()
    return f"run={run} host={socket.gethostname()} pid={os.getpid()} started={started:.2f}"


def _parse_owner(value: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in value.split() if "=" in part)


def copy_owner_alive(tags: dict[str, str], now: float | None = None, host: str | None = None) -> bool:
    """Whether the run that made a bench copy is still going.

    Parameters
    ----------
    tags : dict of str to str
        The copy's model-version tags (:data:`OWNER_TAG`, :data:`HEARTBEAT_TAG`).
    now : float, optional
        Unix time to judge the heartbeat by; default now.
    host : str, optional
        This host's name; default :func:`socket.gethostname`.

    Returns
    -------
    bool
        On this host: a process with the owner's pid and start time exists (a stopped one
        included: Ctrl-Z is not an end). On another host: its heartbeat is less than
        :data:`STALE_AFTER_S` seconds old. False for a copy without an owner (made by a bench
        from before owners were written).
    """
    import psutil

    owner = _parse_owner(tags.get(OWNER_TAG, ""))
    if "pid" not in owner or "host" not in owner:
        return False
    if owner["host"] == (host or socket.gethostname()):
        try:
            started = psutil.Process(int(owner["pid"])).create_time()
        except (psutil.Error, ValueError):
            return False
        return abs(started - float(owner.get("started", "nan"))) < 0.05  # not another process with the pid
    try:
        beat = float(tags.get(HEARTBEAT_TAG, ""))
    except ValueError:
        return False
    return (time.time() if now is None else now) - beat < STALE_AFTER_S


def _copies(client: Any, name: str) -> list[Any]:
    """The versions of ``name`` tagged :data:`COPY_TAG`: bench copies, live or left over."""
    return [mv for mv in client.search_model_versions(f"name='{name}'") if COPY_TAG in (mv.tags or {})]


def _in_progress(name: str, mv: Any) -> SwapInProgress:
    owner = _parse_owner(mv.tags.get(OWNER_TAG, ""))
    try:
        beat = f", last heartbeat {time.time() - float(mv.tags[HEARTBEAT_TAG]):.0f} s ago"
    except (KeyError, ValueError):
        beat = ""
    return SwapInProgress(
        f"another churn bench stream is measuring hot reloads on {name}: run {owner.get('run', '?')} (pid "
        f"{owner.get('pid', '?')} on {owner.get('host', '?')}{beat}) holds version {mv.version}, its copy of "
        f"version {mv.tags[COPY_TAG]}; wait for it to end or stop it (the next run repairs what a stopped one leaves)"
    )


@contextlib.contextmanager
def _signals_held(note: str) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM over the block, in the main thread.

    The first one prints ``note`` and is delivered again once the block is done, to the
    handler it would have met (Python's raises KeyboardInterrupt); a second one goes to that
    handler at once (what is left then is a copy whose run is gone, which the next run
    repairs). Elsewhere than in the main thread, nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: Any) -> None:
        if caught:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            raise KeyboardInterrupt
        caught.append(signum)
        print(note, file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        signal.raise_signal(caught[0])


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
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _register_copy(self) -> str:
        """Register the copy (owner and heartbeat tags on it), start its heartbeat, wait until it is READY."""
        original = self.client.get_model_version(self.name, self.version)
        if original.source is None:
            raise RuntimeError(f"{self.name} version {self.version} has no source to register again")
        mv = self.client.create_model_version(
            self.name,
            source=original.source,
            run_id=original.run_id,
            tags={
                **original.tags,
                COPY_TAG: self.version,
                OWNER_TAG: _owner(self.run_id),
                HEARTBEAT_TAG: f"{time.time():.3f}",
            },
            description=f"churn bench stream {self.run_id}: a copy of version {self.version} for the hot-reload "
            "measurement, deleted at the run's end",
        )
        self.copy = str(mv.version)
        self._start_heartbeat()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while mv.status != "READY":
            if time.monotonic() > deadline:
                raise RuntimeError(f"model version {mv.version} still {mv.status} after {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
            mv = self.client.get_model_version(self.name, mv.version)
        return str(mv.version)

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            failed = False
            while not self._beat_stop.wait(HEARTBEAT_S):
                copy = self.copy
                if copy is None:
                    return
                try:
                    self.client.set_model_version_tag(self.name, copy, HEARTBEAT_TAG, f"{time.time():.3f}")
                    failed = False
                except Exception as exc:  # noqa: BLE001 - the registry away for a while: beat again later
                    if not failed:
                        logger.warning(
                            "bench copy heartbeat failed model=%s version=%s error=%s",
                            self.name,
                            copy,
                            f"{type(exc).__name__}: {exc}"[:200],
                        )
                    failed = True

        self._beat = threading.Thread(target=beat, name="bench-copy-heartbeat", daemon=True)
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join(HEARTBEAT_S)  # a beat under way ends before the copy goes

    def _announce(self, version: str, mv: Any = None) -> None:
        """Publish ``version`` as the champion on the data set's ``model-updated`` topic.

        ``mv`` is its :class:`mlflow.entities.model_registry.ModelVersion`, when already read.
        """
        from batch.announce import publish_model_updated
        from plumbing.artifacts import version_artifact_uri

        if mv is None:
            mv = self.client.get_model_version(self.name, version)
        registered: dict[str, Any] = {
            "model_name": self.name,
            "model_version": version,
            "alias": CHAMPION,
            "artifact_uri": version_artifact_uri(mv),
            "sha256": mv.tags["sha256"],
            "feature_names": [],
            "run_id": mv.run_id,
        }
        publish_model_updated(self.settings, registered, topic=self.topic)

    def _move(self, to: str, left: str) -> None:
        mv = self.client.get_model_version(self.name, to)  # read before the clock starts, as a batch cycle has it
        t = time.time()
        self.client.set_registered_model_alias(self.name, CHAMPION, to)
        self._announce(to, mv)
        self.announced.append((t, left, to))

    def run(self, latency_s: float, served: Callable[[str], bool]) -> None:
        """Swap at ``SWAP_AT[0] * latency_s`` seconds from now, and back at ``SWAP_AT[1]`` (thread target).

        No swap is made (:attr:`error` says why) while another run's copy is live
        (:func:`copy_owner_alive`): its moves would be timed as this run's reloads.

        Parameters
        ----------
        latency_s : float
            Duration of the phase the swaps fall in, seconds.
        served : callable
            ``served(version)`` is True once the worker scores with ``version`` (its ``/health``).
        """
        t0 = time.monotonic()
        try:
            live = [mv for mv in _copies(self.client, self.name) if copy_owner_alive(mv.tags)]
            if live:
                raise _in_progress(self.name, live[0])
            copy = self._register_copy()  # before the first swap's time: not part of the reload
            if self.stopped.wait(max(0.0, t0 + SWAP_AT[0] * latency_s - time.monotonic())):
                return
            self._move(copy, self.version)
            deadline = time.monotonic() + SERVED_TIMEOUT_S
            while not served(copy) and time.monotonic() < deadline:
                if self.stopped.wait(0.05):
                    return
            if self.stopped.wait(max(0.0, t0 + SWAP_AT[1] * latency_s - time.monotonic())):
                return
            self._move(self.version, copy)
        except Exception as exc:  # noqa: BLE001 - reported in the figures; restore() still runs
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("champion swap failed: %s", self.error)

    def restore(self, swapper: threading.Thread | None = None) -> None:
        """Point the alias at the original version again (announcing it if it had moved) and delete the copy.

        Ctrl-C and SIGTERM are held meanwhile (in the main thread): the first one says the
        champion is still being put back and is raised once that is done; a second one stops
        at once, leaving the copy to the next run's repair (its heartbeat stops with this run).

        Parameters
        ----------
        swapper : threading.Thread, optional
            The thread of :meth:`run` (:func:`start_swaps`), waited for first.

        Raises
        ------
        KeyboardInterrupt
            If Ctrl-C or SIGTERM came meanwhile.
        """
        note = (
            f"still moving {self.name}@{CHAMPION} back to version {self.version} and deleting the bench copy; "
            "Ctrl-C again to stop now and leave that to the next churn bench stream"
        )
        with _signals_held(note):
            if swapper is not None:
                swapper.join()
            self._stop_heartbeat()
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


def _delete_copy(client: Any, name: str, version: str) -> None:
    """Delete a bench copy; one already gone is fine (two runs starting at once both repair)."""
    from mlflow.exceptions import MlflowException

    from stream_app.registry_check import NOT_FOUND_CODES

    try:
        client.delete_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND_CODES:
            raise


def repair_interrupted_swap(settings: Settings, client: Any, name: str, model_updated_topic: str) -> str | None:
    """Undo what a run that is gone left: bench copies (tag :data:`COPY_TAG`) deleted, the alias moved back.

    Only copies whose run is gone (:func:`copy_owner_alive`) are touched. The alias, if it
    names one of them, moves back to the version copied; the champion is announced on
    ``model_updated_topic`` either way (a run stopped between moving the alias and announcing
    it may have left workers on the copy; workers already on the champion ignore it).

    Parameters
    ----------
    settings : Settings
    client : mlflow.MlflowClient
    name : str
        The registered classifier.
    model_updated_topic : str
        Where the champion is announced.

    Returns
    -------
    str or None
        The champion's version after a repair, None when there was nothing to repair.

    Raises
    ------
    SwapInProgress
        If a copy's run is still going (nothing is touched then).
    mlflow.exceptions.MlflowException
        The registry did not answer, or has no champion alias for ``name``.
    """
    copies = _copies(client, name)
    live = [mv for mv in copies if copy_owner_alive(mv.tags)]
    if live:
        raise _in_progress(name, live[0])
    champion = client.get_model_version_by_alias(name, CHAMPION)
    if not copies:
        return None
    held = str(champion.version)
    left = {str(mv.version): mv.tags[COPY_TAG] for mv in copies}
    original = left.get(held, held)
    swap = ChampionSwap(settings, name, original, model_updated_topic, "repair", client=client)
    if held in left:
        swap._move(original, held)
    else:
        swap._announce(original)
    for version in sorted(left, key=int):
        _delete_copy(client, name, version)
    deleted = ", ".join(sorted(left, key=int))
    if held in left:
        print(
            f"{name}@{CHAMPION} was left on version {held}, a copy of version {original} by an interrupted "
            f"churn bench stream: moved back to {original} (announced) and the copy deleted"
            + (f" (bench copies deleted: {deleted})" if len(left) > 1 else ""),
            file=sys.stderr,
        )
    else:
        print(
            f"bench copies of {name} left by an interrupted churn bench stream deleted: version{'s' * (len(left) > 1)} "
            f"{deleted}; {name}@{CHAMPION} is version {original} (announced again)",
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
