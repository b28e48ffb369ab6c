"""The health page: checkpoints, instances and recent alerts as server-rendered HTML (docs/control-plane.md).

Routes (all under ``/ui`` except the redirect from ``/``):

- ``GET /ui`` — the page; without a valid session a 303 to the login form;
- ``GET /ui/login``, ``POST /ui/login`` — the form takes an API token (any token that grants the
  ``read`` permission) in the request *body*, checks it with the API's own token store and sets a
  session cookie (``HttpOnly; Secure; SameSite=Strict; Path=/ui``). The cookie holds a random
  session id, never the token; the server keeps the token's id and hash, so revoking the token
  (or replacing the bootstrap token) ends the session at the next request;
- ``POST /ui/logout`` — ends the session (needs the session's form token);
- ``GET /ui/style.css`` — the only stylesheet (CSP ``style-src 'self'``; no script at all).

The data is what ``GET /api/v1/checkpoints/{cp}/health`` answers (the same functions build it)
and the alerts of ``GET /api/v1/alerts``. Everything that comes from agents or from API callers
is HTML-escaped; host facts are attacker-influenced strings.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import html
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from vantage import __version__
from vantage.control_plane.alerts import list_alerts
from vantage.control_plane.api_checkpoints import load_checkpoint
from vantage.control_plane.auth import allows, hash_token, token_row
from vantage.control_plane.core import ControlPlane
from vantage.control_plane.db import Alert, Checkpoint, Monitor, now
from vantage.control_plane.health import ACTIVE, DISABLED, MAINTENANCE, UNAVAILABLE, checkpoint_health
from vantage.control_plane.ui_monitors import (
    CHART_HOURS,
    LastResult,
    MonitorView,
    chart_svg,
    fmt_ms,
    monitor_views,
)
from vantage.control_plane.web_common import core_of

log = logging.getLogger("vantage.control_plane.ui")

UI_PATH = "/ui"
LOGIN_PATH = "/ui/login"
LOGOUT_PATH = "/ui/logout"
STYLE_PATH = "/ui/style.css"
ICON_PATH = "/ui/favicon.svg"
COOKIE_NAME = "vantage_ui_session"
#: a session lasts this long at most, whatever happens (seconds)
SESSION_LIFETIME = 8 * 3600.0
#: sessions kept at most (oldest dropped first): bounds memory whatever the login rate
MAX_SESSIONS = 1000
#: failed logins allowed per client address within LOGIN_WINDOW seconds; then 429
MAX_LOGIN_FAILURES = 10
LOGIN_WINDOW = 300.0
#: the token field is refused beyond this length (tokens are ~46 characters)
MAX_TOKEN_LENGTH = 512
OPEN_ALERTS_SHOWN = 100
CLOSED_ALERTS_SHOWN = 20

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
STATE_TEXT = {
    ACTIVE: "active",
    MAINTENANCE: "maintenance",
    UNAVAILABLE: "unavailable",
    DISABLED: "disabled",
}
HOST_LABELS = (
    ("hostname", "host"),
    ("os", "OS"),
    ("cpu_count", "CPUs"),
    ("memory_total_bytes", "memory"),
    ("timezone", "time zone"),
    ("dns_servers", "DNS"),
)
#: a small icon, so that browsers do not ask for /favicon.ico (a 404 outside the page's path)
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="7" fill="#1a7f37"/><path d="M4 8l3 3 5-6" stroke="#fff" stroke-width="2" '
    'fill="none"/></svg>'
)
DATA_PROTECTION_LABELS = (("strip_content", "content"), ("strip_headers", "headers"), ("strip_ips", "IPs"))
#: a monitor state's badge colour
STATE_BADGE = {"up": "ok", "down": "bad", "failing": "warn", "pending": "off", "paused": "off"}
#: a longer error is cut on the page (in full on hover)
MAX_ERROR_CHARS = 300


# --- sessions ------------------------------------------------------------------------------------


@dataclass
class UiSession:
    """A logged-in browser: the token it logged in with (id and hash, never the token)."""

    token_id: int
    token_hash: str
    name: str
    csrf: str
    expires_at: float


@dataclass
class UiSessions:
    """In-memory browser sessions and failed-login counts (a restart logs everyone out)."""

    sessions: dict[str, UiSession] = field(default_factory=dict)
    failures: dict[str, list[float]] = field(default_factory=dict)

    @staticmethod
    def _key(session_id: str) -> str:
        # the table holds hashes of the session ids: a memory dump does not yield usable cookies
        return hashlib.sha256(session_id.encode("utf-8")).hexdigest()

    def create(self, token_id: int, token_hash: str, name: str) -> str:
        """A new session; returns its id (the cookie value)."""
        t = time.monotonic()
        self._expire(t)
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        session_id = secrets.token_urlsafe(32)
        self.sessions[self._key(session_id)] = UiSession(
            token_id, token_hash, name, secrets.token_urlsafe(24), t + SESSION_LIFETIME
        )
        return session_id

    def get(self, session_id: str | None) -> UiSession | None:
        if not session_id or len(session_id) > 128:
            return None
        key = self._key(session_id)
        session = self.sessions.get(key)
        if session is not None and session.expires_at <= time.monotonic():
            del self.sessions[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self.sessions.pop(self._key(session_id), None)

    def _expire(self, t: float) -> None:
        for key in [k for k, s in self.sessions.items() if s.expires_at <= t]:
            del self.sessions[key]

    def login_allowed(self, client: str) -> bool:
        t = time.monotonic()
        recent = [f for f in self.failures.get(client, []) if f > t - LOGIN_WINDOW]
        if recent:
            self.failures[client] = recent
        else:
            self.failures.pop(client, None)
        return len(recent) < MAX_LOGIN_FAILURES

    def login_failed(self, client: str) -> None:
        if len(self.failures) > 10_000:  # bound the table; a flood of addresses forgets the oldest
            self.failures.pop(next(iter(self.failures)))
        self.failures.setdefault(client, []).append(time.monotonic())


UI_SESSIONS_KEY = web.AppKey("vantage_ui_sessions", UiSessions)


def _sessions(request: web.Request) -> UiSessions:
    return request.app[UI_SESSIONS_KEY]


async def _current(request: web.Request) -> tuple[str, UiSession] | None:
    """The request's session, if its cookie is valid and its token still exists with ``read``."""
    session_id = request.cookies.get(COOKIE_NAME)
    session = _sessions(request).get(session_id)
    if session is None or session_id is None:
        return None
    row = await core_of(request).store.run(token_row, session.token_id)
    valid = (
        row is not None
        and hmac.compare_digest(row.token_hash, session.token_hash)
        and allows(row.scope_set, "read")
    )
    if not valid:  # revoked, replaced bootstrap token, or scopes changed
        _sessions(request).drop(session_id)
        return None
    return session_id, session


