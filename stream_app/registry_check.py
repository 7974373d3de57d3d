"""What the registry's aliases name: the only source a model store loads a model from.

A ``model-updated`` announcement is a hint to ask the registry now, never a source of truth:
anyone who can write that topic could otherwise put any registered version into service
(issue 17, point 7). :func:`mlflow_alias_lookup` asks MLflow which version an alias names and
returns where its artifact is and its registered SHA-256; :class:`stream_app.model_store.ModelStore`
loads only that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plumbing.mlflow_rest import MlflowRestError, model_version_by_alias
from schemas.registry import ARTIFACT_PATH

#: MLflow error codes of a missing registered model or alias: the registry answered "none".
#: Any other error (connection refused, timeout, 401/403, 5xx) means it could not be asked.
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class RegistryUnavailableError(RuntimeError):
    """The registry could not be asked (unreachable, refused our credentials, or too slow)."""


@dataclass(frozen=True)
class AliasTarget:
    """The version a registry alias names, and where its verified artifact is.

    Parameters
    ----------
    model_name : str
        Registered model, e.g. ``churn-classifier``.
    alias : str
        ``champion`` or ``challenger``.
    version : str
        The registered version the alias names, e.g. ``"7"``.
    artifact_uri : str
        ``runs:/<run_id>/<artifact_path>`` of the version's pipeline.
    sha256 : str
        The version's registered ``sha256`` tag (empty if missing: verification then fails).
    run_id : str or None
        The run that produced the version.
    """

    model_name: str
    alias: str
    version: str
    artifact_uri: str
    sha256: str
    run_id: str | None = None


#: ``(model_name, alias) -> AliasTarget or None``; raises :class:`RegistryUnavailableError`.
AliasLookup = Callable[[str, str], "AliasTarget | None"]


def mlflow_alias_lookup(tracking_uri: str) -> AliasLookup:
    """A blocking lookup of ``model_name@alias`` in the MLflow registry at ``tracking_uri``.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking server, also the registry.

    Returns
    -------
    callable
        ``lookup(model_name, alias)`` returns the :class:`AliasTarget`, or None when the model
        or the alias does not exist, and raises :class:`RegistryUnavailableError` when MLflow
        cannot be asked.
    """

    def lookup(model_name: str, alias: str) -> AliasTarget | None:
        # MLflow's REST API, not the mlflow package: importing it costs a scoring process
        # 112 MB (plumbing.mlflow_rest).
        try:
            mv = model_version_by_alias(tracking_uri, model_name, alias)
        except MlflowRestError as exc:
            if exc.error_code in NOT_FOUND_CODES:
                return None
            raise RegistryUnavailableError(str(exc)[:300]) from exc
        tags = mv["tags"]
        run_id = mv.get("run_id")
        return AliasTarget(
            model_name=model_name,
            alias=alias,
            version=mv["version"],
            artifact_uri=f"runs:/{run_id}/{tags.get('artifact_path', ARTIFACT_PATH)}",
            sha256=tags.get("sha256", ""),
            run_id=run_id,
        )

    return lookup


def is_older(version: str, than: str) -> bool:
    """Whether registered ``version`` precedes ``than`` (MLflow numbers versions 1, 2, ...).

    Versions that are not integers are never called older (no order is known).
    """
    try:
        return int(version) < int(than)
    except ValueError:
        return False
