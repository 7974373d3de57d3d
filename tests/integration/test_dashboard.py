"""The dashboard in a real browser (headless Chromium via Selenium) on the real local stack.

A quick cycle trains a champion, the Faust worker scores customer events produced at a
steady rate in the background, the prediction API serves the same champion, and the
dashboard (werkzeug in a thread) is opened tab by tab while events flow. A screenshot of
every tab goes to ``docs/screenshots/`` (shown in the README; PNG, each under 300 KB).

The dashboard's login is on, against the API's key file: the browser is sent to the login,
refused with a wrong key, logs in with a ``predict`` key, scores a customer with it, logs
out, and logs in again with a ``models:read`` key, for which the form shows the API's 403.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from schemas.topics import Topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
#: Largest screenshot committed for the README.
SCREENSHOT_MAX_BYTES = 300_000
#: Quick zoo: one classifier, one regressor.
ONLY = {"logistic_regression", "linear_regression"}
#: Customer events per second produced while the browser looks.
RATE = 150
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1400",
    "--hide-scrollbars",
)


def _free_port() -> int:
    from churn_stream.stack import LocalStack

    return LocalStack.free_ports(1)[0]


def _wait_http(url: str, timeout_s: float, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert alive(), f"server behind {url} died"
        assert time.monotonic() < deadline, f"{url} not up within {timeout_s} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tracker(stack_settings):
    from plumbing.clients import make_tracker

    return make_tracker(stack_settings)


@pytest.fixture(scope="module")
def champion(stack_settings, tracker):
    from batch.cycle import run_cycle
    from plumbing.clients import ensure_topics, make_storage

    ensure_topics(stack_settings)
    storage = make_storage(stack_settings)
    # Two cycles: the second one's data-quality gate has a reference cycle to measure drift (PSI) against.
    run_cycle(stack_settings, storage, tracker, only=ONLY, margin=-1.0)
    result = run_cycle(stack_settings, storage, tracker, only=ONLY, margin=-1.0)
    assert result.registered["alias"] == "champion"
    return result


@pytest.fixture(scope="module")
def worker(stack_settings, champion):
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready

    proc = start_worker(stack_settings, stack_settings.data_dir / "logs" / "worker-dashboard-test.log")
    try:
        wait_worker_ready(stack_settings, proc, timeout_s=120)
        yield proc
    finally:
        stop_worker(proc)


@pytest.fixture(scope="module")
def login_keys(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """A key file of the test's own and its keys by scope: ``predict`` and ``models:read``."""
    from plumbing.api_keys import ApiKeyStore

    path = tmp_path_factory.mktemp("api-keys") / "api_keys.json"
    store = ApiKeyStore(path)
    predict = store.create("analyst", ["predict"])[1]
    viewer = store.create("viewer", ["models:read"])[1]
    return str(path), {"predict": predict, "models:read": viewer}


@pytest.fixture(scope="module")
def api_key_settings(stack_settings, login_keys):
    """The stack's settings with that key file: the API and the dashboard's login read it."""
    return stack_settings.with_overrides(api_keys_file=login_keys[0])


@pytest.fixture(scope="module")
def api_url(api_key_settings, tracker, champion):
    """The prediction API (uvicorn in a thread)."""
    import uvicorn

    from stream_app.api import create_app as create_api

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_api(api_key_settings, tracker),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="api-for-dashboard-test", daemon=True)
    thread.start()
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", 120, thread.is_alive)
        yield f"http://127.0.0.1:{port}/api/predict"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def producing(stack_settings, worker, telco_csv):
    """Customer events at :data:`RATE` per second until the module ends (one producer in its own loop)."""
    from aiokafka import AIOKafkaProducer

    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import kafka_kwargs
    from schemas.events import new_event_id, utc_now

    records = csv_to_customer_events(telco_csv, limit=3000)
    stop = threading.Event()
    sent = [0]

    async def run() -> None:
        producer = AIOKafkaProducer(**kafka_kwargs(stack_settings), linger_ms=5)
        await producer.start()
        try:
            start = time.monotonic()
            while not stop.is_set():
                key, value = records[sent[0] % len(records)]
                delay = start + sent[0] / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # A fresh event_time at send, so the page's latency is the system's, not this loop's.
                event = orjson.loads(value) | {"event_id": new_event_id(), "event_time": utc_now().isoformat()}
                await producer.send(Topics.CUSTOMERS, orjson.dumps(event), key=key)
                sent[0] += 1
        finally:
            await producer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(run()), name="customer-producer", daemon=True)
    thread.start()
    yield sent
    stop.set()
    thread.join(timeout=10)


