"""The production stack definition (docker-compose.yaml, Dockerfile, .env.example), without Docker.

The compose file is checked against the Compose Specification's JSON schema (the copy
``check-jsonschema`` ships), then against the code it runs: every command is a real
``churn`` command line, every variable our containers get is one ``Settings.from_env``
reads, published ports match the CLI defaults, and no credential is committed.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from importlib.metadata import distribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import pytest
import yaml

from churn_stream.cli import main as churn_cli
from plumbing.clients import kafka_kwargs
from plumbing.settings import LOCAL_DEFAULT_ACCESS_KEY, LOCAL_DEFAULT_SECRET_KEY, Settings
from schemas.topics import Topics

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

#: The Dockerfile stage our services run from (ENTRYPOINT ["churn"]).
CHURN_TARGET = "churn"

#: Settings whose defaults point at the local stack on 127.0.0.1: every container must set them.
REQUIRED_SETTINGS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "MINIO_ENDPOINT",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "MLFLOW_TRACKING_URI",
    "CHURN_DATA_DIR",
)

#: Variables our containers get that Settings does not read, per service, with their only value.
#: WEB_BIND is Faust's (the worker's web server listens on 127.0.0.1 without it; Prometheus and
#: Kubernetes probes come from outside the container); test_faust_honours_web_bind proves it acts.
FRAMEWORK_VARIABLES = {"worker": {"WEB_BIND": "0.0.0.0"}}

#: MLflow's own client variables (not Settings: MLflow's client reads them in every process, for
#: every request and artifact download). Each churn service logs in as itself; see
#: test_each_service_is_its_own_mlflow_and_kafka_user.
MLFLOW_CLIENT_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")

#: MLflow role of each churn service's user (granted by the mlflow-init job).
MLFLOW_ROLES = {"worker": "churn-reader", "api": "churn-reader", "dashboard": "churn-reader", "batch": "churn-editor"}

#: Variable names that hold credentials (``CHURN_API_KEY``, not ``CHURN_API_KEYS_FILE``: a path).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|TOKEN|CREDENTIAL|API_KEY$", re.IGNORECASE)

#: The prediction API's settings, only the api service gets them (authentication on, key file, JWTs).
API_AUTH_VARIABLES = (
    "CHURN_API_AUTH",
    "CHURN_API_KEYS_FILE",
    "CHURN_API_JWKS_URL",
    "CHURN_API_JWT_ISSUER",
    "CHURN_API_JWT_AUDIENCE",
)

#: The command docs/production.md and .env.example give for the dashboard's key (run in the api
#: service's container, so the key file lands on its volume).
API_KEYS_CREATE = re.compile(r"docker compose (?:--env-file \S+ )?run --rm --no-deps api (api keys create [^`\n]*)")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}; $$ escapes.
_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


# --------------------------------------------------------------------- helpers
def _compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env_example() -> dict[str, str]:
    values = {}
    for n, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "=" in line, f".env.example:{n}: expected KEY=VALUE, got {line!r}"
        key, value = line.split("=", 1)
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f".env.example:{n}: bad variable name {key!r}"
        assert key not in values, f".env.example:{n}: {key} defined twice"
        values[key] = value
    return values


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset of the spec this file may use)."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise AssertionError(f"required variable {name} is not set: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        return value or ""

    return _INTERPOLATION.sub(sub, text)


def _walk_strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _walk_strings(key)
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_strings(item)


def _map_strings(node: Any, fn) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {k: _map_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_map_strings(v, fn) for v in node]
    return node


def _references() -> list[tuple[str, str | None]]:
    """Every ``${VAR...}`` in the compose file as ``(name, operator)``."""
    refs = []
    for text in _walk_strings(_compose_raw()):
        for m in _INTERPOLATION.finditer(text):
            if m.group("name"):
                refs.append((m.group("name"), m.group("op")))
    return refs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yaml as ``docker compose --env-file .env.example config`` would see it."""
    env = _env_example()
    return _map_strings(_compose_raw(), lambda s: _interpolate(s, env))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def _churn_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("target") == CHURN_TARGET
    }


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _resolve(argv: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """Walk ``churn`` groups along ``argv``: the leaf command, its path and its own arguments."""
    cmd: click.Command = churn_cli
    path: list[str] = []
    args = list(argv)
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), args[0])
        assert sub is not None, (
            f"`churn {' '.join(path + [args[0]])}` is not a churn command "
            f"(choices: {sorted(cmd.list_commands(click.Context(cmd)))})"
        )
        cmd, path, args = sub, path + [args.pop(0)], args
    return cmd, path, args