# --- responses -----------------------------------------------------------------------------------


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**SECURITY_HEADERS, **(extra or {})}


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=_headers())


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers=_headers({"Location": location}))


def _forbidden(message: str) -> web.Response:
    return _html(_login_html(message), 403)


def _same_origin(request: web.Request) -> bool:
    """False for a form post that a browser marks as coming from another site.

    ``SameSite=Strict`` keeps the session cookie off cross-site requests already; this also
    stops another site from logging a browser in with the attacker's token (login CSRF).
    ``Sec-Fetch-Site`` decides where browsers send it. ``Origin`` is checked when it names an
    origin; it is ``null`` on our own pages, whose ``Referrer-Policy: no-referrer`` makes
    browsers hide it.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":  # no-referrer pages, non-browsers, old browsers
        return True
    allowed = {request.host.lower()}
    public_url = core_of(request).settings.public_url
    if public_url:
        allowed.add(urlsplit(public_url).netloc.lower())
    return urlsplit(origin).netloc.lower() in allowed


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


# --- handlers ------------------------------------------------------------------------------------


async def root(_request: web.Request) -> web.Response:
    return _redirect(UI_PATH)


@functools.cache
def _css() -> str:
    return resources.files("vantage.control_plane").joinpath("templates/ui.css").read_text(encoding="utf-8")


async def stylesheet(_request: web.Request) -> web.Response:
    return web.Response(text=_css(), content_type="text/css", charset="utf-8", headers=_headers())


async def icon(_request: web.Request) -> web.Response:
    return web.Response(text=FAVICON, content_type="image/svg+xml", headers=_headers())


async def login_form(request: web.Request) -> web.Response:
    # a token in the query string is ignored on purpose: URLs end up in logs and histories
    if await _current(request) is not None:
        return _redirect(UI_PATH)
    return _html(_login_html(None))


async def login(request: web.Request) -> web.Response:
    if not _same_origin(request):
        return _forbidden("This form must be sent from the control plane's own page.")
    sessions = _sessions(request)
    client = _client(request)
    if not sessions.login_allowed(client):
        return _html(_login_html("Too many failed logins; wait a few minutes."), 429)
    token = ""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("token")
        token = value.strip() if isinstance(value, str) else ""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        principal = None
    else:
        principal = await core_of(request).tokens.authenticate(token)
    if principal is None or not allows(principal.scopes, "read"):
        sessions.login_failed(client)
        log.warning("ui login refused from %s", client)  # the token itself is never logged
        return _html(_login_html("Invalid token."), 401)
    session_id = sessions.create(principal.token_id, hash_token(token), principal.name)
    log.info("ui login by token %d (%s) from %s", principal.token_id, principal.name, client)
    response = _redirect(UI_PATH)
    response.set_cookie(
        COOKIE_NAME, session_id, path=UI_PATH, secure=True, httponly=True, samesite="Strict",
        max_age=int(SESSION_LIFETIME),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    if not _same_origin(request):
        return _forbidden("This form must be sent from the control plane's own page.")
    current = await _current(request)
    if current is not None:
        session_id, session = current
        form = await request.post()
        csrf = form.get("csrf")
        if not isinstance(csrf, str) or not hmac.compare_digest(csrf, session.csrf):
            return _forbidden("The logout form has expired; reload the page and try again.")
        _sessions(request).drop(session_id)
        log.info("ui logout of token %d (%s)", session.token_id, session.name)
    response = _redirect(LOGIN_PATH)
    response.del_cookie(COOKIE_NAME, path=UI_PATH, secure=True, httponly=True, samesite="Strict")
    return response


async def page(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is None:
        return _redirect(LOGIN_PATH)
    _session_id, session = current
    core = core_of(request)
    return _html(render_page(await collect(core), session.name, session.csrf, refresh_seconds(core)))


def add_ui_routes(app: web.Application) -> None:
    """Register the health page's routes and its session table."""
    app[UI_SESSIONS_KEY] = UiSessions()
    r = app.router
    r.add_get("/", root)
    r.add_get(UI_PATH, page)
    r.add_get(UI_PATH + "/", root)
    r.add_get(LOGIN_PATH, login_form)
    r.add_post(LOGIN_PATH, login)
    r.add_post(LOGOUT_PATH, logout)
    r.add_get(STYLE_PATH, stylesheet)
    r.add_get(ICON_PATH, icon)


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointView:
    """One checkpoint: its description and labels, the REST health answer for it, its monitors."""

    description: str
    labels: dict[str, str]
    health: dict[str, Any]
    monitors: list[MonitorView] = field(default_factory=list)