def _serve(app) -> tuple[str, object, threading.Thread]:
    from werkzeug.serving import make_server

    port = _free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"dashboard-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/login", 30, thread.is_alive)
    return url, server, thread


@pytest.fixture(scope="module")
def dashboard_url(stack_settings, api_key_settings, tracker, api_url, producing):
    from dashboard.app import create_app
    from plumbing.clients import kafka_kwargs

    app = create_app(
        api_key_settings,  # the login checks keys against the API's key file; the form posts with the user's
        api_url=api_url or f"http://127.0.0.1:{_free_port()}/api/predict",
        tracker=tracker,
        kafka_options=kafka_kwargs(stack_settings),
    )
    url, server, thread = _serve(app)
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.live_feed.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("Chromium and chromedriver are needed: `make browser` (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="dashboard-test-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _wait(driver, condition, timeout_s: float = 20.0, message: str = ""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver, timeout_s, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda d: condition(d), message)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _screenshot(driver, name: str) -> Path:
    """The whole page (its full height) as ``docs/screenshots/<name>.png``, checked under the size limit."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 900), 2400))
    time.sleep(0.5)  # let plotly and the grids re-lay out at the new size
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1400)
    assert path.stat().st_size < SCREENSHOT_MAX_BYTES, (path, path.stat().st_size)
    return path


def _significant_digits(text: str) -> int:
    """Significant digits of a decimal number as shown (``"0.0005057"`` -> 4); integers count 0 (counts)."""
    digits = text.replace(",", "").lstrip("-")
    if "." not in digits:
        return 0
    return len(digits.replace(".", "").lstrip("0"))


def _cells(driver, grid_id: str, column: str) -> list[str]:
    """Rendered cell texts of one column of an AG Grid, read in one script (the live grids re-render every second)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim())",
        f"#{grid_id} .ag-cell[col-id={column}]",
    )


def _open_tab(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    tab = _wait(
        driver,
        lambda d: next((t for t in d.find_elements(By.CSS_SELECTOR, ".tab") if t.text.strip() == label), None),
        message=f"tab {label!r}",
    )
    tab.click()


def _log_in(driver, url: str, key: str) -> None:
    """Open the login page, type ``key`` and submit."""
    from selenium.webdriver.common.by import By

    driver.get(url + "/login")
    field = _wait(driver, lambda d: d.find_element(By.ID, "api-key"))
    field.send_keys(key)
    driver.find_element(By.ID, "login-submit").click()


def _log_out(driver) -> None:
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.find_element(By.ID, "logout")).click()
    _wait(driver, lambda d: "/login" in d.current_url, 15, "logout did not lead to the login")


