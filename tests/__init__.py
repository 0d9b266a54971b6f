"""The test suite. Imported before tests/conftest.py and every test module, so before numpy,
scikit-learn or LightGBM start their thread pools: one OpenMP / BLAS thread per test process.

The toy models are tiny; with a pool per core, HistGradientBoosting's fit and predict spend their
time waking and spinning threads, about 40x slower on a busy two-core machine (the fallback's fit
and latency profile alone took ~15 s of every training run). Subprocesses (dagster-daemon,
gunicorn) inherit the setting; an explicit value in the environment wins.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
