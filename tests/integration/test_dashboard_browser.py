"""The dashboard in a real headless Chromium against a real local cluster (issue 7, "Tests in a real browser").

Chromium is Debian's `chromium` package, driven over the DevTools protocol with aiohttp's websocket client (no
Playwright download). Screenshots land in reports/screenshots/. Skips, saying why, without chromium or without
the cluster fixture (tests/integration/conftest.py `cluster_factory`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"

chromium_start_timeout_s = 30.0
cdp_call_timeout_s = 30.0


class Page:
    """One browser tab over its DevTools websocket: navigate, evaluate, wait, screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    fut.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append("EXCEPTION " + json.dumps(data["params"]["exceptionDetails"])[:500])
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("DevTools connection closed"))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        await self.ws.send_str(json.dumps({"id": self._next_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, cdp_call_timeout_s)

    async def navigate(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=1400, height=1800, deviceScaleFactor=1,
                        mobile=False)
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error in {expression!r}: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float, what: str) -> Any:
        """Poll a JS expression until it is truthy; fail naming `what` and the console otherwise."""
        deadline = time.monotonic() + timeout_s
        value: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                value = await self.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last {value!r}); "
                             f"console: {self.console[-10:]}")

    async def screenshot(self, path: Path) -> Path:
        res = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(res["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.ws.close()


class Chromium:
    """A headless Chromium process with remote debugging on a free loopback port; killed on exit."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="ecert-chromium-")
        self.devtools = ""
        self.session: aiohttp.ClientSession | None = None
        self.pages: list[Page] = []

    async def __aenter__(self) -> Chromium:
        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={self.tmp.name}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            self.devtools = await asyncio.wait_for(asyncio.to_thread(self._devtools_url), chromium_start_timeout_s)
        except BaseException:
            self._kill()
            raise
        self.session = aiohttp.ClientSession()
        return self

    def _devtools_url(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            m = re.search(rb"DevTools listening on ws://([\d.:]+)/", raw)
            if m:
                # Keep draining stderr so chromium never blocks on a full pipe.
                threading_drain(self.proc.stderr)
                return "http://" + m.group(1).decode()
        raise RuntimeError("chromium exited before DevTools was listening")

    async def new_page(self) -> Page:
        assert self.session is not None
        async with self.session.put(f"{self.devtools}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        page = Page(ws)
        self.pages.append(page)
        return page

    async def __aexit__(self, *exc: object) -> None:
        for p in self.pages:
            await p.close()
        if self.session is not None:
            await self.session.close()
        self._kill()
        self.tmp.cleanup()

    def _kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # chromium's own children are in its session
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)


def threading_drain(stream: Any) -> None:
    import threading

    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
