"""router/server.py: the router process gets its settings under the variables the router reads."""

from pathlib import Path

import yaml

from config.loader import CONFIG_ENV
from lake.paths import DATA_ENV
from router.server import RouterProcess, config_with_router, free_port
from tests.conftest import write_config


def test_admin_token_goes_under_the_configured_variable(tmp_path: Path, monkeypatch) -> None:
    """Renaming ``router.admin_token_env`` must not silently disable the admin routes (the token
    used to be exported as LAKEHOUSE_ADMIN_TOKEN whatever the config said)."""
    monkeypatch.delenv("LAKEHOUSE_ADMIN_TOKEN", raising=False)
    config = config_with_router(write_config(tmp_path / "cfg"), admin_token_env="MY_ROUTER_TOKEN", port=8123)
    assert yaml.safe_load(config.read_text())["router"]["admin_token_env"] == "MY_ROUTER_TOKEN"
    env = RouterProcess(config, tmp_path / "data", 8123, tmp_path / "router.log", token="s3cret").environment()
    assert env["MY_ROUTER_TOKEN"] == "s3cret"
    assert "LAKEHOUSE_ADMIN_TOKEN" not in env
    assert (env[CONFIG_ENV], env[DATA_ENV]) == (str(config), str(tmp_path / "data"))


def test_no_token_exports_none_and_free_port_is_bindable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg")
    env = RouterProcess(config, tmp_path / "data", 1, tmp_path / "router.log").environment()
    assert "LAKEHOUSE_ADMIN_TOKEN" not in env
    assert 1024 <= free_port() <= 65535