def test_the_dashboard_needs_a_login_and_refuses_a_wrong_key(dashboard_url, browser, login_keys):
    """Issue 17: without a login nothing answers; a wrong key stays on the login; a predict key sees the tabs."""
    from selenium.webdriver.common.by import By

    browser.get(dashboard_url)
    _wait(browser, lambda d: "/login" in d.current_url, 15, "no redirect to the login")
    assert browser.find_elements(By.ID, "api-key") and not browser.find_elements(By.CSS_SELECTOR, ".tab")
    r = httpx.get(dashboard_url + "/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/login?next=%2F"
    assert httpx.post(dashboard_url + "/_dash-update-component", json={}).status_code == 401
    assert httpx.get(dashboard_url + "/_dash-layout").status_code == 401

    key = login_keys[1]["predict"]
    _log_in(browser, dashboard_url, key[:-1] + ("A" if key[-1] != "A" else "B"))
    _wait(browser, lambda d: d.find_elements(By.ID, "login-error"), 15, "no refusal message")
    assert "That key was not accepted." in _text(browser, "login-error") and "/login" in browser.current_url

    _log_in(browser, dashboard_url, key)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tab")) == 4, 30, "tabs not shown after login")
    assert _text(browser, "login-user") == "analyst"
    assert key not in browser.page_source


def test_live_tab_counts_rise_and_alerts_sort(dashboard_url, browser, producing):
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    browser.get(dashboard_url)
    _wait(
        browser,
        lambda d: re.fullmatch(r"[\d,]+", _text(d, "kpi-scores")) and _number(_text(d, "kpi-scores")) > 0,
        30,
        "no scores counted on the live tab",
    )
    first = _number(_text(browser, "kpi-scores"))
    _wait(browser, lambda d: _number(_text(d, "kpi-scores")) >= first + RATE, 15, "score count did not rise")
    assert _number(_text(browser, "kpi-rate")) > 0
    assert _number(_text(browser, "kpi-alerts")) > 0
    assert re.match(r"[\d,]+ ms / [\d,]+ ms", _text(browser, "kpi-latency")), _text(browser, "kpi-latency")
    assert _text(browser, "kpi-status") == "connected"
    # The worker's group has committed offsets by now: the lag is a number (Tansu answers per-partition fetches).
    lag = _wait(
        browser,
        lambda d: re.fullmatch(r"[\d,]+", t := _text(d, "kpi-lag")) and t,
        15,
        f"no consumer lag shown: {_text(browser, 'kpi-lag')!r} {_text(browser, 'lag-note')!r}",
    )
    assert _number(lag) >= 0 and _text(browser, "lag-note") == ""
    # Latency is scored_at - event_time of events produced just now: seconds at most, not the run's age.
    assert _number(_text(browser, "kpi-latency").split(" ms")[0]) < 10_000, _text(browser, "kpi-latency")

    # What the counters count is said on the page.
    assert "Counting records produced since the dashboard started" in _text(browser, "feed-note")

    # Alert rows carry reason codes; sorting by probability (descending) reorders the grid.
    _wait(browser, lambda d: len(_cells(d, "alerts-table", "reasons")) > 3)
    reasons = _cells(browser, "alerts-table", "reasons")
    assert any("(+" in r for r in reasons), reasons
    probabilities = _cells(browser, "alerts-table", "churn_probability")
    assert all(re.fullmatch(r"[01]\.\d{3}", p) for p in probabilities if p), probabilities  # 3 decimals
    header = browser.find_element(
        By.CSS_SELECTOR, "#alerts-table .ag-header-cell[col-id=churn_probability] .ag-header-cell-label"
    )
    header.click()
    header.click()  # ascending, then descending

    def sorted_desc(d) -> bool:
        values = [float(t) for t in _cells(d, "alerts-table", "churn_probability") if t]
        return len(values) > 3 and values == sorted(values, reverse=True)

    _wait(browser, sorted_desc, 10, "alerts not sorted by probability")
    _screenshot(browser, "live")
    assert time.monotonic() - t0 < 90


def test_models_tab_shows_the_latest_cycle_with_the_champion_marked(dashboard_url, browser, champion):
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Models")
    _wait(browser, lambda d: champion.cycle_id in _text(d, "cycle-info"), 30, "latest cycle not shown")
    _wait(browser, lambda d: "logistic_regression" in _text(d, "leaderboard-table"), 20, "no leaderboard rows")
    rows = browser.find_elements(By.CSS_SELECTOR, "#leaderboard-table .ag-center-cols-container .ag-row")
    text = _text(browser, "leaderboard-table")
    assert "logistic_regression" in text and "linear_regression" in text and "champion" in text
    assert len(rows) >= 2  # one row per model
    assert "roc_auc" in text and "r2" in text
    # Metrics to 4 significant digits at most, counts as integers: no "0.8421376543" nor "3.0".
    aucs = [t for t in _cells(browser, "leaderboard-table", "roc_auc") if t]
    assert aucs and all(re.fullmatch(r"0\.\d{1,4}", t) for t in aucs), aucs
    assert all(re.fullmatch(r"\d+", t) for t in _cells(browser, "leaderboard-table", "version") if t)
    versions = _text(browser, "versions-table")
    assert "churn-classifier" in versions and "sales-regressor" in versions
    values = [t for t in _cells(browser, "versions-table", "value") if t]
    assert values and max(map(_significant_digits, values)) <= 4, values
    champ = _text(browser, "champion-info")
    assert f"churn-classifier v{champion.registered['model_version']}" in champ
    assert not re.search(r"\b(tp|fp|tn|fn) \d+\.\d", champ), champ  # counts as integers ("fn 95")
    decimals = re.findall(r"-?\d[\d,]*\.\d+", champ)
    assert decimals and max(map(_significant_digits, decimals)) <= 4, champ
    _screenshot(browser, "models")


def test_data_quality_tab_shows_the_report_or_says_there_is_none(dashboard_url, browser, champion):
    _open_tab(browser, "Data quality")
    _wait(browser, lambda d: _text(d, "dq-summary") != "", 20, "data-quality tab stayed empty")
    summary = _text(browser, "dq-summary")
    if getattr(champion, "quality", None) is None:  # a cycle without the gate logs no report
        assert "No data-quality report yet" in summary, summary
    else:
        assert summary.startswith(f"Gate: {champion.quality.status.upper()}"), summary
        assert champion.cycle_id in summary
        _wait(browser, lambda d: "drift" in _text(d, "dq-checks-table"), 10, "no checks")
        assert "PASS" in _text(browser, "dq-checks-table")
        _wait(browser, lambda d: "tenure_months" in _text(d, "dq-psi-table"), 10, "no PSI per feature")
        psi = [t for t in _cells(browser, "dq-psi-table", "psi") if t]
        assert psi and max(map(_significant_digits, psi)) <= 4, psi
    _screenshot(browser, "data_quality")


def _fill_form(driver, customer: dict) -> None:
    """Type ``customer``'s values into the generated form: text inputs typed, yes/no dropdowns picked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _wait(driver, lambda d: d.find_element(By.ID, "form-submit"))
    for name, value in customer.items():
        found = driver.find_elements(By.ID, f"form-{name}")
        if not found:
            continue
        element = found[0]
        if element.tag_name == "input":
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(Keys.DELETE)
            if value is not None:
                element.send_keys(str(value))
        else:  # yes/no radio items: click the option's label
            label = "Yes" if value is True else "No" if value is False else str(value)
            next(o for o in element.find_elements(By.CSS_SELECTOR, "label") if o.text.strip() == label).click()


@pytest.fixture(scope="module")
def form_customer(telco_csv) -> dict:
    """One Telco customer from the shipped CSV, as the form's fields (the envelope left out)."""
    from churn_stream.produce import csv_to_customer_events

    _, value = csv_to_customer_events(telco_csv, limit=1)[0]
    event = orjson.loads(value)
    return {k: v for k, v in event.items() if k not in ("event_id", "event_time", "schema_version", "churned")}


def test_score_form_shows_the_apis_message_for_a_bad_tenure(dashboard_url, browser, api_url, form_customer):
    """Issue 18: the form answered "got None" for tenure -5 or 2.5 instead of the API's own message."""
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Score a customer")
    for tenure, message in (("-5", "input should be greater than or equal to 0, got -5"), ("2.5", "got 2.5")):
        _fill_form(browser, form_customer | {"tenure_months": tenure})
        browser.find_element(By.ID, "form-submit").click()
        _wait(
            browser,
            lambda d, m=message: m in _text(d, "form-error-tenure_months"),
            15,
            f"no API message for tenure {tenure}",
        )
        error = _text(browser, "score-error")
        assert "The API answered 422: request body failed validation" in error, error
        assert f"tenure_months: {message}" in error or message in error, error
        assert "None" not in error, error
    _screenshot(browser, "score_error")


def test_score_form_posts_to_the_api_and_shows_the_answer(dashboard_url, browser, api_url, form_customer):
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Score a customer")
    _fill_form(browser, form_customer | {"tenure_months": 1})
    browser.find_element(By.ID, "form-submit").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "score-probability"), 15, "no answer from the API")
    p = float(_text(browser, "score-probability"))
    assert 0 <= p <= 1
    assert _text(browser, "score-label") in ("CHURN (alert)", "stay")
    assert "reasons:" in _text(browser, "score-reasons")
    assert _text(browser, "form-error-tenure_months") == ""
    _screenshot(browser, "score")