@dataclass(frozen=True)
class PageData:
    version: str
    signing_keyid: str
    generated_at: float
    checkpoints: list[CheckpointView]
    alerts: list[dict[str, Any]]


async def collect(core: ControlPlane) -> PageData:
    """Everything the page shows, computed by the same functions as the REST health view."""
    return await core.store.run(_collect, core.alive, core.keys.keyid)


def _collect(db: Session, alive: frozenset[str], keyid: str) -> PageData:
    t = now()
    views: list[CheckpointView] = []
    names = list(db.scalars(select(Checkpoint.name).order_by(Checkpoint.name)).all())
    admin_states = {row.name: row.admin_state for row in db.execute(select(Checkpoint.name, Checkpoint.admin_state))}
    per_checkpoint = monitor_views(db, admin_states, t)
    for name in names:
        cp, instances = load_checkpoint(db, name)
        health = checkpoint_health(cp, instances, alive, t)
        views.append(CheckpointView(cp.description or "", cp.labels, health, per_checkpoint.get(name, [])))
    open_alerts = list_alerts(db, open_only=True, limit=OPEN_ALERTS_SHOWN)
    closed_alerts = list_alerts(db, open_only=False, limit=CLOSED_ALERTS_SHOWN)
    monitor_ids = {a.subject for a in [*open_alerts, *closed_alerts] if a.kind == "monitor_down"}
    monitors = {
        m.id: (m.name, m.checkpoint)
        for m in db.scalars(select(Monitor).where(Monitor.id.in_(monitor_ids))).all()
    } if monitor_ids else {}
    alerts = [_alert_view(a, monitors) for a in [*open_alerts, *closed_alerts]]
    return PageData(__version__, keyid, t, views, alerts)


