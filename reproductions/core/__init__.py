"""Shared core of the reproductions: task families, functional adaptation, the meta-training loop, seeding and
devices, the registry and the result-record writer. See ``reproductions/README.md``."""
