"""The review UI in headless Chromium, driven like a person: key presses and mouse clicks.

Starts an orchestrator (SQLite + file store in a folder) and the review UI as processes
(`tests.harness.processes`), imports real Jacquard samples through the orchestrator's
Jacquard import or a synthetic dataset, opens a round for review
(`tests.harness.seeders.seed_round`) and drives Debian's Chromium (`apt-get install -y
chromium`; no browser is ever downloaded) through the DevTools protocol over a websocket:
real key presses and mouse clicks at screen coordinates. The e2e tests
(`tests/e2e/test_review_browser.py`) and `scripts/screenshot_review.py` (the README's
screenshot) use these pieces.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from websockets.sync.client import connect

from regrasp.api.datasets import ImportRequest, JacquardSource
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.store.db.engine import make_engine, session_scope
from tests.harness.ports import free_port
from tests.harness.processes import ServiceProcess, local_orchestrator, start_service
from tests.harness.seeders import import_synthetic, seed_round

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
ADMIN = ("lead", "lead-password-1")
ANNOTATOR = ("ana", "annotator-password")
#: The screens the review page must fit without scrolling (CSS pixels).
VIEWPORTS = ((1366, 768), (1440, 900), (1920, 1080))

#: JavaScript expressions the driver polls (reading the page, never changing it).
_PICTURE = '[data-testid="stPlotlyChart"]'
_DOTS = f"{_PICTURE} .scatterlayer .trace path.point"
_PICTURE_READY = (
    "(() => { const c = document.querySelector('" + _PICTURE + "');"
    " return !!c && !!c.querySelector('.imagelayer image')"
    " && c.querySelectorAll('.scatterlayer .trace path.point').length > 0; })()"
)
_SETTLED = (
    "!document.querySelector('[data-stale=\"true\"]')"
    " && !document.querySelector('[data-testid^=\"stStatusWidgetRunning\"]')"
)
#: Counts the messages the page sends to the app over its WebSocket (`window.__sent`):
#: a pick or key press reaches Streamlit as one such message, so a count that grows says
#: the browser took the input (whether or not the app has finished the run it starts).
_COUNT_SENT = (
    "(() => { window.__sent = 0; const send = WebSocket.prototype.send;"
    " WebSocket.prototype.send = function (...args) { window.__sent += 1;"
    " return send.apply(this, args); }; })()"
)
_TRACEBACK = (
    "(() => !!document.querySelector('[data-testid=\"stException\"]')"
    " || document.body.innerText.includes('Traceback'))()"
)


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Outcome:
    """What the synthetic run saw: the text before and after the key presses, a screenshot."""

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

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, expression: str, *, timeout: float = 60.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(
            f"waited {timeout} s for {what or expression}; page: {self.text()[:800]!r}"
        )

    def wait_text(self, needle: str, *, timeout: float = 60.0) -> None:
        self.wait_for(
            f"document.body.innerText.includes({json.dumps(needle)})", what=needle, timeout=timeout
        )

    def type_into(self, selector: str, text: str) -> None:
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", what=selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def press(self, key: str) -> None:
        """A key press as a person makes it (keydown with its text, then keyup)."""
        special = {"Enter": ("Enter", 13, "\r"), "Escape": ("Escape", 27, "")}
        if key in special:
            code, vk, text = special[key]
        else:
            code = f"Key{key.upper()}" if key.isalpha() else f"Digit{key}"
            vk, text = ord(key.upper()), key
        for kind in ("keyDown", "keyUp"):
            params: dict[str, Any] = {
                "type": kind,
                "key": key,
                "code": code,
                "windowsVirtualKeyCode": vk,
            }
            if kind == "keyDown" and text:
                params["text"] = text
            self.send("Input.dispatchKeyEvent", **params)

    def click(self, selector: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def mouse_click(self, x: float, y: float) -> None:
        """A left click at viewport coordinates (CSS pixels): move there, press, release."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def viewport(self, width: int, height: int) -> None:
        """Make the page's viewport exactly width × height CSS pixels."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def box(self, selector: str, index: int = 0) -> dict[str, float] | None:
        """The bounding box (x, y, width, height, bottom, right) of a matching element."""
        return self.eval(
            f"(() => {{ const e = document.querySelectorAll({json.dumps(selector)})[{index}];"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return {x: r.x, y: r.y, width: r.width, height: r.height, bottom: r.bottom,"
            " right: r.right}; })()"
        )

    def screenshot(self) -> bytes:
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


class ReviewPage:
    """The review screen in a `Browser`: sign in, open it, pick labels, press keys."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.browser = browser
        self.url = url

    def open(self, user: tuple[str, str] = ANNOTATOR) -> None:
        """Sign in as `user` and go to the review page (in-app: a reload signs out)."""
        self.browser.send("Page.enable")
        self.browser.send("Page.addScriptToEvaluateOnNewDocument", source=_COUNT_SENT)
        self.browser.send("Page.navigate", url=self.url)
        self.sign_in(user)
        self.go_to("review")
        self.wait_ready()

    def sign_in(self, user: tuple[str, str]) -> None:
        """Fill the sign-in form and press its button; wait for the signed-in navigation."""
        b = self.browser
        b.type_into('input[aria-label="Username"]', user[0])
        b.type_into('input[aria-label="Password"]', user[1])
        b.eval("document.activeElement.blur()")
        time.sleep(0.5)  # let Streamlit commit the typed values before the click
        b.click('[data-testid="stBaseButton-primary"]')
        b.wait_for(
            "[...document.querySelectorAll('[data-testid=\"stSidebarNavLink\"]')]"
            ".some(a => a.getAttribute('href').endsWith('/review'))",
            what="the signed-in navigation",
        )

    def sign_out(self) -> None:
        """Click the sidebar's "Sign out" (a real click); wait for the sign-in form: its
        username field and its button (Streamlit renders them one after the other, and a
        check of the button once read it before it existed)."""
        self.click_until(
            ".st-key-logout button",
            until="!!document.querySelector('input[aria-label=\"Username\"]')"
            " && !!document.querySelector('[data-testid=\"stBaseButton-primary\"]')",
            what="the sign-in form after signing out",
        )

    def go_to(self, page: str) -> None:
        """Follow the sidebar's link to `page` (the URL's last part: review, rounds, …)."""
        b = self.browser
        link = (
            "[...document.querySelectorAll('[data-testid=\"stSidebarNavLink\"]')]"
            f".find(a => a.getAttribute('href').endsWith('/{page}'))"
        )
        for _ in range(5):
            # A click while the previous page is still running can be dropped: click again.
            self.settle()
            b.wait_for(f"!!{link}", what=f"the link to {page}")
            b.eval(f"{link}.click()")
            try:
                b.wait_for(f"location.pathname.endsWith('/{page}')", timeout=10, what=page)
                break
            except TimeoutError:
                continue
        else:
            raise TimeoutError(f"the sidebar link to {page} did not open it")

    def click_until(
        self, selector: str, *, until: str, what: str, tries: int = 5, wait: float = 10.0
    ) -> None:
        """A real mouse click on the element's centre (scrolled into view), repeated until
        the JavaScript `until` holds: a click on an element Streamlit is still replacing,
        or during a run, can be lost."""
        b = self.browser
        target = json.dumps(selector)
        for _ in range(tries):
            self.settle()
            b.wait_for(f"!!document.querySelector({target})", what=selector)
            b.eval(f"document.querySelector({target}).scrollIntoView({{block: 'center'}})")
            time.sleep(0.2)
            box = b.box(selector)
            if box is None or box["width"] == 0:
                continue
            b.mouse_click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            try:
                b.wait_for(until, timeout=wait, what=what)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"clicked {selector} {tries} times, still not {what}: {b.text()[:600]}")

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """The real review content: the picture with its dots, not Streamlit's skeleton."""
        self.browser.wait_for(
            f"{_PICTURE_READY} && document.body.innerText.includes('decided this session')",
            what="the review screen",
            timeout=timeout,
        )
        self.settle(timeout=timeout)

    def settle(self, *, timeout: float = 60.0) -> None:
        """Wait until the app's run is over: no element left stale, no running indicator.

        While a run is in flight Streamlit shows the new elements as they come and keeps
        the rest of the old page (marked stale): reading the page then mixes two items.
        """
        time.sleep(0.2)
        self.browser.wait_for(_SETTLED, what="the app to finish its run", timeout=timeout)

    def item_line(self) -> str:
        """The status line: object / image · item N · … labels · decided this session …"""
        return self.browser.eval(
            "[...document.querySelectorAll('[data-testid=\"stMarkdownContainer\"]')]"
            ".map(e => e.innerText).find(t => t.includes('decided this session')) || ''"
        )

    def decided(self) -> int:
        line = self.item_line()
        return int(line.split("decided this session")[1].split("·")[0].strip())

    def marked(self) -> list[int]:
        """The label numbers the list beside the picture shows as marked wrong."""
        text = self.browser.eval(
            "(() => { const caps = [...document.querySelectorAll("
            "'[data-testid=\"stCaptionContainer\"]')];"
            " const c = caps.find(e => e.innerText.startsWith('Marked wrong'));"
            " if (!c) return null;"
            " let el = c.closest('[data-testid=\"stElementContainer\"]').nextElementSibling;"
            " return el ? el.innerText : ''; })()"
        )
        if text is None:
            raise AssertionError(f"no 'Marked wrong' list on the page: {self.browser.text()[:600]}")
        return [int(t) for t in text.split() if t.isdigit()]

    def dot(self, number: int) -> tuple[float, float]:
        """Viewport centre of label `number`'s dot (1-based) on the picture."""
        box = self.browser.box(_DOTS, number - 1)
        if box is None:
            raise AssertionError(f"label {number} has no dot on the picture")
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def dot_count(self) -> int:
        return int(self.browser.eval(f"document.querySelectorAll({json.dumps(_DOTS)}).length"))

    def separate_labels(self, count: int = 2, *, apart: float = 40.0) -> list[int]:
        """Label numbers whose dots have no other dot near them on screen (clean clicks),
        `apart` CSS pixels from each other; the most isolated first."""
        centres = self.dots()
        n = len(centres)
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        np.fill_diagonal(gaps, np.inf)
        chosen: list[int] = []
        for i in np.argsort(-gaps.min(axis=1)):
            if all(gaps[i, j] > apart for j in chosen):
                chosen.append(int(i))
            if len(chosen) == count:
                return [c + 1 for c in chosen]
        raise AssertionError(f"no {count} labels {apart} px apart among {n}")

    def click_label(self, number: int) -> None:
        """Click label `number`'s dot and wait until the page shows the changed marks."""
        before = self.marked()
        self.browser.mouse_click(*self.dot(number))
        expected = sorted(set(before) ^ {number})
        self.browser.wait_for(
            "(() => { const caps = [...document.querySelectorAll("
            "'[data-testid=\"stCaptionContainer\"]')];"
            " const c = caps.find(e => e.innerText.startsWith('Marked wrong'));"
            f" return !!c && c.innerText.includes(': {len(expected)} of'); }})()",
            what=f"label {number} toggled",
        )
        self.wait_ready()

    def sent(self) -> int:
        """Messages the page has sent to the app so far (see `_COUNT_SENT`)."""
        return int(self.browser.eval("window.__sent || 0"))

    def click_label_in_flight(self, number: int, *, tries: int = 3, wait: float = 5.0) -> None:
        """Click label `number`'s dot and return as soon as the browser has sent the pick
        to the app, its run still in flight: the moment a fast next key press races it.

        A click on a chart Plotly is still drawing (a loaded machine) can be lost, as a
        person's would be; then wait for the page to settle and click again. A pick that
        arrived late (the page now shows it marked) counts and is not clicked again.
        """
        for _ in range(tries):
            before = self.sent()
            self.browser.mouse_click(*self.dot(number))
            try:
                self.browser.wait_for(f"(window.__sent || 0) > {before}", timeout=wait)
                return
            except TimeoutError:
                self.settle()
                if number in self.marked():
                    return
        raise TimeoutError(f"clicked label {number}'s dot {tries} times; the app never got it")

    def box_select(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Choose the picture's box tool and drag from (x0, y0) to (x1, y1) (viewport px)."""
        b = self.browser
        tool = f"{_PICTURE} .modebar-btn[data-attr='dragmode'][data-val='select']"
        b.wait_for(f"!!document.querySelector({json.dumps(tool)})", what="the box tool")
        b.click(tool)
        self.drag(x0, y0, x1, y1)

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Press the mouse at (x0, y0), move in steps to (x1, y1), release (viewport px)."""
        b = self.browser
        b.send("Input.dispatchMouseEvent", type="mouseMoved", x=x0, y=y0)
        b.send(
            "Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left", clickCount=1
        )
        for t in np.linspace(0.1, 1.0, 10):
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            b.send(
                "Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1
            )
        b.send(
            "Input.dispatchMouseEvent",
            type="mouseReleased",
            x=x1,
            y=y1,
            button="left",
            clickCount=1,
        )

    def dots(self) -> np.ndarray:
        """(N, 2) viewport centres of every label's dot, label 1 first."""
        return np.array([self.dot(k) for k in range(1, self.dot_count() + 1)])

    def press(self, key: str) -> None:
        self.browser.eval("document.activeElement && document.activeElement.blur()")
        self.browser.press(key)

    def has_traceback(self) -> bool:
        return bool(self.browser.eval(_TRACEBACK))


def apply_round_in_browser(page: ReviewPage, round_id: int) -> tuple[dict[str, str], bytes]:
    """The lead applies a round from the Rounds page, with real clicks: tick "I have read
    what will change", press "Apply round N", wait for the page to say it is applying.

    The page must be signed in as an admin. Returns the confirmation's figures (metric
    label → value, as shown) and a screenshot of the confirmation, taken before the press.
    """
    b = page.browser
    section = f".st-key-apply_{round_id}"
    page.go_to("rounds")
    b.wait_for(f"!!document.querySelector('{section} button')", what=f"Apply round {round_id}")
    page.settle()
    # The figures of this round's confirmation: the metrics in the block around its button.
    metrics = b.eval(
        "(() => { let el = document.querySelector('" + section + "');"
        " while (el && !el.querySelector('[data-testid=\"stMetric\"]')) el = el.parentElement;"
        " if (!el) return null;"
        " return Object.fromEntries([...el.querySelectorAll('[data-testid=\"stMetric\"]')]"
        "   .map(m => [m.querySelector('[data-testid=\"stMetricLabel\"]').innerText.trim(),"
        "              m.querySelector('[data-testid=\"stMetricValue\"]').innerText.trim()])); })()"
    )
    if not metrics:
        raise AssertionError(f"round {round_id}'s apply confirmation shows no figures")
    button = f"document.querySelector('{section} button')"
    page.click_until(
        f".st-key-apply_confirm_{round_id} label",
        until=(
            f"!!document.querySelector('.st-key-apply_confirm_{round_id} input:checked')"
            f" && !!{button} && !{button}.disabled"
        ),
        what="the confirmation ticked and the apply button enabled",
        wait=20.0,
    )
    b.eval(f"{button}.scrollIntoView({{block: 'center'}})")
    time.sleep(0.5)  # let the last paint settle
    shot = b.screenshot()
    applying = f"Round {round_id} is applying"
    page.click_until(
        f"{section} button",
        until=f"document.body.innerText.includes({json.dumps(applying)})",
        what=f"round {round_id} applying",
        wait=30.0,
    )
    return metrics, shot


@contextmanager
def chromium(path: str, workdir: Path, *, width: int = 1440, height: int = 900) -> Iterator[str]:
    """Headless Chromium with remote debugging on 127.0.0.1; yields a page's websocket URL."""
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    process = subprocess.Popen(
        [
            path,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
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


@contextmanager
def browser_page(
    path: str, workdir: Path, url: str, *, viewport=(1440, 900)
) -> Iterator[ReviewPage]:
    """A fresh Chromium with its viewport set, as a `ReviewPage` on the UI at `url`."""
    with chromium(path, workdir, width=viewport[0], height=viewport[1]) as ws:
        browser = Browser(ws)
        try:
            browser.viewport(*viewport)
            yield ReviewPage(browser, url)
        finally:
            browser.close()


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
    env = {
        **os.environ,
        "REGRASP_ORCHESTRATOR_URL": orchestrator_url,
        "REGRASP_DATA_DIR": str(workdir / "ui"),
    }
    port = free_port()
    ui = start_service("review_ui", env=env, log=workdir / f"review-ui-{port}.log", port=port)
    try:
        ui.wait_http("/_stcore/health", timeout=60)
        yield ui.url
    finally:
        ui.stop()


@dataclass
class Stack:
    """An orchestrator with an admin and an annotator, and the review UI in front of it."""

    orchestrator: ServiceProcess
    ui_url: str
    database_url: str
    workdir: Path

    def client(self, user: tuple[str, str] = ADMIN) -> OrchestratorClient:
        api = OrchestratorClient(self.orchestrator.url)
        api.login(*user)
        return api

    def open_round(self, dataset_id: int, *, max_images: int | None = None) -> int:
        """A round in `reviewing` on the dataset's latest version (seeded predictions)."""
        engine = make_engine(self.database_url)
        try:
            with session_scope(engine) as session:
                return seed_round(session, dataset_id=dataset_id, max_images=max_images)
        finally:
            engine.dispose()


@contextmanager
def review_stack(workdir: Path) -> Iterator[Stack]:
    """Orchestrator (SQLite + file store under `workdir`) and review UI, both on 127.0.0.1."""
    with local_orchestrator(workdir, admin=ADMIN, users=[ANNOTATOR]) as orchestrator:
        with review_ui(orchestrator.url, workdir) as url:
            yield Stack(orchestrator, url, orchestrator.database_url, workdir)


def import_jacquard(
    stack: Stack, samples: Path, *, name: str, images: Sequence[str] | None = None
) -> int:
    """Import real Jacquard samples through the orchestrator's Jacquard import; the dataset id.

    images: stems (`4_<object>`) to import, else all. The chosen files are linked (not
    copied) into a folder tree under the stack's workdir, which the import reads.
    """
    tree = stack.workdir / f"jacquard-{name}"
    grasp_files = sorted(samples.glob("*/*_grasps.txt"))
    stems = [f.name[: -len("_grasps.txt")] for f in grasp_files]
    chosen = set(images) if images is not None else set(stems)
    missing = chosen - set(stems)
    if missing:
        raise FileNotFoundError(f"no Jacquard sample {sorted(missing)} in {samples}")
    for grasps, stem in zip(grasp_files, stems, strict=True):
        if stem not in chosen:
            continue
        folder = tree / grasps.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        for file in grasps.parent.glob(f"{stem}_*"):
            (folder / file.name).symlink_to(file.resolve())
    with stack.client() as api:
        job = api.start_import(ImportRequest(name=name, source=JacquardSource(path=str(tree))))
        done = api.wait_import(job.id, poll_seconds=0.2, timeout=600)
    if done.state != "succeeded" or done.dataset_id is None:
        raise RuntimeError(f"import {job.id} {done.state}: {done.error}")
    return done.dataset_id


def most_labelled(samples: Path, count: int = 1) -> list[str]:
    """Stems of the `count` sample images with the most label lines, most first."""
    files = sorted(samples.glob("*/*_grasps.txt"))
    ranked = sorted(files, key=lambda f: (-len(f.read_bytes().splitlines()), f.name))
    return [f.name[: -len("_grasps.txt")] for f in ranked[:count]]


def review_in_browser(workdir: Path, *, chromium_path: str, image_size: int = 384) -> Outcome:
    """A synthetic dataset (no samples needed): accept prediction 1, decide M, zoom."""
    with review_stack(workdir) as stack:
        with stack.client() as api:
            dataset = import_synthetic(api, name="demo", images=6, size=image_size, seed=3)
        stack.open_round(dataset, max_images=6)
        with browser_page(chromium_path, workdir, stack.ui_url) as page:
            return _drive_synthetic(page)


def _drive_synthetic(page: ReviewPage) -> Outcome:
    b = page.browser
    page.open()
    before = b.text()
    page.press("1")  # accept prediction 1
    b.wait_text("✓ 1")
    page.press("m")  # missing label
    b.wait_text("decided this session 1")
    page.wait_ready()
    page.press("z")  # the whole image (zoomed on the object by default)
    b.wait_for("!document.body.innerText.includes('Unzoom')", what="the whole image")
    page.press("1")  # show a selection on the new item too
    b.wait_text("✓ 1")
    page.wait_ready()
    time.sleep(0.5)  # let the last paint settle
    return Outcome(before=before, after=b.text(), screenshot=b.screenshot())


def screenshot_jacquard(
    workdir: Path, samples: Path, *, chromium_path: str, viewport: tuple[int, int]
) -> bytes:
    """The review screen on the sample with the most labels: prediction 1 accepted, two
    labels marked wrong, one grasp drawn across the object's middle."""
    with review_stack(workdir) as stack:
        dataset = import_jacquard(stack, samples, name="jacquard", images=most_labelled(samples))
        stack.open_round(dataset)
        with browser_page(chromium_path, workdir, stack.ui_url, viewport=viewport) as page:
            page.open()
            page.press("1")  # accept prediction 1: its tag turns yellow
            page.browser.wait_text("✓ 1")
            page.wait_ready()
            for number in page.separate_labels(2):
                page.click_label(number)
            # A stroke across the object (the labels' dots lie on it): through their
            # middle, across their long axis, about as long as the object is wide.
            dots = page.dots()
            centre = np.median(dots, axis=0)
            _, spread, axes = np.linalg.svd(dots - centre, full_matrices=False)
            across = axes[1] * 2.2 * spread[1] / np.sqrt(len(dots))
            page.press("g")
            page.browser.wait_text("drag jaw to jaw")
            page.wait_ready()
            page.drag(*(centre - across), *(centre + across))
            page.browser.wait_text("(new labels, with Missing label or Fix): 1")
            page.wait_ready()
            page.press("g")  # back to picking
            page.browser.wait_text("Draw a grasp")
            page.wait_ready()
            time.sleep(0.8)  # let the last paint settle
            return page.browser.screenshot()