def _alert_view(alert: Alert, monitors: dict[str, tuple[str, str]]) -> dict[str, Any]:
    subject = alert.subject
    if alert.kind == "monitor_down" and alert.subject in monitors:
        name, checkpoint = monitors[alert.subject]
        subject = f"monitor {name} ({alert.subject}) on {checkpoint}"
    elif alert.kind == "checkpoint_unavailable":
        subject = f"checkpoint {alert.subject}"
    return {
        "id": alert.id,
        "kind": alert.kind,
        "subject": subject,
        "opened_at": alert.opened_at,
        "closed_at": alert.closed_at,
        "message": alert.message,
    }


def refresh_seconds(core: ControlPlane) -> int:
    """Auto-refresh period: two heartbeat intervals, between 5 s and 60 s."""
    return int(min(60.0, max(5.0, 2 * core.settings.heartbeat_interval)))


# --- rendering -----------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped for element content and quoted attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_time(t: float | None) -> str:
    if t is None:
        return "never"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(t: float | None, reference: float) -> str:
    if t is None:
        return "never"
    seconds = max(0, round(reference - t))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def fmt_bytes(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)  # pragma: no cover - the loop always returns


def short_digest(digest: Any) -> str:
    """``sha256:`` and the first 12 hex digits."""
    text = str(digest)
    algo, sep, hexpart = text.partition(":")
    return f"{algo}:{hexpart[:12]}" if sep else text[:19]


def _badge(state: str) -> str:
    return f'<span class="badge state-{esc(state)}">{esc(STATE_TEXT.get(state, state))}</span>'


def _reasons(reasons: Iterable[Any]) -> str:
    items = "".join(f"<li>{esc(r)}</li>" for r in reasons)
    return f'<ul class="reasons">{items}</ul>' if items else ""


def _host(host: dict[str, Any]) -> str:
    rows: list[str] = []
    for key, label in HOST_LABELS:
        if key not in host:
            continue
        value = host[key]
        if key == "memory_total_bytes":
            text = fmt_bytes(value)
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) or "none"
        else:
            text = str(value)
        rows.append(f"<dt>{esc(label)}</dt><dd>{esc(text)}</dd>")
    for key in sorted(set(host) - {k for k, _ in HOST_LABELS}):  # fields added later still show
        rows.append(f"<dt>{esc(key)}</dt><dd>{esc(host[key])}</dd>")
    return f'<dl class="facts">{"".join(rows)}</dl>' if rows else '<span class="muted">not reported</span>'


