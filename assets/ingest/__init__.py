"""Ingestion: batch files -> raw -> quality -> cleaned -> features, the schema contract, the EDA report."""
