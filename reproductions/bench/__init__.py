"""Benchmarks of the reproduction core against peer libraries (``mlatlas bench``)."""
