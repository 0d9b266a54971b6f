"""WSGI entry point for gunicorn: ``gunicorn -c router/gunicorn_conf.py router.wsgi:app``.

The configuration and data root come from LAKEHOUSE_CONFIG / LAKEHOUSE_DATA, as everywhere.
Each worker builds its own app after the fork (no preload), so every worker has its own model
pool, poller thread and event-log writer.
"""

import faulthandler
import logging
import signal

from router.app import create_app

faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <worker pid>`: every thread's stack

# gunicorn configures only its own loggers; the router's (model swaps, log failures) go to stderr too
logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
# a server process of its own: loaded models are frozen out of the collector (docs/router.md)
app = create_app(freeze_heap=True)
