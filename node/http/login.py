"""The dashboard's one-time login link, as Jupyter does it: the node's operator opens the page as the node's own org.

    setup_login(app, org_id, base_url, data_dir)      # at setup; the link is written when the app starts

When the node's app starts, the node mints a login code for its own org (the org that runs it) with the identity
gate's `LoginLinks` (node/http/auth_gate.py, `node.auth.logins`: codes bound to the gate's sessions) and writes one
line, `http://<node http address>/login?code=<code>`, to `<data_dir>/dashboard-login.url` (mode 0600: only the
operator's account reads it; ./scripts/run prints it). `GET /login?code=...` spends the code once: it sets the
session cookie (auth_gate.set_session_cookie: HttpOnly, SameSite=Strict, Path=/; a read-only session of
SESSION_TTL_MS, as a signed `POST /v1/session` would give) and redirects to `/`. A used, unknown or expired code
answers a 401 page.

A new link is written at each start and again as soon as the current one is spent or expires
(LOGIN_LINK_TTL_MS after minting), so the file always holds a link that works once: `cat` it again for a second
browser. The code exists only in this process (LoginLinks keeps a hash of it) and in that file; a restart ends
every session (a fresh session secret) and every link. An app without a gate (a dashboard mounted alone) writes
no link and `/login` refuses every code.

`POST /logout` drops the session cookie (the page's "log out").
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from node.http.auth_gate import AUTH_GATE_KEY, clear_session_cookie, set_session_cookie
from node.request_auth import AuthError, LoginLinks, fresh_login_code

log = logging.getLogger("node.http.login")

LOGIN_FILE = "dashboard-login.url"
LOGIN_FILE_MODE = 0o600
renew_check_interval_s = 1.0
"""How often the node looks whether the link in the file has expired (and writes a new one)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LoginDesk:
    """The node's own login link: minted, written to its file, spent once, renewed."""

    def __init__(self, org_id: str, base_url: str, path: Path, clock: Callable[[], int] = now_ms,
                 code: Callable[[], str] = fresh_login_code) -> None:
        self.links: LoginLinks | None = None
        """The gate's login codes; None until the app starts (and for good without a gate)."""
        self.org_id = org_id
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.clock = clock
        self._code = code
        self.expires_at_ms = 0
        self.url = ""

    def attach(self, links: LoginLinks) -> str:
        """Start minting with the gate's `links`; writes the first link and returns it."""
        self.links = links
        return self.renew()

    def renew(self) -> str:
        """Mint a fresh code for the node's org and write its link to the file; the link."""
        assert self.links is not None, "renew before attach"
        code = self._code()
        self.expires_at_ms = self.links.mint(self.org_id, code, self.clock())
        self.url = f"{self.base_url}/login?code={code}"
        _write_private(self.path, self.url + "\n")
        log.info("dashboard_login_link_written", extra={"path": str(self.path), "org": self.org_id,
                                                        "expires_at_ms": self.expires_at_ms})
        return self.url

    def renew_if_expired(self) -> bool:
        if self.links is None or self.clock() < self.expires_at_ms:
            return False
        self.renew()
        return True

    def redeem(self, code: str) -> tuple[str, int]:
        """(session token, expires_at_ms) for a valid unused code, or AuthError; the file's link is renewed
        when that code was the one in the file (so the file never holds a spent link)."""
        if self.links is None:
            raise AuthError("unauthenticated", "this node has no dashboard login")
        token, expires_at_ms = self.links.redeem(code, self.clock())
        if self.url.endswith("=" + code):
            self.renew()
        return token, expires_at_ms


LOGIN_DESK_KEY = web.AppKey("ecert_login_desk", LoginDesk)


def setup_login(app: web.Application, org_id: str, base_url: str, data_dir: str | os.PathLike[str], *,
                clock: Callable[[], int] = now_ms, renew_loop: bool = True) -> LoginDesk:
    """Mount `GET /login` and `POST /logout`; when the app starts, write the first link (if the app has the
    node's identity gate) and renew it while the app runs."""
    desk = LoginDesk(org_id, base_url, Path(data_dir) / LOGIN_FILE, clock=clock)
    app[LOGIN_DESK_KEY] = desk
    app.router.add_get("/login", _login)
    app.router.add_post("/logout", _logout)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        gate = app.get(AUTH_GATE_KEY)
        task = None
        if gate is None:
            log.info("dashboard_login_disabled", extra={"detail": "no identity gate on this app"})
        else:
            desk.attach(gate.logins)
            if renew_loop:
                task = asyncio.create_task(_renew_loop(desk), name="dashboard-login-renew")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(lifecycle)
    return desk


async def _renew_loop(desk: LoginDesk) -> None:
    while True:
        await asyncio.sleep(renew_check_interval_s)
        try:
            desk.renew_if_expired()
        except Exception:  # a full disk must not take the node down: the old link simply stops working
            log.exception("dashboard_login_link_renew_failed")


async def _login(request: web.Request) -> web.StreamResponse:
    desk = request.app[LOGIN_DESK_KEY]
    code = request.query.get("code", "")
    try:
        token, expires_at_ms = desk.redeem(code)
    except AuthError as exc:
        return web.Response(status=401, text=_REFUSED_PAGE.format(reason=html.escape(exc.message)),
                            content_type="text/html", headers={"Cache-Control": "no-store"})
    # A plain 303 response (not raised): the node's error middleware must not see it as an error.
    resp = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
    set_session_cookie(resp, request.app[AUTH_GATE_KEY].node_id, token, max(1000, expires_at_ms - desk.clock()))
    log.info("dashboard_login", extra={"org": desk.org_id})
    return resp


async def _logout(request: web.Request) -> web.StreamResponse:
    resp = web.Response(status=204, headers={"Cache-Control": "no-store"})
    gate = request.app.get(AUTH_GATE_KEY)
    if gate is not None:
        clear_session_cookie(resp, gate.node_id)
    return resp


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only, replacing it atomically (never a half-written link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, LOGIN_FILE_MODE)
    try:
        os.write(fd, text.encode())
        os.fchmod(fd, LOGIN_FILE_MODE)  # whatever the umask
    finally:
        os.close(fd)
    os.replace(tmp, path)


_REFUSED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecert-chain: login refused</title></head>
<body style="font: 14px system-ui, sans-serif; margin: 40px">
<h1>Login link refused</h1>
<p>{reason}.</p>
<p>A login link works once and for ten minutes. The node writes a fresh one to
<code>dashboard-login.url</code> in its data directory (<code>./scripts/run</code> prints it).</p>
<p><a href="/">Open the dashboard without logging in</a> (public data only).</p>
</body></html>
"""