def _option_default(cmd: click.Command, name: str) -> Any:
    for param in cmd.params:
        if param.name == name:
            return param.default
    raise AssertionError(f"{cmd.name} has no --{name} option")


def _dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line.strip(), re.IGNORECASE)
        if m:
            current = m.group(2) or f"#{len(stages)}"
            stages[current] = [line.strip()]
        elif current is not None:
            stages[current].append(line.strip())
    return stages


# ---------------------------------------------------------------------- schema
def _compose_spec_schema() -> dict[str, Any]:
    # Read the file without importing check_jsonschema (its CLI module needs a newer click
    # than faust-streaming allows); only the vendored schema is used.
    dist = distribution("check-jsonschema")
    files = [f for f in dist.files or () if f.name == "compose-spec.json"]
    assert files, "check-jsonschema no longer ships compose-spec.json"
    return json.loads(files[0].locate().read_text())


@pytest.mark.parametrize("variant", ["as written", "interpolated"])
def test_compose_file_matches_the_compose_specification(variant, compose):
    schema = _compose_spec_schema()
    document = _compose_raw() if variant == "as written" else compose
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def _compose_v2() -> list[str] | None:
    """argv of a Docker Compose v2 binary (``CHURN_COMPOSE_BIN``, ``docker compose``, ``docker-compose``)."""
    import os
    import shutil
    import subprocess

    candidates = [[os.environ["CHURN_COMPOSE_BIN"]]] if os.environ.get("CHURN_COMPOSE_BIN") else []
    if shutil.which("docker"):
        candidates.append([shutil.which("docker"), "compose"])
    if shutil.which("docker-compose"):
        candidates.append([shutil.which("docker-compose")])
    for argv in candidates:
        try:
            out = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2"):
            return argv
    return None


def test_compose_v2_accepts_the_file_when_installed(tmp_path):
    # `config` needs no engine; the machines here have the docker CLI without the compose plugin.
    import subprocess

    argv = _compose_v2()
    if argv is None:
        pytest.skip("no Docker Compose v2 binary (set CHURN_COMPOSE_BIN to run this check)")
    # A clean environment: a developer's exported KAFKA_*/MINIO_* must not mask a missing .env entry.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    common = [*argv, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    ok = subprocess.run(
        [*common, "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [*common, "--env-file", "/dev/null", "config", "--quiet"], capture_output=True, text=True, env=env, timeout=60
    )
    assert missing.returncode != 0 and "required variable" in missing.stderr


def test_schema_check_catches_a_misspelt_key():
    schema = _compose_spec_schema()
    broken = _compose_raw()
    broken["services"]["worker"]["depends"] = broken["services"]["worker"].pop("depends_on")
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


# --------------------------------------------------------------- the services
def test_expected_services_and_named_volumes(compose):
    services = compose["services"]
    assert {
        "kafka",
        "kafka-init",
        "minio",
        "minio-init",
        "postgres",
        "mlflow",
        "worker",
        "batch",
        "api",
        "dashboard",
        "prometheus",
        "grafana",
    } <= set(services)
    assert set(_churn_services(compose)) == {"worker", "batch", "api", "dashboard"}
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            assert source in declared, f"{name}: volume {source!r} is not a named volume of the file"


@pytest.mark.parametrize("service", ["worker", "batch", "api", "dashboard"])
def test_command_is_a_real_churn_command(compose, service):
    svc = compose["services"][service]
    cmd, path, args = _resolve(_command(svc))
    # A group runs alone only when it says so (`churn api` serves; `churn api keys ...` manages its keys).
    runs_alone = not isinstance(cmd, click.Group) or cmd.invoke_without_command
    assert runs_alone, f"{service}: `churn {' '.join(path)}` needs a subcommand"
    # Parses the options exactly as the CLI would (unknown options and bad values fail here).
    cmd.make_context(" ".join(["churn", *path]), list(args))


def test_services_run_the_expected_commands(compose):
    paths = {name: _resolve(_command(svc))[1] for name, svc in _churn_services(compose).items()}
    assert paths == {"worker": ["worker"], "batch": ["batch", "serve"], "api": ["api"], "dashboard": ["dashboard"]}


