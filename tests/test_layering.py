"""The layers of docs/architecture.md, enforced: who may import whom, and where Dagster may load.

Layers from the ground up: config -> lake -> features / serving / stream -> assets and router
side by side -> sensors -> definitions / cli (run.py) -> bench. A module imports only from its
own layer or below; the router and everything it stands on never load Dagster.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lake.paths import PROJECT_ROOT

# devservers: the real servers tests and benchmarks start (imports nothing of the project); only
# bench and tests may import it (rule_devservers_only_for_benchmarks)
LAYERS = {"config": 0, "devservers": 0, "lake": 1, "features": 2, "serving": 2, "stream": 2, "zoo": 2,
          "assets": 3, "router": 3, "exporter": 3, "sensors": 4, "definitions": 5, "cli": 5, "run": 5, "bench": 6}
INTERNAL = set(LAYERS) | {"tests"}
DAGSTER_FREE = {"config", "lake", "features", "serving", "stream", "zoo", "router", "exporter"}
# in assets/, Dagster only in each domain's assets.py and in the shared Dagster helpers beside them
ASSETS_DAGSTER_MODULES = {"assets.resources", "assets.partitions", "assets.metadata", "assets.jobs",
                          "assets.run_health"}
# in router/, Flask only in the app factory, the views and the WSGI entry: the scoring plan, the
# model pool, the log writer are plain code the benchmarks (and a second front end) call directly
ROUTER_FLASK_MODULES = {"router.app", "router.views", "router.wsgi"}
WEB_FRAMEWORKS = {"flask", "werkzeug"}


@dataclass(frozen=True)
class Import:
    module: str   # the importing module, dotted
    target: str   # the imported module, dotted (``from a.b import c`` -> ``a.b``)
    line: int


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project outside tests/."""
    out = {}
    for path in sorted(PROJECT_ROOT.rglob("*.py")):
        rel = path.relative_to(PROJECT_ROOT)
        if rel.parts[0] in (".venv", "data", "tests") or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def imports_of(module: str, path: Path) -> list[Import]:
    """Absolute imports of a module, nested ones (inside functions) included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(Import(module, node.module, node.lineno))
    return found


def top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def rule_no_import_from_above(imp: Import) -> str | None:
    mine, theirs = LAYERS.get(top(imp.module)), LAYERS.get(top(imp.target))
    if mine is None or theirs is None or theirs <= mine:
        return None
    return f"layer {top(imp.module)} ({mine}) imports {top(imp.target)} ({theirs}), a layer above it"


def rule_assets_and_router_side_by_side(imp: Import) -> str | None:
    pair = {top(imp.module), top(imp.target)}
    return "assets/ and router/ must not import each other" if pair == {"assets", "router"} else None


def rule_dagster_free(imp: Import) -> str | None:
    if top(imp.target) != "dagster" and not top(imp.target).startswith("dagster_"):
        return None
    if top(imp.module) in DAGSTER_FREE:
        return f"{top(imp.module)}/ must not import Dagster (the router's layers stay free of it)"
    if top(imp.module) == "assets" and imp.module not in ASSETS_DAGSTER_MODULES \
            and not imp.module.endswith(".assets"):
        return "in assets/, only a domain's assets.py and the shared Dagster helpers import Dagster"
    return None


def rule_flask_only_in_the_views(imp: Import) -> str | None:
    if top(imp.target) not in WEB_FRAMEWORKS:
        return None
    if top(imp.module) in DAGSTER_FREE - {"router"} or (top(imp.module) == "router"
                                                        and imp.module not in ROUTER_FLASK_MODULES):
        return "Flask only in router/app.py, router/views.py and router/wsgi.py"
    return None


def rule_tests_stay_in_tests(imp: Import) -> str | None:
    return "only tests/ may import tests" if top(imp.target) == "tests" else None


def rule_devservers_only_for_benchmarks(imp: Import) -> str | None:
    """The product never starts its own test servers: only bench/ (and tests/) use devservers/."""
    if top(imp.target) == "devservers" and top(imp.module) not in ("bench", "devservers"):
        return "only bench/ and tests/ may import devservers"
    return None


RULES = [rule_no_import_from_above, rule_assets_and_router_side_by_side, rule_dagster_free,
         rule_flask_only_in_the_views, rule_tests_stay_in_tests, rule_devservers_only_for_benchmarks]


def violations(modules: dict[str, Path]) -> list[str]:
    out = []
    for module, path in modules.items():
        for imp in imports_of(module, path):
            for rule in RULES:
                problem = rule(imp)
                if problem:
                    where = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
                    out.append(f"{where}:{imp.line} imports {imp.target}: "
                               f"{rule.__name__}: {problem}")
    return out


def test_no_module_crosses_a_forbidden_boundary() -> None:
    modules = project_modules()
    assert {"router.app", "serving.scoring", "assets.jobs", "lake.request_log", "run"} <= set(modules)
    assert violations(modules) == []


@pytest.mark.parametrize(("module", "source", "rule"), [
    ("router.app", "from assets.resources import LakehouseResource", "rule_assets_and_router_side_by_side"),
    ("router.app", "from sensors.ab import plan_ab_requests", "rule_no_import_from_above"),
    ("serving.scoring", "from assets.ingest.contract import load_contract", "rule_no_import_from_above"),
    ("assets.ab.events", "from router.event_log import EventLog", "rule_assets_and_router_side_by_side"),
    ("router.model_pool", "import dagster as dg", "rule_dagster_free"),
    ("assets.training.search", "import dagster", "rule_dagster_free"),
    ("bench.router", "from tests.support.router_server import free_port", "rule_tests_stay_in_tests"),
    ("router.plan", "from flask import request", "rule_flask_only_in_the_views"),
    ("lake.open", "from devservers.object_store import throwaway_object_store", "rule_devservers_only_for_benchmarks"),
    ("serving.scoring", "from werkzeug.exceptions import BadRequest", "rule_flask_only_in_the_views"),
    ("lake.delta", "def f():\n    from features import build_features", "rule_no_import_from_above"),
])
def test_each_rule_catches_its_crossing(tmp_path: Path, module: str, source: str, rule: str) -> None:
    """The check can fail: each named rule flags the kind of import main had before the layering."""
    path = tmp_path / "module.py"
    path.write_text(source + "\n")
    found = [r.__name__ for imp in imports_of(module, path) for r in RULES if r(imp)]
    assert found == [rule]
    assert len(violations({module: path})) == 1


def test_allowed_imports_pass() -> None:
    for module, target in [("assets.ingest.assets", "dagster"), ("assets.jobs", "dagster"),
                           ("sensors.ab", "assets.jobs"), ("router.app", "serving.scoring"),
                           ("assets.ab.events", "lake.request_log"), ("cli.runner", "definitions"),
                           ("router.views", "flask"), ("router.views", "router.plan"),
                           ("definitions", "sensors.ab")]:
        assert [r.__name__ for r in RULES if r(Import(module, target, 1))] == []


def test_router_wsgi_loads_no_dagster(tmp_path: Path) -> None:
    """What a gunicorn worker imports: the WSGI app, on an empty data root, in a fresh interpreter."""
    probe = ("import json, sys\nimport router.wsgi\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             f"{sorted(INTERNAL | {'dagster'})!r} or m.startswith('dagster'))))")
    env = {"LAKEHOUSE_DATA": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "router.app" in loaded and "serving.scoring" in loaded  # the probe saw the router load
    assert [m for m in loaded if m.startswith("dagster")] == []
    assert [m for m in loaded if top(m) in ("assets", "sensors", "definitions", "cli", "tests")] == []
