"""``create_app(config)``: the Flask A/B router.

The factory opens the registry, loads the models into a :class:`~router.model_pool.ModelPool`
(polling for alias changes), opens the request log and registers the views of
:mod:`router.views`. The views are thin: they parse the body and call :mod:`router.plan`, which
picks the variant (:mod:`router.split`), checks the features (:mod:`router.validation`), scores
with :mod:`serving.scoring` (the same path as batch inference) and writes each event to the
request log before anything is answered. With ``storage.root_uri`` set, a
:class:`~router.log_shipper.LogShipper` ships the closed segments to the shared root.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from config import PipelineConfig, load_config
from lake.open import open_registry, open_shared_root
from lake.paths import data_paths
from lake.report_files import ReportFiles
from router import metrics
from router.event_log import EventLog
from router.log_shipper import LogShipper
from router.model_pool import ModelPool, PoolState
from router.views import RouterContext, bp

log = logging.getLogger(__name__)


def create_app(cfg: PipelineConfig | None = None, data_root: str | None = None, *, poll: bool = True,
               freeze_heap: bool = False) -> Flask:
    """The router bound to one configuration and data root (the lake, the registry, the event log).

    ``poll=False`` loads the models once and never reloads them unless asked (tests, benchmarks).
    ``freeze_heap=True`` moves the interpreter's objects out of the garbage collector's scans after
    each model load (:func:`router.model_pool.freeze_heap`): a decision for the whole process,
    which the gunicorn entry point (``router.wsgi``) makes and an application embedding the
    router leaves to its owner."""
    cfg = cfg or load_config()
    metrics.initialise()
    paths = data_paths(data_root).ensure()
    registry = open_registry(cfg, paths)
    pool = ModelPool(registry, cfg.router.default_split_b, actor=f"router:{os.getpid()}", freeze_heap=freeze_heap)
    pool.on_swap = _record_swap
    try:
        pool.reload()
    except Exception as exc:  # start anyway: /health?ready=1 says why, the poller retries
        pool.last_error = f"loading the models at start failed ({type(exc).__name__}); retrying (details in the " \
                          "router's log)"
        log.exception("could not load the models at start")
    if poll:
        pool.start_polling(cfg.router.reload_poll_seconds)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.router.max_body_bytes
    app.json.sort_keys = False
    feedback_token = os.environ.get(cfg.router.feedback_token_env) or None
    if feedback_token is None:
        log.warning("feedback is open to any caller: set %s to require a bearer token on /feedback",
                    cfg.router.feedback_token_env)
    shared = open_shared_root(cfg, paths)
    shipper = None if shared is None else LogShipper(paths.events, shared, cfg.router.event_log.ship_every_seconds)
    if shipper is not None and poll:
        shipper.start()
    reports_token = os.environ.get(cfg.router.reports_token_env) or None
    if reports_token is None:
        log.warning("the reports under /reports are open to any caller: set %s to require a password",
                    cfg.router.reports_token_env)
    app.extensions["lakehouse"] = RouterContext(cfg, paths, pool, EventLog(paths.events, cfg.router.event_log),
                                                os.environ.get(cfg.router.admin_token_env) or None,
                                                feedback_token, shipper, ReportFiles(paths.reports, shared),
                                                reports_token)
    app.register_blueprint(bp)
    return app


def _record_swap(state: PoolState) -> None:
    metrics.SWAPS.inc()
    for alias, version in state.aliases.items():
        metrics.SERVED_VERSION.labels(alias).set(version)
