"""Everything generated from the validated catalog: README tables (``readme``), the website (``site``, with Jinja2
``templates``), ``catalog.json`` (``export_json``), BibTeX (``bibtex``), the entry JSON Schema
(``jsonschema_export``) and the speed-benchmark page (``bench_page``). Data flows one way: catalog in, text out."""
