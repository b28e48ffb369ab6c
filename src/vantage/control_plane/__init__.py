"""The reference control plane (``vantage control-plane serve``): REST API, agent sessions,
scheduler and alerts; one process per replica (docs/control-plane.md)."""

from vantage.control_plane.app import create_app
from vantage.control_plane.config import Settings

__all__ = ["Settings", "create_app"]
