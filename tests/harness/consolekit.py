"""The web console in a real Chromium: pages that record their errors, and
where the screenshots of a test run go (never into the repository)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page

from harness.support import send_text_frame

LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
NETWORK_NOISE = ("Failed to load resource", "WebSocket connection to")


class ConsolePage:
    """A console tab with every page error, console error and CSP report it raised."""

    def __init__(self, context: BrowserContext, origin: str, route: str = "#/") -> None:
        self.problems: list[str] = []
        self.page: Page = context.new_page()
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", self._console)
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation',"
            " (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`))"
        )
        self.page.goto(f"{origin}/console/{route}")

    def _console(self, message: Any) -> None:
        # Refused requests (a 401 from /stats, a WebSocket a proxy refuses)
        # are logged by the browser itself; the tests check those answers.
        if message.type == "error" and not message.text.startswith(NETWORK_NOISE):
            self.problems.append(f"console error: {message.text}")

    def connected(self, transport: str = "websocket", timeout: float = 15000) -> None:
        """Wait until the console's node is connected over ``transport``."""
        self.page.wait_for_selector(
            f'#connection-toggle[data-state="connected"]:has-text("{transport}")', timeout=timeout
        )

    def member(self, name: str) -> Any:
        return self.page.locator(f'.members li[data-name="{name}"]')

    def send(self, text: str, to: str | None = None) -> None:
        self.page.select_option("#compose-to", label=to or "Everyone")
        self.page.fill("#compose-text", text)
        self.page.click(".compose button[type=submit]")
        self.page.wait_for_function("() => document.querySelector('#compose-text').value === ''")

    def no_problems(self) -> None:
        assert self.problems == []


def screenshot_dir() -> Path:
    """``WINGMAN_SCREENSHOTS`` when set, else a fresh temporary directory."""
    given = os.environ.get("WINGMAN_SCREENSHOTS")
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="wingman-console-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def overflows(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0 when it fits)."""
    return int(page.evaluate("() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"))


class _Frames:
    """Collects what ``send_text_frame`` writes."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


def send_at_once(sock: Any, messages: list[dict[str, Any]]) -> None:
    """Client frames in one write, so the gateway reads them in one turn
    (and batches the presence notices they cause)."""
    frames = _Frames()
    for message in messages:
        send_text_frame(frames, message)  # type: ignore[arg-type]
    sock.sendall(frames.data)
