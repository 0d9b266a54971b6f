"""gunicorn settings of the router, from the `router:` section of the configuration.

Binds to ``router.host:router.port`` (127.0.0.1:8000 by default), ``router.workers`` processes
with ``router.threads`` threads each. Prometheus' multiprocess mode needs a folder shared by the
workers, emptied at start and told when a worker dies.
"""

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import load_config
from lake.paths import data_paths

# One thread per native math library call in the workers (read when a worker first imports
# numpy / scikit-learn / LightGBM, after the fork): the workers already own the cores, and an
# OpenMP team per call (scikit-learn's histogram boosting predicts with one) stalled gevent
# workers for seconds on 2 busy cores (p99 2.3 s against 0.1 s single-threaded,
# bench/serving_peers.py). An operator's own setting wins.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

_cfg = load_config()
_paths = data_paths().ensure()
_metrics_dir = _paths.root / "prometheus"
shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(parents=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"{_cfg.router.host}:{_cfg.router.port}"
workers = _cfg.router.workers
# gevent: a connection waits on the worker's event loop until its request is complete, so slow
# clients (one header line a second) cost a greenlet each instead of one of a few threads; the
# model work itself is CPU-bound either way, one request at a time per core (docs/router.md)
worker_class = _cfg.router.worker_class
threads = _cfg.router.threads
worker_connections = _cfg.router.worker_connections
# each worker listens on its own SO_REUSEPORT socket and the kernel hashes new connections over
# them: with one shared socket the worker first to wake took every keep-alive client
reuse_port = _cfg.router.reuse_port
# gunicornc's control socket in this replica's data root: the default ($HOME/.gunicorn/gunicorn.ctl)
# is one path per user, so a second replica on the host took the first one's socket over
control_socket = str(_paths.root / "gunicorn.ctl")
timeout = 120          # loading a large model at start can take a while
graceful_timeout = 20  # in-flight requests finish on SIGTERM
accesslog = "-"
errorlog = "-"
loglevel = "info"
proc_name = "lakehouse-router"


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    """Seal this worker's event-log segment (and, with a shared storage root, ship it) and stop its
    poller before the process ends, so its last events are ingested without waiting for the orphan
    sweep."""
    import router.wsgi

    ctx = router.wsgi.app.extensions["lakehouse"]
    ctx.pool.stop()
    ctx.events.close()
    if ctx.shipper is not None:  # storage.root_uri: the segment just sealed ships now, not at the next start
        ctx.shipper.stop()
        ctx.shipper.sweep()
