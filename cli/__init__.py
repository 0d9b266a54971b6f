"""The command line behind ``run.py``: parsing and dispatch (:mod:`cli.main`), the environment Dagster
runs in (:mod:`cli.environment`), one in-process job runner (:mod:`cli.runner`), the modes
(:mod:`cli.modes`), the demo's narrative (:mod:`cli.demo`) and the console tables (:mod:`cli.reports`).

The top layer: it may import anything of the project, nothing of the project imports it. Dagster,
PyCaret and the assets are imported inside the functions that need them, so ``-h``, a bad
configuration or ``-mode summary`` answer without loading them.
"""
