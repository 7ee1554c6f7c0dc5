"""Benchmarks, run as ``python -m benchmarks.<name>``: tables and JSON, never run as tests."""
