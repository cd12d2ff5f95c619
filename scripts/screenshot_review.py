"""Drive the review UI in headless Chromium, make one decision by key press, screenshot it.

Starts an orchestrator (SQLite + file store in a temporary folder) with a small synthetic
dataset and a round open for review, the review UI (`python -m services.review_ui serve`),
and Debian's Chromium (`apt-get install -y chromium`; no browser is ever downloaded),
driven through the DevTools protocol over a websocket. It signs in as an annotator, opens
the review screen, waits for the image (not Streamlit's loading skeleton), accepts
prediction 1 with the "1" key, decides with "M" (missing label), waits for the next item
and saves a screenshot.

    python scripts/screenshot_review.py [--out docs/review-screen.png]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regrasp.clients.orchestrator import OrchestratorClient, UserCreate  # noqa: E402
from regrasp.store.db.engine import make_engine, session_scope  # noqa: E402
from scripts.review_demo import (  # noqa: E402
    REPO,
    free_port,
    import_synthetic,
    seed_round,
    start_orchestrator,
)

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
ADMIN = ("lead", "lead-password-1")
ANNOTATOR = ("ana", "annotator-password")


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Outcome:
    """What the browser run saw: the text before and after the key press, the screenshot."""

    before: str
    after: str
    screenshot: bytes


class Browser:
    """A minimal DevTools-protocol client for one page (commands and polling, no events)."""

    def __init__(self, ws_url: str) -> None:
        self._connection = connect(ws_url, max_size=64 * 2**20, open_timeout=30)
        self._ws = self._connection.__enter__()
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 60.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        text = self.eval("document.body ? document.body.innerText : ''")
        raise TimeoutError(f"waited {timeout} s for {what or expression}; page: {text[:800]!r}")

    def type_into(self, selector: str, text: str) -> None:
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", what=selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def press(self, key: str) -> None:
        """A key press as a person makes it (keydown with its text, then keyup)."""
        code = f"Key{key.upper()}" if key.isalpha() else f"Digit{key}"
        vk = ord(key.upper())
        for kind in ("keyDown", "keyUp"):
            params: dict[str, Any] = {
                "type": kind,
                "key": key,
                "code": code,
                "windowsVirtualKeyCode": vk,
            }
            if kind == "keyDown":
                params["text"] = key
            self.send("Input.dispatchKeyEvent", **params)

    def click(self, selector: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


@contextmanager
def chromium(path: str, workdir: Path, *, width: int = 1440, height: int = 1000) -> Iterator[str]:
    """Headless Chromium with remote debugging on 127.0.0.1; yields a page's websocket URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            path,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={workdir / 'chromium-profile'}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield _page_socket(port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _page_socket(port: int, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Chromium did not open its DevTools endpoint")


@contextmanager
def review_ui(orchestrator_url: str, workdir: Path) -> Iterator[str]:
    """The Streamlit review UI as a process on 127.0.0.1; yields its URL once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "REGRASP_ORCHESTRATOR_URL": orchestrator_url,
        "REGRASP_DATA_DIR": str(workdir / "ui"),
    }
    log = (workdir / "review-ui.log").open("wb")
    cmd = [sys.executable, "-m", "services.review_ui", "serve", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*cmd, "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"review UI did not start: {(workdir / 'review-ui.log').read_text()}"
                    ) from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def review_in_browser(workdir: Path, *, chromium_path: str, image_size: int = 384) -> Outcome:
    """The whole run (see the module docstring); returns what the page showed."""
    orchestrator = start_orchestrator(
        database_url=f"sqlite:///{workdir / 'regrasp.db'}",
        store_url=f"file://{workdir / 'objects'}",
        data_dir=workdir / "data",
        admin=ADMIN,
    )
    try:
        with OrchestratorClient(orchestrator.url) as api:
            api.login(*ADMIN)
            api.create_user(UserCreate(username=ANNOTATOR[0], password=ANNOTATOR[1]))
            dataset = import_synthetic(api, name="demo", images=6, size=image_size, seed=3)
        engine = make_engine(f"sqlite:///{workdir / 'regrasp.db'}")
        try:
            with session_scope(engine) as session:
                seed_round(session, dataset_id=dataset, max_images=6)
        finally:
            engine.dispose()
        with review_ui(orchestrator.url, workdir) as url, chromium(chromium_path, workdir) as ws:
            browser = Browser(ws)
            try:
                return _drive(browser, url)
            finally:
                browser.close()
    finally:
        orchestrator.stop()


def _drive(browser: Browser, url: str) -> Outcome:
    browser.send("Page.enable")
    browser.send("Page.navigate", url=url)
    browser.type_into('input[aria-label="Username"]', ANNOTATOR[0])
    browser.type_into('input[aria-label="Password"]', ANNOTATOR[1])
    browser.eval("document.activeElement.blur()")
    time.sleep(0.5)  # let Streamlit commit the typed values before the click
    browser.click('[data-testid="stBaseButton-primary"]')
    browser.wait_for("document.body.innerText.includes('Start reviewing')", what="home page")
    # In-app navigation: a page load would start a new Streamlit session (signed out).
    browser.eval(
        "[...document.querySelectorAll('a')].find(a => a.innerText.includes('Start reviewing'))"
        ".click()"
    )
    # The real content, not the skeleton: the overlay image has loaded and the buttons exist.
    browser.wait_for(
        "(() => { const i = document.querySelector('[data-testid=\"stImage\"] img');"
        " return !!i && i.complete && i.naturalWidth > 0"
        " && document.body.innerText.includes('decided this session 0'); })()",
        what="the review screen",
    )
    before = browser.eval("document.body.innerText")
    browser.eval("document.activeElement && document.activeElement.blur()")
    browser.press("1")  # accept prediction 1
    browser.wait_for("document.body.innerText.includes('✓ 1')", what="prediction 1 accepted")
    browser.press("m")  # missing label
    browser.wait_for(
        "document.body.innerText.includes('decided this session 1')", what="the next item"
    )
    browser.press("z")  # zoom on the object
    browser.wait_for("document.body.innerText.includes('Unzoom')", what="the zoomed view")
    browser.press("1")  # show a selection on the new item too
    browser.wait_for("document.body.innerText.includes('✓ 1')", what="prediction 1 accepted")
    browser.wait_for(
        "(() => { const i = document.querySelector('[data-testid=\"stImage\"] img');"
        " return !!i && i.complete && i.naturalWidth > 0; })()",
        what="the next image",
    )
    time.sleep(0.5)  # let the last paint settle
    after = browser.eval("document.body.innerText")
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    return Outcome(before=before, after=after, screenshot=base64.b64decode(shot["data"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "review-screen.png")
    args = parser.parse_args()
    path = find_chromium()
    if path is None:
        sys.exit(f"Chromium not found; install it with: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="regrasp-shot-") as tmp:
        outcome = review_in_browser(Path(tmp), chromium_path=path, image_size=512)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(outcome.screenshot)
    print(f"saved {args.out} ({len(outcome.screenshot)} bytes)")


if __name__ == "__main__":
    main()
