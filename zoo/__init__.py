"""The dataset zoo: datasets of different shapes, each with the one YAML file that configures the
loop for it, built into a folder on demand (nothing large is committed).

:mod:`zoo.generators` makes synthetic data with realistic structure (trends, seasonality, skewed
categories, missingness, free text); :mod:`zoo.real` prepares real tables that PyPI packages of
the lock ship inside their wheels; :mod:`zoo.catalog` lists them with what each is meant to test.
The test suite runs every one through ``run.py -mode demo``; ``bench/automl_vs_baseline.py``
compares the registered model with tuned baselines on the real ones.
"""