def test_a_models_read_key_gets_the_apis_403_in_the_form_and_logout_ends_the_session(
    dashboard_url, browser, api_url, form_customer, login_keys
):
    from selenium.webdriver.common.by import By

    browser.get(dashboard_url)
    _log_out(browser)
    browser.get(dashboard_url)  # logged out: back to the login
    _wait(browser, lambda d: "/login" in d.current_url, 15, "no redirect to the login after logout")
    _log_in(browser, dashboard_url, login_keys[1]["models:read"])
    _open_tab(browser, "Score a customer")
    _fill_form(browser, form_customer | {"tenure_months": 1})
    browser.find_element(By.ID, "form-submit").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "score-error"), 15, "no refusal shown in the form")
    error = _text(browser, "score-error")
    assert "The API answered 403: scope predict required" in error, error
    assert "log in with a key that has the predict scope" in error, error
    assert not browser.find_elements(By.ID, "score-probability")
    _log_out(browser)


def test_score_form_says_clearly_when_the_api_is_down(api_key_settings, tracker, browser, login_keys):
    from selenium.webdriver.common.by import By

    from dashboard.app import create_app

    down = f"http://127.0.0.1:{_free_port()}/api/predict"  # nothing listens there
    app = create_app(api_key_settings, api_url=down, tracker=tracker, start_feed=False)
    url, server, thread = _serve(app)
    try:
        _log_in(browser, url, login_keys[1]["predict"])
        _open_tab(browser, "Score a customer")
        _wait(browser, lambda d: d.find_element(By.ID, "form-submit")).click()
        _wait(browser, lambda d: d.find_elements(By.ID, "score-unreachable"), 15, "no API-down message")
        assert f"Prediction API unreachable at {down}" in _text(browser, "score-unreachable")
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        browser.save_screenshot(str(REPO / "test-artifacts" / "score_api_down.png"))
    finally:
        server.shutdown()
        thread.join(timeout=10)
