"""The website: pages generated from the catalog at ``mkdocs build`` time.

``mlatlas.site.hooks`` holds the mkdocs event handlers (``site/hooks.py`` re-exports them);
``mlatlas.site.pages`` turns a catalog into page sources; ``mlatlas.site.render`` renders the
Jinja2 templates in ``tools/templates/site/``. Nothing generated here is committed.
"""