@pytest.mark.parametrize(("service", "port"), [("api", 8000), ("dashboard", 8050)])
def test_published_ports_match_the_cli_defaults(compose, service, port):
    svc = compose["services"][service]
    cmd, _, args = _resolve(_command(svc))
    assert _option_default(cmd, "port") == port
    ctx = cmd.make_context(service, list(args))
    assert ctx.params["port"] == port and ctx.params["host"] == "0.0.0.0"
    container_ports = {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in svc["ports"]}
    assert container_ports == {port}
    assert f":{port}/" in " ".join(svc["healthcheck"]["test"])


def test_dashboard_posts_to_the_api_service(compose):
    cmd, _, args = _resolve(_command(compose["services"]["dashboard"]))
    api_url = urlsplit(cmd.make_context("dashboard", list(args)).params["api_url"])
    default = urlsplit(_option_default(cmd, "api_url"))
    api_port = _option_default(_resolve(_command(compose["services"]["api"]))[0], "port")
    assert (api_url.hostname, api_url.port, api_url.path) == ("api", api_port, default.path)


def test_worker_runs_two_replicas_on_its_internal_health_port(compose):
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    # Two replicas cannot share a container name or a published host port.
    assert "container_name" not in worker and "ports" not in worker
    port = int(_environment(worker).get("CHURN_WORKER_WEB_PORT", Settings().worker_web_port))
    assert f"127.0.0.1:{port}/health" in " ".join(worker["healthcheck"]["test"])


# ---------------------------------------------------------------- environment
@pytest.mark.parametrize("service", ["worker", "batch", "api", "dashboard"])
def test_environment_is_what_settings_reads(compose, service):
    env = _environment(compose["services"][service])
    framework = FRAMEWORK_VARIABLES.get(service, {})
    for var, value in framework.items():
        assert env.pop(var) == value, f"{service}: {var}"
    for var in MLFLOW_CLIENT_VARIABLES:
        assert env.pop(var), f"{service}: must log in to MLflow (basic-auth) as its own user: {var}"
    known = set(Settings._ENV.values())
    assert set(env) <= known, f"{service}: not read by Settings.from_env: {sorted(set(env) - known)}"
    missing = [var for var in REQUIRED_SETTINGS if not env.get(var)]
    assert not missing, f"{service}: must set {missing} (the defaults point at 127.0.0.1)"
    settings = Settings.from_env(env)  # parses (ints, bools) without error
    assert settings.minio_secure is False and not settings.minio_endpoint.startswith("127.")
    assert kafka_kwargs(settings) == {"bootstrap_servers": "kafka:9092"}


def test_faust_honours_web_bind(tmp_path, monkeypatch):
    # Faust reads WEB_BIND over the App's keyword argument; without it the worker stays on loopback.
    from stream_app.worker import create_app

    settings = Settings(data_dir=tmp_path)
    monkeypatch.delenv("WEB_BIND", raising=False)
    assert create_app(settings).conf.web_bind == "127.0.0.1"
    monkeypatch.setenv("WEB_BIND", FRAMEWORK_VARIABLES["worker"]["WEB_BIND"])
    assert create_app(settings).conf.web_bind == "0.0.0.0"


@pytest.mark.parametrize("service", ["worker", "batch", "api", "dashboard"])
def test_endpoints_name_services_of_the_stack(compose, service):
    settings = Settings.from_env(_environment(compose["services"][service]))
    services = compose["services"]
    for hostport in settings.kafka_bootstrap_servers.split(","):
        assert hostport.split(":")[0] in services
    assert settings.minio_endpoint == "minio:9000" and "minio" in services
    url = urlsplit(settings.mlflow_tracking_uri)
    assert url.hostname in services and url.port == 5000
    assert "--port" in services["mlflow"]["command"] and "5000" in services["mlflow"]["command"]


@pytest.mark.parametrize("service", ["worker", "batch", "api", "dashboard"])
def test_each_service_is_its_own_mlflow_and_kafka_user(service):
    env = _environment(_compose_raw()["services"][service])
    up = service.upper()
    assert env["MLFLOW_TRACKING_USERNAME"] == service
    assert env["MLFLOW_TRACKING_PASSWORD"].startswith(f"${{MLFLOW_{up}_PASSWORD:?")
    # Kafka: the service's own variables (empty for the bundled PLAINTEXT broker), never a shared one.
    assert env["KAFKA_SASL_USERNAME"] == f"${{KAFKA_{up}_SASL_USERNAME:-}}"
    assert env["KAFKA_SASL_PASSWORD"] == f"${{KAFKA_{up}_SASL_PASSWORD:-}}"


