"""Meta-Learning Atlas toolkit, imported as ``mlatlas`` from ``tools/mlatlas/``.

``catalog/`` reads and checks the YAML catalog; ``outputs/`` makes everything generated from it (README tables,
site pages, JSON, BibTeX, JSON Schema); ``contrib/`` holds what contributors run (drafting from arXiv, link checks);
``commands/`` wires them into the ``mlatlas`` command (``cli.py``). ``records.py`` is the reproductions' result
records; ``paths.py``, ``files.py`` and ``netio.py`` are small shared helpers.
"""

__version__ = "0.1.0"
