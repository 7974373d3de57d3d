"""The API's documentation: a valid OpenAPI document whose every body has examples, and offline UIs.

``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) must load every script, style and icon from
the API itself: each URL the pages reference is fetched through the app. The error
examples must be what the API really answers. No model is trained here: none of these
requests reaches scoring.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import jsonschema
import orjson
import pytest
from pydantic import BaseModel

from plumbing.settings import Settings
from schemas import http as bodies
from schemas.profiles import TELCO
from stream_app.api import create_app
from stream_app.api.docs import CONTENT_SECURITY_POLICY, doc_assets, openapi_document

BASE = "http://api"
STATIC = Path(__file__).resolve().parents[3] / "stream_app" / "api" / "static"


def _call(app, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    """``method path`` through ``app``, with ``Authorization: Bearer <key>`` when a key is given."""
    headers = {**kwargs.pop("headers", {}), **({"authorization": f"Bearer {key}"} if key else {})}

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            return await c.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


class _Registry:
    """A registry without the version asked for (what MLflow answers for ``churn-classifier/99``)."""

    tracking_uri = "http://registry.invalid"

    def get_model_version(self, name: str, version: str):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        raise MlflowException(f"Model Version (name={name}, version={version}) not found", RESOURCE_DOES_NOT_EXIST)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Settings, dict[str, str]]:
    """Settings whose key file holds one key per scope, and those keys by scope."""
    from plumbing.api_keys import SCOPES, ApiKeyStore

    path = tmp_path_factory.mktemp("keys") / "api_keys.json"
    store = ApiKeyStore(path)
    made = {scope: store.create(scope.replace(":", "-"), [scope])[1] for scope in SCOPES}
    return Settings(api_keys_file=str(path)), made


@pytest.fixture(scope="module")
def app(keys):
    from stream_app.model_store import ModelStore

    # No champion: /health and a default predict answer 503; 404/413/422 are decided before scoring.
    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    return create_app(keys[0], tracker=_Registry(), store=store, follow_updates=False)


@pytest.fixture(scope="module")
def key(keys) -> str:
    """A ``predict`` key."""
    return keys[1]["predict"]


@pytest.fixture(scope="module")
def doc(app) -> dict:
    r = _call(app, "GET", "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


# ----------------------------------------------------------------- OpenAPI
def test_document_is_valid_openapi_and_served_as_built(doc):
    from openapi_spec_validator import validate

    validate(doc)
    assert doc == orjson.loads(orjson.dumps(openapi_document()))


def _bodies(doc: dict):
    """Every (where, media type object) of the document: request bodies and responses."""
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                yield f"{method.upper()} {path} request", op["requestBody"]["content"]["application/json"]
            for code, response in op["responses"].items():
                yield f"{method.upper()} {path} {code}", response["content"]["application/json"]


def test_every_body_has_examples_valid_against_its_schema(doc):
    checked = 0
    for where, media in _bodies(doc):
        assert media.get("examples"), f"{where}: no examples"
        # The media type's schema, resolved against the whole document (OpenAPI 3.1 = JSON Schema 2020-12).
        validator = jsonschema.Draft202012Validator(
            {**media["schema"], "components": doc["components"]}, format_checker=jsonschema.FormatChecker()
        )
        for name, example in media["examples"].items():
            assert example["summary"], f"{where} {name}: no summary"
            errors = [e.message for e in validator.iter_errors(example["value"])]
            assert not errors, f"{where} {name}: {errors}"
            checked += 1
    assert checked >= 13


def test_query_parameter_examples_match_its_pattern(doc):
    (param,) = doc["paths"]["/api/predict"]["post"]["parameters"]
    assert param["examples"]
    for example in param["examples"].values():
        assert re.match(param["schema"]["pattern"], example["value"])


@pytest.mark.parametrize(
    "model",
    [
        bodies.CustomerInput,
        bodies.PredictRequest,
        bodies.PredictResponse,
        bodies.ErrorResponse,
        bodies.HealthResponse,
        bodies.MetricsResponse,
        bodies.ModelsResponse,
    ],
)
def test_body_schemas_carry_examples_their_model_accepts(doc, model: type[BaseModel]):
    examples = doc["components"]["schemas"][model.__name__]["examples"]
    assert examples
    for example in examples:
        model.model_validate(example)  # raises if the example breaks the contract
    # The Telco rows are real: same values as the source CSV's rows for these customers.
    if model is bodies.CustomerInput:
        assert {e["customer_id"] for e in examples} == {"7590-VHVEG", "5575-GNVDE"}


def test_telco_examples_are_rows_of_the_source_csv(telco_csv):
    import csv

    rows = {r["customerID"]: r for r in csv.DictReader(Path(telco_csv).open())}
    for example in (bodies.EXAMPLE_CUSTOMER, bodies.EXAMPLE_CUSTOMER_ONE_YEAR):
        row = rows[example["customer_id"]]
        assert example["tenure_months"] == int(row["tenure"])
        assert example["monthly_charges_usd"] == float(row["MonthlyCharges"])
        assert example["total_charges_usd"] == float(row["TotalCharges"])
        assert example["contract"] == row["Contract"] and example["payment_method"] == row["PaymentMethod"]
        assert example["partner"] == (row["Partner"] == "Yes") and example["gender"] == row["gender"]


# ------------------------------------------------ error examples are real answers
def test_422_example_is_the_real_answer(app, key):
    r = _call(app, "POST", "/api/predict", key, json={**bodies.EXAMPLE_CUSTOMER, "tenure_months": "twelve"})
    assert r.status_code == 422 and r.json() == bodies.EXAMPLE_ERROR_422


def test_413_example_is_the_real_answer(app, key):
    r = _call(app, "POST", "/api/predict", key, content=b" " * (2 << 20))
    assert r.status_code == 413 and r.json() == bodies.EXAMPLE_ERROR_413


def test_404_example_is_the_real_answer(app, key):
    r = _call(
        app, "POST", "/api/predict", key, params={"model_name": "churn-classifier/99"}, json=bodies.EXAMPLE_CUSTOMER
    )
    assert r.status_code == 404 and r.json() == bodies.EXAMPLE_ERROR_404


def test_503_examples_are_the_real_answers(app, key):
    r = _call(app, "POST", "/api/predict", key, json=bodies.EXAMPLE_CUSTOMER)
    assert r.status_code == 503 and r.json() == bodies.EXAMPLE_ERROR_503
    r = _call(app, "GET", "/health")
    assert r.status_code == 503 and r.json() == bodies.EXAMPLE_HEALTH_STARTING


def test_401_403_429_examples_are_the_real_answers(app, keys):
    r = _call(app, "POST", "/api/predict", json=bodies.EXAMPLE_CUSTOMER)
    assert r.status_code == 401 and r.json() == bodies.EXAMPLE_ERROR_401
    assert r.headers["www-authenticate"] == 'Bearer realm="churn-api"'
    r = _call(app, "POST", "/api/predict", keys[1]["models:read"], json=bodies.EXAMPLE_CUSTOMER)
    assert r.status_code == 403 and r.json() == bodies.EXAMPLE_ERROR_403
    from stream_app.model_store import ModelStore

    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    limited = create_app(keys[0].with_overrides(api_auth_max_failures=1), _Registry(), store, follow_updates=False)
    assert _call(limited, "GET", "/api/models", "chs_000000000000_" + "x" * 43).status_code == 401
    r = _call(limited, "GET", "/api/models", keys[1]["admin"])
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json() == {**bodies.EXAMPLE_ERROR_429, "errors": [f"retry after {r.headers['retry-after']} s"]}


def test_protected_operations_document_their_scope_and_refusals(doc):
    from plumbing.api_keys import SCOPES

    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method in (("/api/predict", "post"), ("/api/models", "get"), ("/api/metrics", "get")):
        op = doc["paths"][path][method]
        ((scope,),) = [s["bearer"] for s in op["security"]]
        assert scope in SCOPES and {"401", "403", "429"} <= set(op["responses"])
    assert "security" not in doc["paths"]["/health"]["get"]


# ------------------------------------------------------- offline Swagger UI and ReDoc
class _References(HTMLParser):
    """Every URL-valued attribute of a page (src, href, spec-url, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is not None and (name in ("src", "href", "action") or name.endswith("-url")):
                self.urls.append((tag, name, value))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_app(app, path: str):
    page = _call(app, "GET", path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'self'" in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
    assert not re.search(r"https?://", page.text), "the page references an external URL"

    parser = _References()
    parser.feed(page.text)
    scripts = [v for tag, name, v in parser.urls if tag == "script" and name == "src"]
    styles = [v for tag, name, v in parser.urls if tag == "link" and name == "href"]
    assert scripts and (styles or path == "/redoc")  # ReDoc brings its styles inside its bundle
    for tag, name, value in parser.urls:
        url = urljoin(BASE + path, value)
        assert urlsplit(url).netloc == "api", f"{tag} {name}={value} leaves the app"
        r = _call(app, "GET", urlsplit(url).path)
        assert r.status_code == 200 and r.content, f"{tag} {name}={value}: {r.status_code}"
        if tag == "script":
            assert r.headers["content-type"].startswith("text/javascript")


def test_swagger_ui_initializer_stays_on_the_app(app):
    init = _call(app, "GET", "/docs/assets/swagger-init.js").text
    assert not re.search(r"https?://", init)
    assert 'url: "openapi.json"' in init and "validatorUrl: null" in init  # no call to the online validator
    assert _call(app, "GET", urljoin("/docs", "openapi.json")).status_code == 200


def test_only_listed_assets_are_served(app):
    assert _call(app, "GET", "/docs/assets/swagger-editor-bundle.js").status_code == 404
    assert _call(app, "GET", "/docs/assets/..%2F..%2Fdocs.py").status_code == 404
    assert all(p.is_file() for p in doc_assets().values())


def test_docs_are_not_in_the_openapi_document(doc):
    assert not {"/docs", "/redoc", "/openapi.json"} & set(doc["paths"])


def test_vendored_redoc_matches_its_note():
    note = (STATIC / "redoc" / "README.md").read_text()
    (sha,) = re.findall(r"file sha256 `([0-9a-f]{64})`", note)
    assert hashlib.sha256((STATIC / "redoc" / "redoc.standalone.js").read_bytes()).hexdigest() == sha
    assert 'Version: "2.5.4"' in (STATIC / "redoc" / "redoc.standalone.js.LICENSE.txt").read_text()
    assert "2.5.4" in note and "MIT License" in (STATIC / "redoc" / "LICENSE").read_text()
