"""Test helper around the real router process: the router with an admin token set."""

from __future__ import annotations

from dataclasses import dataclass

from router.server import RouterProcess, config_with_router, free_port

__all__ = ["RouterServer", "config_with_router", "free_port"]


@dataclass
class RouterServer(RouterProcess):
    """The router process with an admin token set (tests exercise the admin routes)."""

    token: str | None = "test-token"
