"""Fixtures for end-to-end tests: the system started with the README's run command
(`mimamori run --demo`) in a scratch data directory, and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.mailsink import free_port

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google, which this
# machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
DEMO_PASSWORD = "mimamori-demo"  # registry/demo.py
ARTIFACTS = Path(os.environ.get("MIMAMORI_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


def shot(page: Any, name: str) -> None:
    """A full-page screenshot in test-artifacts/, to look at what a person would see."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any, url: str, username: str) -> None:
    """Log in on the console or guardian login page at ``url`` with a demo login."""
    page.goto(url)
    page.get_by_label("ログインID").fill(username)
    page.get_by_label("パスワード", exact=True).fill(DEMO_PASSWORD)
    page.get_by_role("button", name="ログイン").click()


@dataclass
class RunningSystem:
    url: str
    output: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def demo_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """`mimamori run --demo` as a user starts it, on free ports, until the module's tests end.

    With one general worker (besides the urgent and the gate workers): the pages do not need
    more, and each worker process costs a second or two of CPU to start, on every module. Ready
    once the site answers and every worker has started, so that a test's first mail does not
    wait for the workers' start-up."""
    data_dir = tmp_path_factory.mktemp("data")
    port = free_port()
    output = data_dir / "run.log"
    env = {
        **os.environ,
        "MIMAMORI_DATA_DIR": str(data_dir),
        "MIMAMORI_DEVMAIL_PORT": str(free_port()),
        "DATABASE_URL": "",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("EMAIL_URL", None)
    env.pop("BASE_URL", None)
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mimamori", "run", "--demo", "--port", str(port), "--workers=1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        url = _wait_for_url(output, process, deadline)
        _wait_for_workers(output, process, deadline)
        yield RunningSystem(url=url, output=output, process=process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_url(output: Path, process: subprocess.Popen[bytes], deadline: float) -> str:
    import urllib.request

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("mimamori run exited early:\n" + output.read_text(errors="replace"))
        match = re.search(r"(http://127\.0\.0\.1:\d+)/?", output.read_text(errors="replace"))
        if match:
            try:
                urllib.request.urlopen(match.group(1) + "/portal/login/", timeout=2).close()  # noqa: S310
                return match.group(1)
            except OSError:
                pass
        time.sleep(0.3)
    raise AssertionError("mimamori run printed no URL in time:\n" + output.read_text(errors="replace"))


def _wait_for_workers(output: Path, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Until every worker `mimamori run` announced (their pids) has logged its start."""
    text = output.read_text(errors="replace")
    pids = [
        pid
        for line in re.findall(r"(?:Background workers|Urgent worker|Gate worker): +pids? ([\d, ]+)", text)
        for pid in line.replace(",", " ").split()
    ]
    assert pids, "mimamori run announced no workers:\n" + text
    while output.read_text(errors="replace").count("Starting worker worker_id=") < len(pids):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"the {len(pids)} workers did not all start:\n" + output.read_text(errors="replace")
            )
        time.sleep(0.3)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install-browser` (Debian's chromium package).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
