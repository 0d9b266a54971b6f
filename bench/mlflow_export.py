"""Save the registry's prod pipeline as an MLflow model (run by bench/serving_peers.py with the
Python of the throwaway environment it makes; MLflow is not in the project's lock).

    <throwaway>/bin/python bench/mlflow_export.py OUT_DIR   (LAKEHOUSE_CONFIG / LAKEHOUSE_DATA set)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import mlflow.sklearn

    from config import load_config
    from lake.open import open_registry
    from lake.paths import data_paths

    out = Path(sys.argv[1])
    registry = open_registry(load_config(), data_paths())
    version = registry.aliases()["prod"]
    # the same fitted PyCaret pipeline the router serves (sha256-checked by the registry)
    mlflow.sklearn.save_model(registry.load(version), str(out), serialization_format="pickle")
    print(f"prod v{version} saved as an MLflow model in {out} (mlflow {mlflow.__version__})")


if __name__ == "__main__":
    main()
