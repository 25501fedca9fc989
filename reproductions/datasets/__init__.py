"""Data sets used by the reproductions: download, verification, caching and loading.

Nothing here is fetched at import time; every loader takes a data directory (see
:func:`reproductions.datasets.omniglot.resolve_data_dir`).
"""
