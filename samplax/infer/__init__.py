"""Drivers: fit(), chunked runs with checkpoints, diagnostics and reports."""
