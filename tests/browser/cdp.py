"""Open a local page in Debian's headless Chromium over the Chrome DevTools Protocol (CDP) and inspect it.

Only aiohttp (already a dependency, for its websocket client) is needed: no selenium / chromedriver, no browser
download. Chromium is started with ``--remote-debugging-port=0``; the port it picked is read from
``DevToolsActivePort`` in its throw-away profile folder. :func:`inspect_page` records what a person's browser
would complain about (console errors, uncaught exceptions, error log entries, requests that leave the machine),
evaluates JavaScript expressions in the loaded page and writes a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
SKIP_REASON = (
    "Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it with apt-get when it can; "
    "locally: apt-get install -y chromium)"
)
# Flags that work in a root container without a GPU or network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]
MAX_SCREENSHOT_HEIGHT = 6000  # px: a long sample section would make a huge PNG


@dataclasses.dataclass
class PageReport:
    """What the browser saw while loading a page."""

    console_errors: list[str]
    exceptions: list[str]
    log_errors: list[str]
    external_requests: list[str]
    values: dict[str, Any]
    screenshot: Path


class _Cdp:
    """Minimal CDP client: numbered commands with futures, events kept in a list."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pending, self.events = ws, 0, {}, []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def call(self, method: str, session: str | None = None, timeout: float = 60, **params) -> dict:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"CDP {method} failed: {reply['error']}")
        return reply.get("result", {})

    async def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event["method"] == method:
                    return event
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {method} within {timeout}s")

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
        lines = port_file.read_text().splitlines() if port_file.is_file() else []
        if len(lines) >= 2:
            return int(lines[0]), lines[1]
        time.sleep(0.1)
    raise TimeoutError(f"chromium wrote no {port_file} within {timeout}s")


def _describe(event: dict) -> str:
    params = event["params"]
    if event["method"] == "Runtime.consoleAPICalled":
        return " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if event["method"] == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return details.get("exception", {}).get("description") or details.get("text", "")
    entry = params["entry"]
    return f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()


def _stop_process_group(proc: subprocess.Popen) -> None:
    """Terminate Chromium and every helper it started (same process group), killing what ignores SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(Exception):
        proc.stderr.close()


def _remove_profile(profile: Path, attempts: int = 10) -> None:
    """Remove the throw-away profile; a helper that is still exiting may write one last file, so retry briefly."""
    for attempt in range(attempts):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


async def _inspect(page: Path, expressions: dict[str, str], screenshot: Path) -> PageReport:
    import aiohttp

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        # Its own process group: Chromium's helpers (crashpad, utility processes) can outlive the browser process
        # and keep writing into the profile, so the whole group is stopped before the profile is removed.
        proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            port, path = _devtools_port(Path(profile), proc)
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
            ):
                cdp = _Cdp(ws)
                target = await cdp.call("Target.createTarget", url="about:blank")
                attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
                session = attached["sessionId"]
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await cdp.call(f"{domain}.enable", session)
                await cdp.call("Page.navigate", session, url=page.resolve().as_uri())
                await cdp.wait_event("Page.loadEventFired")
                values = {name: await cdp.evaluate(session, expr) for name, expr in expressions.items()}
                metrics = await cdp.call("Page.getLayoutMetrics", session)
                size = metrics["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": size["width"], "scale": 1}
                clip["height"] = min(size["height"], MAX_SCREENSHOT_HEIGHT)
                shot = await cdp.call(
                    "Page.captureScreenshot", session, format="png", captureBeyondViewport=True, clip=clip
                )
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                await asyncio.sleep(0.2)  # late console messages of the page's own script
                cdp.reader.cancel()
                events = list(cdp.events)
        finally:
            _stop_process_group(proc)
    finally:
        _remove_profile(Path(profile))
    by = lambda method, keep=lambda e: True: [_describe(e) for e in events if e["method"] == method and keep(e)]  # noqa: E731
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    return PageReport(
        console_errors=by("Runtime.consoleAPICalled", lambda e: e["params"]["type"] in ("error", "assert")),
        exceptions=by("Runtime.exceptionThrown"),
        log_errors=by("Log.entryAdded", lambda e: e["params"]["entry"]["level"] == "error"),
        external_requests=[u for u in requests if not u.startswith(("file:", "data:", "about:"))],
        values=values,
        screenshot=screenshot,
    )


def inspect_page(page: Path, expressions: dict[str, str], screenshot: Path | None = None) -> PageReport:
    """Load ``page`` (a local HTML file) in headless Chromium, evaluate ``expressions``, write a PNG screenshot.

    Args:
        page: HTML file to open (as a ``file://`` URL).
        expressions: ``{name: JavaScript expression}``, evaluated after the load event (promises awaited);
            their JSON values come back in :attr:`PageReport.values`.
        screenshot: PNG output path; default ``<page stem>_screenshot.png`` next to the page.
    """
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        raise FileNotFoundError(SKIP_REASON)
    screenshot = screenshot or page.with_name(f"{page.stem}_screenshot.png")
    return asyncio.run(_inspect(page, expressions, screenshot))