def _data_protection(switches: dict[str, Any]) -> str:
    if not switches:
        return '<span class="muted">not reported</span>'
    parts = []
    for key, label in DATA_PROTECTION_LABELS:
        on = switches.get(key) is True
        parts.append(f'<span data-switch="{esc(key)}" data-on="{str(on).lower()}">{esc(label)}: '
                     f'{"stripped" if on else "sent"}</span>')
    return f'<div class="switches">{"".join(parts)}</div>'


def _instance_row(inst: dict[str, Any], reference: float) -> str:
    connected = bool(inst.get("connected"))
    healthy = bool(inst.get("healthy"))
    connection = (
        '<span class="badge ok">connected</span>' if connected else '<span class="badge bad">disconnected</span>'
    )
    if healthy:
        health = '<span class="badge ok">healthy</span>'
    elif connected:
        health = '<span class="badge bad">unhealthy</span>'
    else:
        health = '<span class="badge off">unknown</span>'
    stale = "" if connected else '<div class="muted">as last reported</div>'
    digest = inst.get("image_digest")
    image = (
        f'<span class="mono" title="{esc(digest)}">{esc(short_digest(digest))}</span>'
        if digest else '<span class="muted">—</span>'
    )
    version = esc(inst.get("version")) if inst.get("version") else '<span class="muted">—</span>'
    heartbeat = inst.get("last_heartbeat")
    return (
        f'<tr class="instance" data-instance="{esc(inst.get("name"))}" data-connected="{str(connected).lower()}" '
        f'data-healthy="{str(healthy).lower()}">'
        f'<td><strong>{esc(inst.get("name"))}</strong><br>'
        f'<span class="muted mono" title="identity key id">{esc(inst.get("keyid"))}</span></td>'
        f"<td>{connection}</td>"
        f'<td title="{esc(fmt_time(heartbeat))}">{esc(fmt_age(heartbeat, reference))}</td>'
        f"<td>{version}</td>"
        f"<td>{image}</td>"
        f"<td>{health}{_reasons(inst.get('reasons') or [])}</td>"
        f"<td>{_host(inst.get('host') or {})}{stale}</td>"
        f"<td>{_data_protection(inst.get('data_protection') or {})}</td>"
        "</tr>"
    )


def _chart_cell(view: MonitorView) -> str:
    values = [b.avg_ms for b in view.chart if b.avg_ms is not None]
    if not view.chart:
        return f'<span class="muted">no result in the last {CHART_HOURS} h</span>'
    if values:
        caption = f"avg {fmt_ms(sum(values) / len(values))} · peak {fmt_ms(max(values))} · last {CHART_HOURS} h"
    else:
        caption = f"no successful result in the last {CHART_HOURS} h"
    return f'{chart_svg(view.chart)}<div class="chart-caption muted">{esc(caption)}</div>'


def _last_cell(last: LastResult | None, reference: float) -> str:
    if last is None:
        return '<span class="muted">no result yet</span>'
    verdict = '<span class="badge ok">ok</span>' if last.ok else '<span class="badge bad">error</span>'
    duration = f" · {esc(fmt_ms(last.duration_ms))}" if last.duration_ms is not None else ""
    retry = " · attempt 2" if last.attempt >= 2 else ""
    return (f'{verdict}{duration}<div class="muted" title="{esc(fmt_time(last.received_at))}">'
            f"{esc(fmt_age(last.received_at, reference))} on {esc(last.instance)}{retry}</div>")


def _uptime_cell(view: MonitorView) -> str:
    uptime = view.uptime
    if uptime is None:
        return '<span class="muted">no check in 24 h</span>'
    # rounded down: 99.999 % is not shown as 100 %
    figure = "100 %" if uptime == 1 else f"{int(uptime * 10000) / 100:.2f} %"
    return f'<strong>{figure}</strong><div class="muted nowrap">{view.checks_24h} checks, {view.down_24h} down</div>'


