"""One dynamic partition per batch file; the inbox sensor adds them."""

import dagster as dg

batches_partitions = dg.DynamicPartitionsDefinition(name="batches")
