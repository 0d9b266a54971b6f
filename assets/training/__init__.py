"""Training: the data window, AutoML search, evaluation and gate, registration, refresh, fallback, summary report."""
