"""Meta-Learning Atlas catalog toolkit (imported as ``mlatlas``; lives in ``tools/``)."""

__version__ = "0.1.0"
