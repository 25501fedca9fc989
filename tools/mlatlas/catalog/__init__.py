"""The catalog as data: Pydantic models of every file (``models``), safe YAML reading that remembers lines
(``yamlio``, ``readers``), loading the whole tree (``loader``, into ``entries.Catalog``) and the checks that need all
of it (``checks``). Every failure is a ``problems.Problem`` naming ``path:line: field``."""