def test_api_starts_with_authentication_on_and_a_key_file_on_its_volume(compose):
    raw = _environment(_compose_raw()["services"]["api"])
    # A literal: neither .env nor the shell can switch authentication off in this stack.
    assert raw["CHURN_API_AUTH"] == "on"
    for var in ("CHURN_API_JWKS_URL", "CHURN_API_JWT_ISSUER", "CHURN_API_JWT_AUDIENCE"):
        assert raw[var] == f"${{{var}:-}}", f"{var}: optional, from .env"
    api = compose["services"]["api"]
    settings = Settings.from_env(_environment(api))
    assert settings.api_auth == "on" and not settings.api_jwks_url  # so the key file must hold a key
    # The key file is on a named volume mounted at the data dir: it survives restarts and is the
    # one `docker compose run api api keys ...` writes (same service, same volume).
    mounts = {v.split(":")[1]: v.split(":")[0] for v in api["volumes"]}
    (target,) = [t for t in mounts if Path(t) in settings.api_keys_path.parents]
    assert mounts[target] in compose["volumes"] and Path(target) == settings.data_dir
    # A new volume takes the owner of the image's directory: the churn user must own it.
    stages = _dockerfile_stages()
    assert any(f"chown churn:churn {target}" in line for line in stages["runtime"]), "the volume must be writable"
    # Nobody else gets the API's settings, but the dashboard reads the same key file (its login).
    for name, svc in _churn_services(compose).items():
        if name == "dashboard":
            assert set(_environment(svc)) & set(API_AUTH_VARIABLES) == {"CHURN_API_KEYS_FILE"}
        elif name != "api":
            assert not set(_environment(svc)) & set(API_AUTH_VARIABLES), name


def test_dashboard_logs_people_in_against_the_apis_key_file_read_only(compose):
    api, dashboard = compose["services"]["api"], compose["services"]["dashboard"]
    api_file = Settings.from_env(_environment(api)).api_keys_path
    assert Settings.from_env(_environment(dashboard)).api_keys_path == api_file
    api_mounts = {v.split(":")[1]: v.split(":")[0] for v in api["volumes"]}
    (mount,) = dashboard["volumes"]
    volume, target, mode = mount.split(":")
    assert (volume, mode) == (api_mounts[target], "ro") and Path(target) in api_file.parents


def test_dashboard_sends_its_own_api_key_and_only_it_gets_one(compose):
    raw = _environment(_compose_raw()["services"]["dashboard"])
    assert raw["CHURN_API_KEY"] == "${CHURN_DASHBOARD_API_KEY:-}"
    assert "CHURN_DASHBOARD_API_KEY" in _env_example()
    holders = [name for name, svc in _churn_services(compose).items() if "CHURN_API_KEY" in _environment(svc)]
    assert holders == ["dashboard"]


@pytest.mark.parametrize("path", [ENV_EXAMPLE, REPO / "docs" / "production.md"], ids=lambda p: p.name)
def test_documented_key_command_makes_a_predict_key_in_the_apis_container(path):
    commands = API_KEYS_CREATE.findall(path.read_text())
    assert len(commands) >= (2 if path.suffix == ".md" else 1), f"{path.name}: how to create the dashboard's key"
    for command in commands:
        cmd, cli_path, args = _resolve(shlex.split(command))
        assert cli_path == ["api", "keys", "create"]
        params = cmd.make_context(" ".join(["churn", *cli_path]), list(args)).params
        assert "predict" in params["scopes"] and "admin" not in params["scopes"]


