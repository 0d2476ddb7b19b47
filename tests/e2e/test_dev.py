"""The newcomer's path, with real processes over real HTTP: the README's first command brings up
`bridge dev` (embedded Redis, sandbox, web, worker); `bridge send-test` leads to points in the
sandbox and an awarded entry in `bridge status`; Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.embedded_redis import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]


def readme_first_command() -> str:
    """The command the README tells a newcomer to run first."""
    text = (ROOT / "README.md").read_text()
    block = text.split("**Run it**", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", block, re.S).group(1).strip()  # type: ignore[union-attr]


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BRIDGE_", "REDIS_URL", "LOYALTY_", "PROMETHEUS_"))}
    env.update(extra)
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the project, as a newcomer's fresh clone would hold it (without .venv)."""
    target = tmp_path / "clone"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(".venv", ".git", ".bridge", "__pycache__",
                                                                "*.egg-info", ".pytest_cache", ".hypothesis"))
    return target


@pytest.fixture
def venv_bin() -> Path:
    """The bin folder of the environment running the tests (already has the project installed)."""
    return Path(sys.executable).parent


def run_dev(command: str, cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(["bash", "-c", f"exec {command}" if " && " not in command else command],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_session(cwd: Path, process: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    session = cwd / ".bridge" / "dev.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"bridge dev exited early:\n{process.stdout.read() if process.stdout else ''}")
        if session.exists():
            data = json.loads(session.read_text())
            try:
                if requests.get(data["web_url"] + "/readyz", timeout=1).status_code == 200:
                    return data
            except requests.RequestException:
                pass
        time.sleep(0.2)
    raise AssertionError("bridge dev did not come up in time")


def bridge(venv_bin: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv_bin / "bridge"), *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=60)


def newcomer_flow(command: str, cwd: Path, venv_bin: Path, startup: float) -> None:
    ports = {"BRIDGE_DEV_PORT": str(free_port()), "BRIDGE_SANDBOX_PORT": str(free_port()),
             "BRIDGE_SHOPS_PORT": str(free_port())}
    # The README's sync runs every 30 s; the test does not wait that long.
    quick = {"BRIDGE_SHOP_SYNC_INTERVAL": "1", "BRIDGE_WORKER_MAINTENANCE_INTERVAL": "1"}
    for process in run_dev(command, cwd, clean_env(**ports, **quick)):
        session = wait_for_session(cwd, process, startup)
        dev_pid = session["pid"]
        below = descendants(int(dev_pid))
        assert below, "expected Redis (and RQ's scheduler) under bridge dev"

        sent = bridge(venv_bin, cwd, "send-test", "demo-woo")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        reference = re.search(r"bridge status (\S+)", sent.stdout).group(1)  # type: ignore[union-attr]

        deadline = time.monotonic() + 20
        story: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            status = bridge(venv_bin, cwd, "status", reference, "--json")
            story = json.loads(status.stdout or "[]")
            if story and story[0]["ledger"]["award"]:  # type: ignore[index]
                break
            time.sleep(0.3)
        award = story[0]["ledger"]["award"]  # type: ignore[index]
        assert award and award["points"] > 0, story
        balances = requests.get(session["sandbox_url"] + "/_sandbox/balances", timeout=5).json()["data"]
        assert balances == {"send-test@example.com": award["points"]}

        # A webhook lost on purpose: the order exists only in the emulated shop, and the sync finds it.
        lost = bridge(venv_bin, cwd, "send-test", "demo-shopify", "--lost", "--email", "lost@example.com")
        assert lost.returncode == 0, lost.stdout + lost.stderr
        lost_ref = re.search(r"bridge status (\S+)", lost.stdout).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = json.loads(bridge(venv_bin, cwd, "status", lost_ref, "--json").stdout or "[]")
            if found and found[0]["ledger"]["award"]:
                break
            time.sleep(0.3)
        assert found and found[0]["ledger"]["award"], found
        assert found[0]["jobs"][0]["arrivals"][-1]["delivery_id"].startswith("sync-")

        # The live probe `bridge dev` suggests passes on its sandbox.
        probe = bridge(venv_bin, cwd, "check", "demo-woo", "--live")
        assert probe.returncode == 0 and "Every step matched." in probe.stdout, probe.stdout + probe.stderr

        # The alert `bridge dev` tells how to make: a key refused once is firing in `bridge alerts`.
        requests.patch(session["sandbox_url"] + "/_sandbox/config", timeout=5, json={
            "fail_rules": [{"path": "transactions/create", "status": 401, "remaining": 1}]}).raise_for_status()
        assert bridge(venv_bin, cwd, "send-test", "demo-woo").returncode == 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            firing = bridge(venv_bin, cwd, "alerts", "--json")
            if "credentials_rejected" in firing.stdout:
                break
            time.sleep(0.3)
        assert firing.returncode == 2 and '"store": "demo-woo"' in firing.stdout, firing.stdout + firing.stderr

        # Ctrl-C in the terminal reaches the whole foreground group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        printed = process.stdout.read() if process.stdout else ""
        assert "Probe        bridge check demo-woo --live" in printed, printed
        assert "bridge alerts test" in printed and "_sandbox/config" in printed, printed
        time.sleep(0.5)
        left = [pid for pid in below | {int(dev_pid)} if alive(pid)]
        assert left == [], f"processes left behind: {left}"
        assert not (cwd / ".bridge" / "dev.json").exists()


def test_bridge_dev_send_test_status_and_ctrl_c(workdir: Path, venv_bin: Path) -> None:
    """`bridge dev` as installed: the whole chain works and Ctrl-C stops everything."""
    newcomer_flow(f"{venv_bin / 'bridge'} dev", workdir, venv_bin, startup=30)


@pytest.mark.skipif(not shutil.which("python3"), reason="needs python3 on PATH, as a newcomer has")
def test_the_readme_first_command_on_a_fresh_copy(workdir: Path, venv_bin: Path) -> None:
    """Exactly the README's first command, in a copy without .venv: it installs and starts."""
    command = readme_first_command()
    assert command.startswith("python3 -m venv .venv") and command.endswith("bridge dev")
    newcomer_flow(command, workdir, workdir / ".venv" / "bin", startup=300)


def test_bridge_dev_keeps_redis_and_the_sandbox_together_across_restarts(tmp_path: Path, venv_bin: Path) -> None:
    """Both kept, even through a SIGKILL: after a restart the ledger and the sandbox still agree;
    `--fresh` forgets both."""
    cwd = tmp_path / "project"
    cwd.mkdir()
    ports = {"BRIDGE_DEV_PORT": str(free_port()), "BRIDGE_SANDBOX_PORT": str(free_port())}
    today = time.strftime("%Y-%m-%d", time.gmtime())

    def awarded(reference: str) -> bool:
        story = json.loads(bridge(venv_bin, cwd, "status", reference, "--json").stdout or "[]")
        return bool(story and story[0]["ledger"]["award"])

    for process in run_dev(f"{venv_bin / 'bridge'} dev", cwd, clean_env(**ports)):
        wait_for_session(cwd, process, 30)
        sent = bridge(venv_bin, cwd, "send-test", "demo-woo")
        reference = re.search(r"bridge status (\S+)", sent.stdout).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while not awarded(reference) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert awarded(reference)
        below = descendants(process.pid)
        os.killpg(process.pid, signal.SIGKILL)              # no chance to save anything on the way out
        process.wait(timeout=10)
        deadline = time.monotonic() + 15                    # Redis (its own session) stops on its parent's death
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.1)
    (cwd / ".bridge" / "dev.json").unlink(missing_ok=True)   # left behind by the SIGKILL

    for process in run_dev(f"{venv_bin / 'bridge'} dev", cwd, clean_env(**ports)):
        wait_for_session(cwd, process, 30)
        checked = bridge(venv_bin, cwd, "reconcile", "--store", "demo-woo", "--since", today)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "agree" in checked.stdout and awarded(reference)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)

    for process in run_dev(f"{venv_bin / 'bridge'} dev --fresh", cwd, clean_env(**ports)):
        session = wait_for_session(cwd, process, 30)
        assert not awarded(reference)
        assert requests.get(session["sandbox_url"] + "/_sandbox/balances", timeout=5).json()["data"] == {}
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
