"""The contributor's tools: draft an entry from arXiv metadata (``arxiv``, ``add_paper``) and check that the
catalog's links still work (``links``)."""
