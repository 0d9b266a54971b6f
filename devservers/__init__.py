"""Real servers started on 127.0.0.1 for the tests and the benchmarks (an S3-compatible object
store), stopped by whoever started them; never imported by the product's own layers."""
