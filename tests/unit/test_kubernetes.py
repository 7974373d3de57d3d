"""The Kubernetes manifests (deploy/kubernetes/), offline.

Every file of the base is a plain manifest, checked on its own: core kinds against the
Kubernetes OpenAPI schemas that ``kubernetes-validate`` ships (strict: unknown fields fail),
the KEDA ScaledObject against the CRD's ``openAPIV3Schema`` vendored in tests/vendor/keda/.
Then against the code they run and against docker-compose.yaml: commands, variables, ports,
probes, the autoscaling bounds and the Secret references. Where a ``kubectl`` exists, the
base and the example overlay are also rendered with ``kubectl kustomize`` and checked whole.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from plumbing.settings import Settings
from schemas.topics import Topics
from tests.unit.test_compose import (
    _INTERPOLATION,
    MLFLOW_CLIENT_VARIABLES,
    MLFLOW_ROLES,
    REQUIRED_SETTINGS,
    SECRET_NAME,
    _compose_raw,
    _option_default,
    _resolve,
)

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
KEDA_CRD = REPO / "tests" / "vendor" / "keda" / "keda.sh_scaledobjects.yaml"
DOCS = REPO / "docs" / "kubernetes.md"

#: Kubernetes release whose API schemas the manifests must satisfy (the oldest we support:
#: the PDB's unhealthyPodEvictionPolicy is GA since 1.31).
KUBERNETES_VERSION = "1.32.0"

#: Secrets the manifests expect the cluster (or an overlay) to provide, with their keys. The
#: MLflow passwords and the dashboard's API key have the names of .env's variables for compose.
EXPECTED_SECRETS = {
    "churn-credentials": {
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        *(f"MLFLOW_{service.upper()}_PASSWORD" for service in MLFLOW_ROLES),
        "CHURN_DASHBOARD_API_KEY",
    },
    # The API's key file as `churn api keys create` writes it, mounted as a file.
    "churn-api-keys": {"api_keys.json"},
}

#: Not ours but Faust's: the worker's web server listens on 127.0.0.1 unless WEB_BIND says
#: otherwise (tests/unit/test_compose.py checks that Faust honours it).
WORKER_FRAMEWORK_VARIABLES = {"WEB_BIND": "0.0.0.0"}

SERVICES = ("worker", "batch", "api", "dashboard")


# --------------------------------------------------------------------- helpers
def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _base_files() -> list[Path]:
    return [BASE / name for name in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]]


def _base_docs() -> list[dict[str, Any]]:
    return [doc for path in _base_files() for doc in _load(path)]


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _deployment(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return _find(docs, "Deployment", f"churn-{service}")


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return _find(docs, "ConfigMap", "churn-config")["data"]


def _container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str | None]:
    """The container's variables as the kubelet sets them; Secret values are ``None``."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        assert set(source) == {"configMapRef"}, "only ConfigMaps come in whole (secrets key by key)"
        env.update(_find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env") or []:
        env[var["name"]] = var.get("value") if "valueFrom" not in var else None
    return env


def _secret_refs(docs: list[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    """Every ``secretKeyRef`` as ``(deployment, secret name, key, optional)``."""
    refs = []
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for var in container.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.append((doc["metadata"]["name"], ref["name"], ref["key"], bool(ref.get("optional"))))
    return refs


def _secret_volumes(docs: list[dict[str, Any]]) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """Every Secret mounted as files: ``(deployment, secret name, mount path, volume, mount)``."""
    found = []
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts") or []:
                volume = volumes[mount["name"]]
                if "secret" in volume:
                    name = volume["secret"]["secretName"]
                    found.append((doc["metadata"]["name"], name, mount["mountPath"], volume["secret"], mount))
    return found


def _compose_variable(service: str, var: str) -> str:
    """The .env variable compose takes ``var`` of ``service`` from (``${NAME...}``)."""
    value = str(_compose_raw()["services"][service]["environment"][var])
    match = _INTERPOLATION.fullmatch(value)
    assert match and match.group("name"), f"compose {service}: {var}={value!r} is not one ${{...}}"
    return match.group("name")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
    assert port in named, f"{container['name']}: no container port named {port!r}"
    return named[port]


def _compose_command(service: str) -> list[str]:
    return [str(c) for c in _compose_raw()["services"][service]["command"]]


# ------------------------------------------------------------------ KEDA's CRD
def _keda_schema() -> dict[str, Any]:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "ScaledObject"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def _unknown_fields(node: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare (what ``kubectl apply --validate=strict`` rejects)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    errors = []
    if isinstance(node, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in node.items():
            if props is not None and key in props:
                errors += _unknown_fields(value, props[key], f"{path}/{key}")
            elif isinstance(extra, dict):
                errors += _unknown_fields(value, extra, f"{path}/{key}")
            elif props is not None and not extra:
                errors.append(f"{path}/{key}")
    elif isinstance(node, list) and "items" in schema:
        for i, item in enumerate(node):
            errors += _unknown_fields(item, schema["items"], f"{path}/{i}")
    return errors


def _validate_scaled_object(doc: dict[str, Any]) -> list[str]:
    schema = _keda_schema()
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    # apiVersion/kind/metadata are the API server's: the CRD's schema leaves them open.
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    return errors + [f"{field}: unknown field" for field in _unknown_fields(body, schema)]


def _validate(doc: dict[str, Any]) -> list[str]:
    if doc["apiVersion"] == "keda.sh/v1alpha1":
        return _validate_scaled_object(doc)
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'/'.join(map(str, err.path))}: {err.message}"]
    return []


# ----------------------------------------------------------------- the files
def test_kustomization_lists_every_manifest_of_the_base():
    listed = {p.name for p in _base_files()}
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, f"not in kustomization.yaml: {present - listed}; missing: {listed - present}"


@pytest.mark.parametrize("path", _base_files(), ids=lambda p: p.name)
def test_base_manifest_is_valid(path):
    docs = _load(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        errors = _validate(doc)
        assert not errors, f"{path.name} {doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(errors)


def test_validation_catches_mistakes():
    docs = _base_docs()
    deployment = copy.deepcopy(_deployment(docs, "api"))
    _container(deployment)["readinessProbe"]["httpGet"]["paht"] = "/health"
    assert _validate(deployment)
    scaled = copy.deepcopy(_find(docs, "ScaledObject", "churn-worker"))
    scaled["spec"]["maxReplicaCounts"] = 4
    assert any("maxReplicaCounts" in e for e in _validate(scaled))
    scaled = copy.deepcopy(_find(docs, "ScaledObject", "churn-worker"))
    scaled["spec"]["maxReplicaCount"] = "4"
    assert _validate(scaled)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(scaled, KUBERNETES_VERSION, strict=True)


def test_keda_crd_is_vendored_with_its_licence():
    vendor = KEDA_CRD.parent
    assert "Apache License" in (vendor / "LICENSE").read_text()
    note = (vendor / "README.md").read_text()
    assert "kedacore/keda" in note and "v2." in note and "config/crd/bases/keda.sh_scaledobjects.yaml" in note


# --------------------------------------------------------- commands and env
@pytest.mark.parametrize("service", SERVICES)
def test_args_are_the_compose_commands(service):
    container = _container(_deployment(_base_docs(), service))
    assert "command" not in container, "keep the image's ENTRYPOINT (churn)"
    args = container["args"]
    cmd, path, rest = _resolve(args)
    cmd.make_context(" ".join(["churn", *path]), list(rest))
    compose = _compose_command(service)
    if service == "dashboard":
        # Same command; the API is the churn-api Service here, `api` in compose.
        i = args.index("--api-url")
        assert args[:i] == compose[: compose.index("--api-url")]
    else:
        assert args == compose


def test_dashboard_posts_to_the_api_service():
    from urllib.parse import urlsplit

    docs = _base_docs()
    args = _container(_deployment(docs, "dashboard"))["args"]
    cmd, _, rest = _resolve(args)
    url = urlsplit(cmd.make_context("dashboard", list(rest)).params["api_url"])
    service = _find(docs, "Service", url.hostname)
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    api = _deployment(docs, "api")
    assert _selects(service["spec"]["selector"], api["spec"]["template"]["metadata"]["labels"])
    api_port = _option_default(_resolve(_container(api)["args"])[0], "port")
    assert _port(_container(api), port["targetPort"]) == api_port
    assert url.path == urlsplit(_option_default(cmd, "api_url")).path


@pytest.mark.parametrize("service", SERVICES)
def test_environment_is_what_settings_reads_and_what_compose_sets(service):
    docs = _base_docs()
    env = _container_env(docs, _container(_deployment(docs, service)))
    extra = WORKER_FRAMEWORK_VARIABLES if service == "worker" else {}
    # MLflow's client reads its own variables (not Settings'): each service logs in as itself.
    others = set(extra) | set(MLFLOW_CLIENT_VARIABLES)
    known = set(Settings._ENV.values())
    assert set(env) - others <= known, f"not read by Settings.from_env: {sorted(set(env) - others - known)}"
    for var, value in extra.items():
        assert env[var] == value
    missing = [var for var in REQUIRED_SETTINGS if var not in env]
    assert not missing, f"must set {missing} (the defaults point at 127.0.0.1)"
    compose_env = _compose_raw()["services"][service]["environment"]
    assert set(env) == set(compose_env), "the same variables as docker-compose.yaml"
    settings = Settings.from_env({k: v for k, v in env.items() if v is not None})
    assert not settings.minio_endpoint.startswith("127.") and not settings.kafka_bootstrap_servers.startswith("127.")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_its_own_mlflow_user_as_in_compose(service):
    container = _container(_deployment(_base_docs(), service))
    env = {var["name"]: var for var in container["env"]}
    assert (
        env["MLFLOW_TRACKING_USERNAME"]["value"]
        == service
        == _compose_raw()["services"][service]["environment"]["MLFLOW_TRACKING_USERNAME"]
    )
    ref = env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]
    # The Secret's key is the .env variable compose reads the same password from (mlflow-init's).
    assert ref["name"] == "churn-credentials" and not ref.get("optional")
    assert ref["key"] == _compose_variable(service, "MLFLOW_TRACKING_PASSWORD") == f"MLFLOW_{service.upper()}_PASSWORD"
    assert service in MLFLOW_ROLES


def test_api_authenticates_with_the_key_file_from_its_secret():
    docs = _base_docs()
    api = _deployment(docs, "api")
    container = _container(api)
    env = _container_env(docs, container)
    assert env["CHURN_API_AUTH"] == "on" == _compose_raw()["services"]["api"]["environment"]["CHURN_API_AUTH"]
    settings = Settings.from_env({k: v for k, v in env.items() if v is not None})
    assert settings.api_auth == "on" and not settings.api_jwks_url  # so the key file must hold a key
    keys_file = settings.api_keys_path
    (mount,) = [m for m in _secret_volumes(docs) if m[0] == "churn-api" and Path(m[2]) == keys_file.parent]
    _, name, _, volume, volume_mount = mount
    assert name == "churn-api-keys" and keys_file.name in EXPECTED_SECRETS[name]
    # The directory, read-only, no subPath (a subPath mount never sees the Secret's updates).
    assert volume_mount.get("readOnly") is True and "subPath" not in volume_mount
    # Readable by the churn user through the pod's fsGroup, by nobody else.
    pod = api["spec"]["template"]["spec"]
    assert volume["defaultMode"] & 0o007 == 0 and volume["defaultMode"] & 0o040
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # Optional, for an API on JWTs alone: those settings come from the API's own ConfigMap.
    assert volume["optional"] is True
    jwt = _find(docs, "ConfigMap", "churn-api-auth")["data"]
    assert set(jwt) == {"CHURN_API_JWKS_URL", "CHURN_API_JWT_ISSUER", "CHURN_API_JWT_AUDIENCE"}
    assert {"configMapRef": {"name": "churn-api-auth"}} in container["envFrom"]
    # No other pod gets the API's settings; the dashboard reads the same key file (its login).
    for service in SERVICES:
        if service != "api":
            other = _container_env(docs, _container(_deployment(docs, service)))
            allowed = {"CHURN_API_KEY", "CHURN_API_KEYS_FILE"} if service == "dashboard" else {"CHURN_API_KEY"}
            assert not [var for var in other if var.startswith("CHURN_API_") and var not in allowed], service
    dashboard = _container_env(docs, _container(_deployment(docs, "dashboard")))
    assert dashboard["CHURN_API_KEYS_FILE"] == env["CHURN_API_KEYS_FILE"]
    assert sorted(m[0] for m in _secret_volumes(docs)) == ["churn-api", "churn-dashboard"]


def test_dashboard_sends_its_api_key_from_the_secret():
    docs = _base_docs()
    for service in SERVICES:
        env = {var["name"]: var for var in _container(_deployment(docs, service))["env"]}
        if service != "dashboard":
            assert "CHURN_API_KEY" not in env, service
            continue
        ref = env["CHURN_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "churn-credentials" and not ref.get("optional")
        assert ref["key"] == _compose_variable("dashboard", "CHURN_API_KEY") == "CHURN_DASHBOARD_API_KEY"


def test_config_map_holds_no_credential():
    for config_map in [d for d in _base_docs() if d["kind"] == "ConfigMap"]:
        assert not [k for k in config_map["data"] if SECRET_NAME.search(k)], config_map["metadata"]["name"]
    assert not [d for d in _base_docs() if d["kind"] == "Secret"], "the base commits no Secret"


def test_every_secret_reference_names_an_expected_secret_and_key():
    refs = _secret_refs(_base_docs())
    assert refs
    for deployment, name, key, _optional in refs:
        assert name in EXPECTED_SECRETS, f"{deployment}: Secret {name!r} is not one the docs tell you to create"
        assert key in EXPECTED_SECRETS[name], f"{deployment}: {name} has no key {key!r}"
        assert SECRET_NAME.search(key) or key == "KAFKA_SASL_USERNAME", f"{key} is not a credential: ConfigMap"
    for deployment, name, _path, volume, _mount in _secret_volumes(_base_docs()):
        assert name in EXPECTED_SECRETS, f"{deployment}: Secret {name!r} is not one the docs tell you to create"
        assert {item["key"] for item in volume.get("items") or []} <= EXPECTED_SECRETS[name]
    used = {name for _, name, _, _ in refs} | {name for _, name, _, _, _ in _secret_volumes(_base_docs())}
    assert used == set(EXPECTED_SECRETS), f"expected but unused: {set(EXPECTED_SECRETS) - used}"
    # The docs say how to create each one, with every key.
    docs = DOCS.read_text()
    for name, keys in EXPECTED_SECRETS.items():
        assert re.search(rf"kubectl (-n \S+ )?create secret generic {name} ", docs), (
            f"docs/kubernetes.md: create {name}"
        )
        for key in keys:
            assert f"--from-literal={key}=" in docs or f"--from-file={key}=" in docs, (
                f"docs/kubernetes.md: {name} {key}"
            )
    # And how to make the key file that goes into churn-api-keys.
    assert re.search(r"churn api keys create --name dashboard --scope predict", docs)


def test_example_credentials_are_marked_local_placeholders():
    path = OVERLAY / "credentials.local.env"
    text = path.read_text()
    assert "LOCAL DEVELOPMENT DEFAULT" in text
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert set(values) == EXPECTED_SECRETS["churn-credentials"]
    for key, value in values.items():
        assert value == "" or value.startswith("churn-local"), f"{key}={value!r} is not a local placeholder"


# ------------------------------------------------------------- the workers
def test_scaled_object_scales_the_worker_on_customers_lag():
    docs = _base_docs()
    scaled = _find(docs, "ScaledObject", "churn-worker")["spec"]
    worker = _deployment(docs, "worker")
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-worker"}
    assert "replicas" not in worker["spec"], "KEDA owns the worker's replica count"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    env = _container_env(docs, _container(worker))

    def resolved(param: str) -> str | None:  # KEDA: <param>, else <param>FromEnv in the target's env
        return meta[param] if param in meta else env[meta[f"{param}FromEnv"]]

    assert resolved("topic") == Topics.CUSTOMERS
    assert resolved("consumerGroup") == Settings.from_env(env).consumer_group == Settings().consumer_group
    assert resolved("bootstrapServers") == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert int(meta["lagThreshold"]) > 0
    assert meta["allowIdleConsumers"] == "false"
    assert meta["offsetResetPolicy"] == "earliest"  # as the scoring consumer's auto_offset_reset


def test_worker_replicas_are_capped_at_the_partition_count():
    docs = _base_docs()
    scaled = _find(docs, "ScaledObject", "churn-worker")["spec"]
    partitions = int(_config(docs)["CHURN_TOPIC_PARTITIONS"])
    assert partitions == Settings().topic_partitions == 4
    assert scaled["maxReplicaCount"] == partitions
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    # docker-compose.yaml creates `customers` with the same default.
    assert f"CHURN_TOPIC_PARTITIONS:-{partitions}" in (REPO / "docker-compose.yaml").read_text()


def test_worker_rollout_never_surges_past_the_partitions():
    strategy = _deployment(_base_docs(), "worker")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxSurge"] == 0


def test_pdb_protects_exactly_the_worker_pods():
    docs = _base_docs()
    pdb = _find(docs, "PodDisruptionBudget", "churn-worker")["spec"]
    selector = pdb["selector"]["matchLabels"]
    assert set(pdb["selector"]) == {"matchLabels"}
    for doc in docs:
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert _selects(selector, labels) == (doc["metadata"]["name"] == "churn-worker"), doc["metadata"]["name"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_worker_probes():
    docs = _base_docs()
    container = _container(_deployment(docs, "worker"))
    web_port = Settings.from_env({k: v for k, v in _container_env(docs, container).items() if v}).worker_web_port
    assert web_port == Settings().worker_web_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert _port(container, get["port"]) == web_port, probe
    # /health is 503 without partitions or champion: readiness only, never liveness.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert container["startupProbe"]["httpGet"]["path"] == "/metrics"


def test_worker_metrics_are_scrapable():
    docs = _base_docs()
    worker = _deployment(docs, "worker")
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    container = _container(worker)
    assert int(annotations["prometheus.io/port"]) == _port(container, "web")
    assert annotations["prometheus.io/path"] == "/metrics"
    service = _find(docs, "Service", "churn-worker")
    assert service["spec"]["clusterIP"] == "None"
    assert _selects(service["spec"]["selector"], worker["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize(
    ("service", "port", "ready", "live"), [("api", 8000, "/health", "/openapi.json"), ("dashboard", 8050, "/", "/")]
)
def test_api_and_dashboard_probes_and_services(service, port, ready, live):
    docs = _base_docs()
    deployment = _deployment(docs, service)
    container = _container(deployment)
    cmd, _, rest = _resolve(container["args"])
    params = cmd.make_context(service, list(rest)).params
    assert params["port"] == port == _option_default(cmd, "port") and params["host"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == ready
    assert container["livenessProbe"]["httpGet"]["path"] == live
    for probe in ("readinessProbe", "livenessProbe"):
        assert _port(container, container[probe]["httpGet"]["port"]) == port
    svc = _find(docs, "Service", f"churn-{service}")
    assert _selects(svc["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert [_port(container, p["targetPort"]) for p in svc["spec"]["ports"]] == [port]


def test_batch_is_one_scheduler_replaced_not_surged():
    batch = _deployment(_base_docs(), "batch")["spec"]
    assert batch["replicas"] == 1 and batch["strategy"] == {"type": "Recreate"}
    assert batch["template"]["spec"]["containers"][0]["args"][:2] == ["batch", "serve"]
    # A running cycle finishes on SIGTERM: the grace period covers a lease of the S3 lock.
    assert batch["template"]["spec"]["terminationGracePeriodSeconds"] >= Settings().batch_lock_ttl_s


@pytest.mark.parametrize("service", SERVICES)
def test_pods_run_as_the_images_unprivileged_user(service):
    pod = _deployment(_base_docs(), service)["spec"]["template"]["spec"]
    dockerfile = (REPO / "Dockerfile").read_text()
    uid = pod["securityContext"]["runAsUser"]
    assert pod["securityContext"]["runAsNonRoot"] is True and f"--uid {uid} " in dockerfile
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert _container_env(_base_docs(), container)["CHURN_DATA_DIR"] in mounts  # writable on a read-only root
    assert container["image"].split(":")[0] == "churn-stream"


# ---------------------------------------------------------- rendered (kubectl)
def _kubectl() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, text=True, timeout=30)
    return kubectl if out.returncode == 0 else None


def _render(directory: Path) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize (the per-file checks above still ran)")
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_example_overlay_files_exist():
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    for entry in kustomization["resources"]:
        assert (OVERLAY / entry).exists(), entry
    for patch in kustomization.get("patches") or []:
        if "path" in patch:
            assert (OVERLAY / patch["path"]).exists(), patch["path"]
    for generator in kustomization.get("secretGenerator") or []:
        for env_file in generator.get("envs") or []:
            assert (OVERLAY / env_file).exists(), env_file


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_rendered_kustomization_is_valid(directory):
    docs = _render(directory)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == 4 and "ScaledObject" in kinds and "PodDisruptionBudget" in kinds
    for doc in docs:
        errors = _validate(doc)
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(errors)
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "churn-stream", doc["kind"]


def test_rendered_overlay_resolves_secrets_and_keeps_the_cap():
    docs = _render(OVERLAY)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for deployment, name, key, optional in _secret_refs(docs):
        assert name in secrets, f"{deployment}: Secret {name} is not rendered"
        assert optional or key in secrets[name].get("data", {}), f"{deployment}: {name} lacks {key}"
    for deployment, name, _path, volume, _mount in _secret_volumes(docs):
        assert volume.get("optional") or name in secrets, f"{deployment}: Secret {name} is not rendered"
    scaled = _find(docs, "ScaledObject", "churn-worker")["spec"]
    assert scaled["maxReplicaCount"] == int(_config(docs)["CHURN_TOPIC_PARTITIONS"])
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {_find(docs, "Namespace", "churn-stream")["metadata"]["name"]}
    images = {_container(d)["image"] for d in docs if d["kind"] == "Deployment"}
    assert len(images) == 1 and not images.pop().startswith("churn-stream:")
