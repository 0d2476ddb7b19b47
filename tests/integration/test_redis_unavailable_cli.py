"""Every command that needs Redis, when Redis cannot be used (down, an unknown host, a refused password, a
malformed URL): one line naming the URL with its password masked and the error, exit code 2, never a
traceback. Through click's runner and through the real `bridge` entry point."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis

from bridge.cli import main
from bridge.embedded_redis import EmbeddedRedis, free_port

PASSWORD = "s3cret-pw"
ACL_USER = "bridge-cli-test"
STORES = """
[stores.woo]
platform = "woocommerce"
webhook_secrets = ["woo-secret"]
api_key = "lty_test_key"
api_secret = "test-secret"
api_url = "http://127.0.0.1:9"
"""
# Commands that need Redis, with arguments that get them as far as Redis.
NEEDS_REDIS = {
    "status": ["status", "WC-1"],
    "failed": ["failed"],
    "replay": ["replay", "--failed", "--wait", "0"],
    "reconcile": ["reconcile", "--store", "woo", "--since", "2026-11-01"],
}
# These wait for Redis or serve 503s while it is away; only a URL that can never work stops them.
STARTS_WITHOUT_REDIS = {"worker": ["worker"], "web": ["web", "--port", "0"]}


@pytest.fixture
def wrong_password_url(redis_server: EmbeddedRedis, redis_conn: Redis) -> Iterator[str]:
    """The suite's real Redis, as an ACL user that exists, with the wrong password."""
    redis_conn.acl_setuser(ACL_USER, enabled=True, passwords=["+the-right-one"], keys=["*"], channels=["*"],
                           commands=["+@all"])
    yield f"redis://{ACL_USER}:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    redis_conn.acl_deluser(ACL_USER)


@pytest.fixture(params=["down", "unknown host", "wrong password", "malformed"])
def bad_redis(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(kind, REDIS_URL, what the error line says)."""
    kind = request.param
    if kind == "down":
        return kind, f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", "Connection refused"
    if kind == "unknown host":
        return kind, f"redis://:{PASSWORD}@no-such-host.invalid:6379/0", "ConnectionError: Error"
    if kind == "wrong password":
        return kind, request.getfixturevalue("wrong_password_url"), "AuthenticationError: invalid username-password"
    return kind, f"redis://:{PASSWORD}@127.0.0.1:notaport/0", "is not a valid Redis URL: Port could not be cast"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "stores.toml"
    path.write_text(STORES)
    return {"BRIDGE_STORES_FILE": str(path), "BRIDGE_LOG_LEVEL": "WARNING"}


def assert_one_clear_line(stderr: str, url: str, says: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("Error: ") and says in line, line
    assert url.replace(PASSWORD, "***").split("@")[0] in line  # the URL, its password masked
    assert PASSWORD not in line and "Traceback" not in stderr


@pytest.mark.parametrize("command", list(NEEDS_REDIS))
def test_each_command_says_it_in_one_line_and_exits_2(command: str, bad_redis: tuple[str, str, str],
                                                      env: dict[str, str]) -> None:
    _, url, says = bad_redis
    result = CliRunner().invoke(main, NEEDS_REDIS[command], env={**env, "REDIS_URL": url})
    assert result.exit_code == 2, (result.output, result.exception)
    assert_one_clear_line(result.stderr, url, says)


@pytest.mark.parametrize("command", list(STARTS_WITHOUT_REDIS))
def test_a_url_that_can_never_work_stops_even_the_worker_and_the_web(command: str, env: dict[str, str]) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:notaport/0"
    result = CliRunner().invoke(main, STARTS_WITHOUT_REDIS[command], env={**env, "REDIS_URL": url})
    assert result.exit_code == 2, (result.output, result.exception)
    assert_one_clear_line(result.stderr, url, "is not a valid Redis URL")


def test_the_real_entry_point_says_it_in_one_line_and_exits_2(bad_redis: tuple[str, str, str],
                                                               env: dict[str, str]) -> None:
    _, url, says = bad_redis
    bridge = Path(sys.executable).parent / "bridge"
    done = subprocess.run([str(bridge), "status", "WC-1"], env={"PATH": "/usr/bin:/bin", **env, "REDIS_URL": url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert_one_clear_line(done.stderr, url, says)
