"""Dagster software-defined assets, one subpackage per domain (ingest, training, drift, ab).

In every domain ``assets.py`` is the only module that imports Dagster (thin wrappers); the other
modules are plain functions over DataFrames, arrays and configuration. Shared Dagster helpers sit
beside the domains: ``resources``, ``partitions``, ``metadata`` and ``jobs`` (every job, named once).
"""
