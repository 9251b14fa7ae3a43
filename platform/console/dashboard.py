"""The admin index's dashboard (UNFOLD["DASHBOARD_CALLBACK"])."""

from __future__ import annotations


def dashboard_callback(request, context: dict) -> dict:
    """Adds the dashboard's figures to the admin index's context."""
    return context
