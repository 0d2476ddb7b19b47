"""The RQ dashboard in a real headless Chromium: it needs the password, shows the queue and a failed
job, and its Requeue button puts the job back on the queue; a page of another site that the same
browser opens, with the dashboard's credentials at hand, cannot requeue anything."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from werkzeug.serving import make_server

from bridge.app import create_app
from bridge.sandbox import FailRule, SandboxConfig, SandboxServer
from config.settings import Settings
from tests.conftest import fixture_bytes, make_stores, run_jobs, webhook_headers
from workers import context
from workers.context import WorkerContext

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="Debian's chromium and chromium-driver are not installed (tests/run installs them when it can)")]

USER, PASSWORD = "ops", "correct horse battery staple"
JOB_ID = "paid-coffee-woo-4210"


@pytest.fixture
def dashboard(settings: Settings, redis_conn: Redis) -> Iterator[str]:
    """A bridge with the dashboard on, and one failed job (a 422 from the sandbox)."""
    rule = FailRule(path="transactions/create", status=422, code="VALIDATION_ERROR", message="Validation failed")
    with SandboxServer(SandboxConfig(fail_rules=[rule], rate_limit_per_minute=0,
                                     partners=[{"api_key": "lty_test_key", "api_secret": "test-api-secret-do-not-log",
                                                "partner_id": 1, "name": "Test"}])) as sandbox:
        stores = make_stores(api_url=sandbox.url)
        settings = settings.model_copy(update={"dashboard_user": USER, "dashboard_password": SecretStr(PASSWORD)})
        app = create_app(settings, stores, redis_conn)
        body = fixture_bytes("woocommerce", "processing")
        app.test_client().post("/webhooks/woocommerce/coffee-woo", data=body,
                               headers=webhook_headers("woocommerce", body, "order.created"))
        ctx = WorkerContext.build(settings, stores, redis_conn)
        context.install(ctx)
        try:
            run_jobs(ctx)
        finally:
            context.install(None)
        assert Job.fetch(JOB_ID, connection=redis_conn).get_status() == JobStatus.FAILED
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_port}"
        server.shutdown()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def login(driver: Any, user: str, password: str) -> None:
    """Send HTTP basic credentials with every request the page makes (as a browser's login prompt would)."""
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def test_the_dashboard_needs_its_password(dashboard: str) -> None:
    assert requests.get(dashboard + "/rq/", timeout=5).status_code == 401
    assert requests.get(dashboard + "/rq/", auth=(USER, "wrong"), timeout=5).status_code == 401
    assert requests.get(dashboard + "/rq/0/data/queues.json", timeout=5).status_code == 401
    assert requests.get(dashboard + "/rq/", auth=(USER, PASSWORD), timeout=5).status_code == 200


def test_without_credentials_configured_there_is_no_dashboard(client: Any) -> None:
    assert client.get("/rq/").status_code == 404


def test_browser_sees_queue_and_failed_job_and_requeues_it(dashboard: str, browser: Any, redis_conn: Redis) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(dashboard + "/rq/")
    assert 'id="queues"' not in browser.page_source                   # no password, no dashboard

    login(browser, USER, PASSWORD)
    browser.get(dashboard + "/rq/")
    wait = WebDriverWait(browser, 20)
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#queues tr[data-role=queue]")))
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "loyalty"
    assert row.find_elements(By.CSS_SELECTOR, "td.failed")[0].text == "1"

    browser.get(f"{dashboard}/rq/0/view/job/{JOB_ID}")
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-data"), "failed"))
    assert "Validation failed" in browser.find_element(By.ID, "job-data").text
    button = wait.until(ec.element_to_be_clickable((By.ID, "requeue-job-btn")))
    button.click()
    WebDriverWait(browser, 10).until(
        lambda _: Job.fetch(JOB_ID, connection=redis_conn).get_status() == JobStatus.QUEUED)
    assert Job.fetch(JOB_ID, connection=redis_conn).get_status() == JobStatus.QUEUED


EVIL_PAGE = """<!doctype html><title>Cute cats</title>
<form id="form" method="post" action="{dashboard}/rq/job/{job}/requeue"></form>
<img src="{dashboard}/rq/requeue/loyalty?with-referer"
     onerror="document.getElementById('quiet').src = '{dashboard}/rq/requeue/loyalty?without-referer'">
<img id="quiet" referrerpolicy="no-referrer" onerror="document.getElementById('form').submit()">
"""


@pytest.fixture
def evil_site(dashboard: str) -> Iterator[str]:
    """Another origin (another port), serving a page that tries the dashboard's requeue routes: two
    ``<img>`` GETs (one with the page's Referer, one with none), then a form POST."""
    page = EVIL_PAGE.format(dashboard=dashboard, job=JOB_ID).encode()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(page)))])
        return [page]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/cats.html"
    server.shutdown()


def test_another_site_cannot_requeue_with_the_browsers_credentials(dashboard: str, evil_site: str, browser: Any,
                                                                   redis_conn: Redis) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    login(browser, USER, PASSWORD)              # every request of this browser now carries the credentials
    browser.get(evil_site)
    # The last step of the page is the form's POST: once its answer is shown, every request was answered.
    WebDriverWait(browser, 20).until(lambda b: b.current_url.startswith(f"{dashboard}/rq/job/"))
    assert "must come from the dashboard's own pages" in browser.page_source
    assert Job.fetch(JOB_ID, connection=redis_conn).get_status() == JobStatus.FAILED
    assert Queue("loyalty", connection=redis_conn).count == 0

    # The same browser on the dashboard's own page: its Requeue All button does what the <img> could not.
    browser.get(f"{dashboard}/rq/0/view/jobs/loyalty/failed/8/asc/1")
    wait = WebDriverWait(browser, 20)
    assert not browser.find_elements(By.ID, "empty-btn")                    # no "Empty" button
    wait.until(ec.element_to_be_clickable((By.ID, "requeue-all-btn"))).click()
    wait.until(ec.element_to_be_clickable((By.ID, "confirmation-modal-yes"))).click()
    wait.until(lambda _: Job.fetch(JOB_ID, connection=redis_conn).get_status() == JobStatus.QUEUED)
    assert Queue("loyalty", connection=redis_conn).get_job_ids() == [JOB_ID]
