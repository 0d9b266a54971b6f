"""Dagster assets (thin wrappers) and the plain data logic they call.

Modules ending in ``_asset``/``definitions`` import Dagster; the others are plain functions on
DataFrames and configuration, importable without Dagster (the router uses some of them).
"""
