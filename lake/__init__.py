"""Storage layer: data-root paths, table names and schemas, Delta reads and writes."""
