"""Test helpers around the real router process: a free loopback port and a config copy."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from router.server import RouterProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_with_router(config_path: Path, **router: object) -> Path:
    """A copy of ``config_path`` in the same folder (its relative sources still resolve) with
    ``router:`` settings overridden."""
    data = yaml.safe_load(config_path.read_text())
    data["router"] = {**data.get("router", {}), **router}
    out = config_path.with_name(f"router-{router.get('port', 'x')}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@dataclass
class RouterServer(RouterProcess):
    """The router process with an admin token set (tests exercise the admin routes)."""

    token: str | None = "test-token"