def test_mlflow_runs_basic_auth_and_grants_nothing_by_default(compose):
    mlflow = compose["services"]["mlflow"]
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = _environment(mlflow)
    (config,) = mlflow["configs"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == config["target"]
    ini = compose["configs"][config["source"]]["content"]
    assert "default_permission = NO_PERMISSIONS" in ini.splitlines()
    assert "authorization_function = mlflow.server.auth:authenticate_request_basic_auth" in ini.splitlines()
    assert urlsplit(ini.split("database_uri = ", 1)[1].split()[0]).hostname == "postgres"
    raw = _environment(_compose_raw()["services"]["mlflow"])
    assert raw["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert raw["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${MLFLOW_FLASK_SECRET_KEY:?")


def test_mlflow_init_gives_each_service_its_least_privilege_role(compose):
    init = compose["services"]["mlflow-init"]
    assert init["depends_on"]["mlflow"]["condition"] == "service_healthy" and init["restart"] == "no"
    script = init["command"][0]
    compile(script, "mlflow-init", "exec")  # valid Python
    assert '("churn-reader", "READ"), ("churn-editor", "EDIT")' in script
    assert 'for resource_type in ("experiment", "registered_model")' in script
    users = dict(re.findall(r'"(\w+)": "(churn-\w+)"', script))
    assert users == MLFLOW_ROLES
    env = _environment(_compose_raw()["services"]["mlflow-init"])
    for user in MLFLOW_ROLES:
        assert 'os.environ["MLFLOW_" + user.upper() + "_PASSWORD"]' in script
        assert env[f"MLFLOW_{user.upper()}_PASSWORD"].startswith(f"${{MLFLOW_{user.upper()}_PASSWORD:?")


def test_mlflow_uses_postgres_and_minio(compose):
    mlflow = compose["services"]["mlflow"]
    env = _environment(mlflow)
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert urlsplit(env["MLFLOW_BACKEND_STORE_URI"]).hostname == "postgres"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    command = mlflow["command"]
    assert command[command.index("--artifacts-destination") + 1] == "s3://mlflow/artifacts"
    assert "mlflow" in command[command.index("--allowed-hosts") + 1].split(",")
    assert mlflow["build"]["target"] == "mlflow"


def test_buckets_and_topics_are_created_at_start(compose):
    script = compose["services"]["minio-init"]["command"][0]
    for bucket in ("raw-data", "processed-data", "models", "mlflow"):
        assert bucket in script
    topics_script = compose["services"]["kafka-init"]["command"][0]
    created = re.findall(r"^\s*create (\S+) ", topics_script, re.MULTILINE)
    assert sorted(created) == sorted(Topics.all())


# ------------------------------------------------------------------ start order
def test_depends_on_targets_exist_and_report_readiness(compose):
    services = compose["services"]
    for name, svc in services.items():
        for target, spec in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is a one-shot job"
            else:
                raise AssertionError(f"{name} -> {target}: use service_healthy or service_completed_successfully")


def test_start_order_has_no_cycle(compose):
    services = compose["services"]
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        assert state.get(name) != "open", f"depends_on cycle: {' -> '.join(trail + [name])}"
        if state.get(name) == "done":
            return
        state[name] = "open"
        for target in services[name].get("depends_on") or {}:
            visit(target, trail + [name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_our_services_wait_for_topics_buckets_and_mlflow(compose):
    for name, svc in _churn_services(compose).items():
        deps = svc["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully", name
        assert deps["minio-init"]["condition"] == "service_completed_successfully", name
        assert deps["mlflow"]["condition"] == "service_healthy", name
        assert deps["mlflow-init"]["condition"] == "service_completed_successfully", name


def test_kafka_is_kraft_with_internal_and_host_listeners(compose):
    kafka = compose["services"]["kafka"]
    env = _environment(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "KAFKA_ZOOKEEPER_CONNECT" not in env
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka:9092"
    host_port = advertised["EXTERNAL"].rsplit(":", 1)[1]
    assert any(str(p).endswith(f":{host_port}:{host_port}") for p in kafka["ports"])
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])


def test_published_ports_bind_to_loopback_by_default(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published on every interface"


# ------------------------------------------------------------ .env and secrets
def test_env_example_defines_every_variable_used_without_default():
    defined = _env_example()
    required = {name for name, op in _references() if op in (None, ":?", "?")}
    assert required, "credentials must be required variables (${VAR:?...}), not defaults"
    assert required <= set(defined), f"missing from .env.example: {sorted(required - set(defined))}"
    assert not set(defined) - {name for name, _ in _references()}, "unused variables in .env.example"


def test_no_credential_is_committed():
    raw = _compose_raw()
    # In the compose file a credential is only ever a required reference: no literal, no default.
    for name, svc in raw["services"].items():
        for var, value in _environment(svc).items():
            if SECRET_NAME.search(var) and value:
                refs = list(_INTERPOLATION.finditer(value))
                assert refs, f"{name}: {var} holds a literal value"
                for m in refs:
                    if m.group("name") and SECRET_NAME.search(m.group("name")):
                        assert m.group("op") in (None, ":?", "?") or m.group("arg") == "", (
                            f"{name}: {var} falls back to a built-in default"
                        )
    # .env.example holds only the documented local defaults, marked as such.
    text = ENV_EXAMPLE.read_text()
    assert "LOCAL DEVELOPMENT DEFAULT" in text
    env = _env_example()
    assert env["MINIO_ACCESS_KEY"] == LOCAL_DEFAULT_ACCESS_KEY
    assert env["MINIO_SECRET_KEY"] == LOCAL_DEFAULT_SECRET_KEY
    for var, value in env.items():
        if SECRET_NAME.search(var) and value:
            assert value.startswith("churn-local"), f"{var}={value!r} does not look like a local default"
    # Nothing shaped like a real key anywhere in the stack definition.
    for path in (COMPOSE_FILE, ENV_EXAMPLE, DOCKERFILE):
        content = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----", content), path.name
        assert not re.search(r"(?<![A-Za-z0-9/+_-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+_-])", content), (
            f"{path.name}: a 40-character token looks like a secret access key"
        )


def test_env_files_stay_out_of_images():
    patterns = DOCKERIGNORE.read_text().split()
    assert ".env" in patterns and ".git" in patterns


# ------------------------------------------------------------------ Dockerfile
def test_dockerfile_builds_non_root_churn_image():
    stages = _dockerfile_stages()
    first = next(iter(stages.values()))[0]
    assert "python:3.11-slim" in DOCKERFILE.read_text() and first.startswith("FROM")
    assert list(stages)[-1] == CHURN_TARGET, "the churn image must be the default (last) stage"
    churn = stages[CHURN_TARGET]
    assert 'ENTRYPOINT ["churn"]' in churn
    users = [line.split()[1] for line in churn if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(re.search(r"pip install \.($|\s)", line) for lines in stages.values() for line in lines)


def test_compose_build_targets_exist(compose):
    stages = _dockerfile_stages()
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if isinstance(build, dict):
            assert build.get("target") in stages, f"{name}: no stage {build.get('target')!r} in Dockerfile"
            users = [line.split()[1] for line in stages[build["target"]] if line.startswith("USER ")]
            assert users and users[-1] not in ("root", "0"), f"{name}: runs as root"


# ------------------------------------------- Kafka security from the environment
def test_kafka_kwargs_plaintext_by_default():
    assert kafka_kwargs(Settings()) == {"bootstrap_servers": "127.0.0.1:9092"}


def test_kafka_kwargs_sasl_ssl_from_environment():
    import ssl

    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093",
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "churn",
            "KAFKA_SASL_PASSWORD": "not-in-repr",
        }
    )
    assert "not-in-repr" not in repr(settings)
    kwargs = kafka_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("churn", "not-in-repr")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_kafka_kwargs_are_accepted_by_aiokafka():
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings = Settings().with_overrides(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )

    async def build() -> None:  # constructing validates the arguments; nothing connects
        AIOKafkaProducer(**kafka_kwargs(settings))
        AIOKafkaConsumer(**kafka_kwargs(settings))

    asyncio.run(build())


def test_kafka_kwargs_ssl_uses_the_configured_ca(tmp_path):
    settings = Settings().with_overrides(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        kafka_kwargs(settings)
    kwargs = kafka_kwargs(settings.with_overrides(kafka_ssl_cafile=""))
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs


def test_kafka_kwargs_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL"):
        kafka_kwargs(Settings().with_overrides(kafka_security_protocol="TLS"))


# ------------------------------------------------------------ testcontainers
def test_docker_available_is_false_quickly_without_an_engine():
    from tests.integration.containers import docker_available

    start = time.monotonic()
    assert docker_available(environ={"DOCKER_HOST": "unix:///nonexistent/churn-test/docker.sock"}) is False
    assert docker_available(environ={"DOCKER_HOST": "tcp://127.0.0.1:9"}) is False
    assert time.monotonic() - start < 6


def test_docker_available_answers_within_its_bound_here():
    from tests.integration.containers import docker_available

    start = time.monotonic()
    assert isinstance(docker_available(), bool)  # False on machines with the docker CLI only
    assert time.monotonic() - start < 6
