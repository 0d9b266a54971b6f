"""Drift: each batch against prod's training data (statistics, verdict, retraining requests)."""
