"""The two MLflow calls a scoring process makes, over MLflow's REST API, without importing ``mlflow``.

A worker and the prediction API only ask the registry which version an alias names and
download that version's artifact through the tracking server's artifact proxy. Importing
the ``mlflow`` package for that costs a scoring process 112 MB of resident memory (it
imports pandas, pyarrow, scipy, fastapi...: ``churn bench stream``'s ``worker_rss_mb``), half
of the worker's footprint. These are the same documented endpoints the ``mlflow`` client
calls (https://mlflow.org/docs/latest/api_reference/rest-api.html):

- ``GET /api/2.0/mlflow/registered-models/alias`` (``name``, ``alias``),
- ``GET /api/2.0/mlflow/runs/get`` (``run_id``): the run's ``artifact_uri``,
- ``GET /api/2.0/mlflow-artifacts/artifacts/<path>``: a file through the proxy.

Credentials and TLS come from the variables the ``mlflow`` client reads:
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic) or ``MLFLOW_TRACKING_TOKEN``
(bearer), ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_HTTP_REQUEST_TIMEOUT``. An artifact store the server does not proxy (a run whose
``artifact_uri`` is not ``mlflow-artifacts:``) is downloaded with the ``mlflow`` client.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx

#: Seconds per request when ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is unset (the settings' default).
DEFAULT_TIMEOUT_S = 60.0


class MlflowRestError(RuntimeError):
    """MLflow answered an error, or could not be reached.

    Attributes
    ----------
    error_code : str
        MLflow's ``error_code`` (``RESOURCE_DOES_NOT_EXIST``...), ``HTTP_<status>`` when the
        body has none, or ``UNREACHABLE``.
    """

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code


def _client(tracking_uri: str) -> httpx.Client:
    env = os.environ
    auth: Any = None
    headers = {}
    if env.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
    elif env.get("MLFLOW_TRACKING_USERNAME"):
        auth = (env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
    verify: Any = True
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        verify = False
    elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    timeout = float(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or DEFAULT_TIMEOUT_S)
    return httpx.Client(base_url=tracking_uri.rstrip("/"), auth=auth, headers=headers, verify=verify, timeout=timeout)


def _get_json(client: httpx.Client, path: str, params: dict[str, str]) -> dict[str, Any]:
    try:
        r = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise MlflowRestError("UNREACHABLE", f"{type(exc).__name__}: {exc}"[:300]) from exc
    if r.status_code != 200:
        try:
            body = r.json()
        except ValueError:
            body = {}
        code = body.get("error_code") if isinstance(body, dict) else None
        message = body.get("message", r.text) if isinstance(body, dict) else r.text
        raise MlflowRestError(code or f"HTTP_{r.status_code}", str(message)[:300])
    return r.json()


def model_version_by_alias(tracking_uri: str, name: str, alias: str) -> dict[str, Any]:
    """The registered model version ``name@alias`` (MLflow's ``ModelVersion`` JSON, tags as a dict).

    Parameters
    ----------
    tracking_uri : str
        The tracking server, also the registry.
    name, alias : str

    Returns
    -------
    dict
        ``version`` (str), ``run_id`` (str), ``tags`` (dict of str to str), and the other
        fields MLflow returns.

    Raises
    ------
    MlflowRestError
        ``RESOURCE_DOES_NOT_EXIST`` (or ``INVALID_PARAMETER_VALUE``) when the model or the
        alias does not exist; any other code when the registry could not be asked.
    """
    with _client(tracking_uri) as client:
        body = _get_json(client, "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias})
    mv = dict(body.get("model_version") or {})
    mv["tags"] = {t["key"]: t.get("value", "") for t in mv.get("tags") or []}
    mv["version"] = str(mv.get("version", ""))
    return mv


def download_run_artifact(tracking_uri: str, artifact_uri: str, dst_dir: Path) -> Path:
    """Download ``runs:/<run_id>/<path>`` into ``dst_dir``; the local file's path.

    Parameters
    ----------
    tracking_uri : str
    artifact_uri : str
        ``runs:/<run_id>/<path>`` (through the REST API when the run's store is proxied);
        any other URI the ``mlflow`` client reads (``file:``, ``s3:``...) goes through it.
    dst_dir : Path
        Created when missing.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        If a ``runs:/`` URI names no run or no path.
    MlflowRestError
        The run or the file does not exist, or MLflow could not be asked.
    """
    parsed = urlparse(artifact_uri)
    if parsed.scheme != "runs":  # file:, s3:... : the mlflow client knows every store
        return _mlflow_download(tracking_uri, artifact_uri, dst_dir)
    run_id, _, path = (parsed.netloc + parsed.path).lstrip("/").partition("/")
    if not run_id or not path:
        raise ValueError(f"artifact_uri: expected runs:/<run_id>/<path>, got {artifact_uri!r}")
    dst_dir.mkdir(parents=True, exist_ok=True)  # as the mlflow client does
    local = dst_dir / Path(path).name
    with _client(tracking_uri) as client:
        run = _get_json(client, "/api/2.0/mlflow/runs/get", {"run_id": run_id})
        root = run.get("run", {}).get("info", {}).get("artifact_uri", "")
        store = urlparse(root)
        if store.scheme != "mlflow-artifacts":  # not proxied by the server (s3://, file:...)
            return _mlflow_download(tracking_uri, artifact_uri, dst_dir)
        remote = f"{store.path.strip('/')}/{path.strip('/')}"
        url = f"/api/2.0/mlflow-artifacts/artifacts/{quote(remote)}"
        try:
            with client.stream("GET", url) as r:
                if r.status_code != 200:
                    r.read()
                    raise MlflowRestError(f"HTTP_{r.status_code}", f"{remote}: {r.text[:200]}")
                with open(local, "wb") as out:
                    for chunk in r.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise MlflowRestError("UNREACHABLE", f"{type(exc).__name__}: {exc}"[:300]) from exc
    return local


def _mlflow_download(tracking_uri: str, artifact_uri: str, dst_dir: Path) -> Path:
    import mlflow.artifacts

    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst_dir), tracking_uri=tracking_uri)
    )
