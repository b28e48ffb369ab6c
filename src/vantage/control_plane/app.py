"""The aiohttp application: REST routes, the agent websocket, start-up and shutdown hooks."""

from __future__ import annotations

from aiohttp import web

from vantage.control_plane.api import add_routes
from vantage.control_plane.config import Settings
from vantage.control_plane.core import CORE_KEY, ControlPlane
from vantage.control_plane.logs import AccessLogger
from vantage.control_plane.sessions import HOST_KEY, agent_connect
from vantage.control_plane.ui import add_ui_routes
from vantage.control_plane.web_common import auth_middleware, error_middleware

#: largest REST request body (monitors with an HTTP body to send are the biggest)
MAX_REQUEST_BYTES = 2 * 1024 * 1024


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application; the control plane starts with the app and stops with it."""
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_REQUEST_BYTES)
    core = ControlPlane(settings)
    app[CORE_KEY] = core
    app[HOST_KEY] = core
    add_routes(app)
    app.router.add_get("/api/v1/agent/connect", agent_connect)
    add_ui_routes(app)

    async def start(_app: web.Application) -> None:
        await core.start()

    async def shutdown(_app: web.Application) -> None:
        await core.shutdown()

    async def cleanup(_app: web.Application) -> None:
        await core.cleanup()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app


def make_runner(app: web.Application, shutdown_timeout: float = 5.0) -> web.AppRunner:
    """The runner for ``app``, with the access log that names routes only (:mod:`.logs`)."""
    return web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout, access_log_class=AccessLogger)
