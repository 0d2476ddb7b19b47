"""The web process exactly as the Procfile runs it (gunicorn, several workers): intake, metrics that
add up across processes, structured logs, and a clear one-line stop on a bad configuration."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.embedded_redis import free_port
from tests.conftest import WOO_SECRETS, fixture_json, webhook_headers

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]
STORES = f"""
[stores.coffee-woo]
platform = "woocommerce"
webhook_secrets = ["{WOO_SECRETS[0]}"]
api_key = "lty_test_key"
api_secret = "${{API_SECRET}}"
"""


def procfile_command(kind: str) -> str:
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith(f"{kind}:"))
    return line.split(":", 1)[1].strip()


@pytest.fixture
def web(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    stores = tmp_path / "stores.toml"
    stores.write_text(STORES)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REDIS_URL": redis_url, "BRIDGE_STORES_FILE": str(stores),
           "API_SECRET": "test-api-secret-do-not-log", "WEB_CONCURRENCY": "3",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    bin_dir = Path(os.sys.executable).parent
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    process = subprocess.Popen(shlex.split(procfile_command("web")), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    try:
        yield url, process
    finally:
        process.terminate()
        process.wait(20)


def webhooks_total(page: str, outcome: str) -> float:
    pattern = rf'^bridge_webhooks_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, page, re.M))


def test_gunicorn_intake_and_metrics_across_processes(web: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = web
    session = requests.Session()
    order = fixture_json("woocommerce", "processing")
    for number in range(30):
        order["id"] = order["number"] = 5000 + number
        body = json.dumps(order).encode()
        resp = session.post(url + "/webhooks/woocommerce/coffee-woo", data=body,
                            headers=webhook_headers("woocommerce", body, "order.created"))
        assert resp.status_code == 202
        session.post(url + "/webhooks/woocommerce/coffee-woo", data=body,
                     headers=webhook_headers("woocommerce", body, "order.created", secret="wrong"))
    # Whichever worker answers the scrape, the counts are the whole server's.
    for _ in range(5):
        page = requests.get(url + "/metrics", timeout=5).text
        assert webhooks_total(page, "queued") == 30
        assert webhooks_total(page, "rejected_401") == 30
        assert re.search(r'^bridge_queue_jobs\{queue="loyalty",state="queued"\} 30\.0$', page, re.M)
    process.terminate()
    output = process.communicate(timeout=20)[0]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    webhooks = [line for line in lines if line.get("msg") == "webhook"]
    assert len(webhooks) == 60
    assert {w["outcome"] for w in webhooks} == {"queued", "error"}
    assert all({"store", "request_id", "duration_ms", "http_status"} <= set(w) for w in webhooks)
    assert "test-api-secret-do-not-log" not in output and WOO_SECRETS[0] not in output
    assert "jonas.jonaitis@example.com" not in output.lower()


def test_a_bad_stores_file_stops_gunicorn_with_one_line(tmp_path: Path, redis_url: str) -> None:
    stores = tmp_path / "stores.toml"
    stores.write_text('[stores.coffee-woo]\nplatform = "woocommerce"\nwebhook_secrets = ["x"]\n')
    env = {**os.environ, "PORT": str(free_port()), "REDIS_URL": redis_url, "BRIDGE_STORES_FILE": str(stores),
           "PATH": f"{Path(os.sys.executable).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(shlex.split(procfile_command("web")), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "configuration error: " in result.stderr
    line = next(x for x in result.stderr.splitlines() if "configuration error" in x)
    assert "store 'coffee-woo': api_key: Field required" in line