def _monitors_table(views: list[MonitorView], reference: float) -> str:
    """The monitors block of one checkpoint's section."""
    if not views:
        return '<h3>Monitors</h3><p class="muted">No monitor runs on this checkpoint.</p>'
    rows = []
    for v in views:
        error = v.last.error if v.last is not None and not v.last.ok and v.last.error else ""
        shown = error if len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS] + "…"
        error_cell = (f'<span class="error-text" title="{esc(error)}">{esc(shown)}</span>' if error
                      else '<span class="muted">—</span>')
        rows.append(
            f'<tr class="monitor" data-monitor="{esc(v.id)}" data-state="{esc(v.state)}" '
            f'data-down="{str(v.down).lower()}">'
            f'<td><strong>{esc(v.name)}</strong><div class="muted"><span class="mono">{esc(v.type)}</span> '
            f'{esc(v.target)}</div><div class="muted">every {esc(f"{v.interval_s:g}")} s</div></td>'
            f'<td><span class="badge {STATE_BADGE.get(v.state, "off")}">{esc(v.state)}</span></td>'
            f"<td>{_last_cell(v.last, reference)}</td>"
            f'<td class="error-cell">{error_cell}</td>'
            f"<td>{_uptime_cell(v)}</td>"
            f'<td class="chart-cell">{_chart_cell(v)}</td></tr>'
        )
    return (
        f'<h3>Monitors <span class="muted">({len(views)})</span></h3>'
        '<table class="monitors"><thead><tr><th>monitor</th><th>state</th><th>last result</th><th>error</th>'
        f"<th>uptime 24 h</th><th>response time, last {CHART_HOURS} h</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _checkpoint_section(view: CheckpointView, reference: float) -> str:
    h = view.health
    name = h["checkpoint"]
    instances = h.get("instances") or []
    connected = sum(1 for i in instances if i.get("connected"))
    if h["state"] != ACTIVE:
        overall = ""
    elif h.get("healthy"):
        overall = '<span class="badge ok">all instances healthy</span>'
    else:
        overall = '<span class="badge warn">degraded</span>'
    labels = ", ".join(f"{k}={v}" for k, v in sorted(view.labels.items()))
    description = f'<div class="muted">{esc(view.description)}</div>' if view.description else ""
    label_line = f'<div class="muted">labels: {esc(labels)}</div>' if labels else ""
    if instances:
        rows = "".join(_instance_row(i, reference) for i in instances)
        table = (
            "<table><thead><tr><th>instance</th><th>connection</th><th>last heartbeat</th><th>version</th>"
            "<th>image</th><th>health</th><th>host facts</th><th>data protection</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        table = '<p class="muted">No instance is enrolled.</p>'
    return (
        f'<section class="card checkpoint" id="cp-{esc(name)}" data-checkpoint="{esc(name)}" '
        f'data-state="{esc(h["state"])}" data-healthy="{str(bool(h.get("healthy"))).lower()}">'
        f'<div class="card-head"><h2>{esc(name)}</h2>{_badge(h["state"])}{overall}'
        f'<span class="muted">{connected} of {len(instances)} instances connected</span></div>'
        f"{description}{label_line}{_reasons(h.get('reasons') or [])}{table}"
        f"{_monitors_table(view.monitors, reference)}</section>"
    )


def _alerts_section(alerts: list[dict[str, Any]], reference: float) -> str:
    if not alerts:
        return '<section class="card" id="alerts"><h2>Recent alerts</h2><p class="muted">No alerts.</p></section>'
    rows = []
    for a in alerts:
        is_open = a["closed_at"] is None
        status = '<span class="badge bad">open</span>' if is_open else '<span class="badge off">closed</span>'
        closed = "" if is_open else f"{esc(fmt_time(a['closed_at']))}"
        rows.append(
            f'<tr class="alert" data-alert="{esc(a["id"])}" data-open="{str(is_open).lower()}">'
            f"<td>{status}</td><td class=\"mono\">{esc(a['kind'])}</td><td>{esc(a['subject'])}</td>"
            f"<td title=\"{esc(fmt_age(a['opened_at'], reference))}\">{esc(fmt_time(a['opened_at']))}</td>"
            f"<td>{closed}</td><td>{esc(a['message'])}</td></tr>"
        )
    open_count = sum(1 for a in alerts if a["closed_at"] is None)
    return (
        f'<section class="card" id="alerts"><div class="card-head"><h2>Recent alerts</h2>'
        f'<span class="muted">{open_count} open</span></div>'
        "<table><thead><tr><th>status</th><th>kind</th><th>subject</th><th>opened</th><th>closed</th>"
        f"<th>message</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _document(title: str, body: str, refresh: int | None = None) -> str:
    meta_refresh = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"{meta_refresh}<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{STYLE_PATH}"><link rel="icon" href="{ICON_PATH}"></head>'
        f"<body>{body}</body></html>\n"
    )


def _login_html(error: str | None) -> str:
    message = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        '<main class="login"><section class="card"><h1>Vantage control plane</h1>'
        "<p>Sign in with an API token that has the <code>read</code> scope "
        "(<code>enroll</code> and <code>admin</code> tokens work too).</p>"
        f'{message}<form method="post" action="{LOGIN_PATH}">'
        '<label for="token">API token</label>'
        '<input type="password" id="token" name="token" autocomplete="off" required autofocus>'
        '<button type="submit">Sign in</button></form></section></main>'
    )
    return _document("Sign in — Vantage", body)


def render_page(data: PageData, user: str, csrf: str, refresh: int | None) -> str:
    """The health page's HTML."""
    counts: dict[str, int] = {}
    for view in data.checkpoints:
        counts[view.health["state"]] = counts.get(view.health["state"], 0) + 1
    summary_counts = ", ".join(f"{counts[s]} {STATE_TEXT[s]}" for s in STATE_TEXT if counts.get(s))
    links = "".join(
        f'<a href="#cp-{esc(v.health["checkpoint"])}">{esc(v.health["checkpoint"])} {_badge(v.health["state"])}</a>'
        for v in data.checkpoints
    )
    sections = "".join(_checkpoint_section(v, data.generated_at) for v in data.checkpoints)
    if not sections:
        sections = '<section class="card"><p class="muted">No checkpoint exists yet.</p></section>'
    header = (
        '<header class="top"><h1>Vantage checkpoints</h1>'
        f'<span class="meta">{len(data.checkpoints)} checkpoint{"" if len(data.checkpoints) == 1 else "s"}'
        f"{': ' + esc(summary_counts) if summary_counts else ''} · generated {esc(fmt_time(data.generated_at))}"
        f"{f' · refreshes every {refresh} s' if refresh else ''}</span>"
        f'<span class="muted">signed in as {esc(user)}</span>'
        f'<form method="post" action="{LOGOUT_PATH}"><input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<button type="submit">Sign out</button></form></header>'
    )
    nav = f'<nav class="summary" aria-label="checkpoints">{links}</nav>' if links else ""
    footer = (
        f'<footer>control plane {esc(data.version)} · signing key <span class="mono">{esc(data.signing_keyid)}'
        "</span> · the same data as <span class=\"mono\">GET /api/v1/checkpoints/{cp}/health</span> and "
        '<span class="mono">GET /api/v1/alerts</span></footer>'
    )
    return _document(
        "Vantage checkpoints",
        f"{header}{nav}<main>{sections}{_alerts_section(data.alerts, data.generated_at)}</main>{footer}",
        refresh,
    )
