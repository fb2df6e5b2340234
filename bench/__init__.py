"""Benchmarks of sfcleanup's own machinery (not tests): run them with `python -m bench.<name>`."""
