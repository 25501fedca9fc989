"""The website: pages generated from the catalog at ``mkdocs build`` time.

``mlatlas.outputs.site.hooks`` holds the mkdocs event handlers (``site/hooks.py`` re-exports them);
``mlatlas.outputs.site.pages`` turns a catalog into page sources (``conferences`` adds one page per conference
edition and their index); ``mlatlas.outputs.site.render`` renders the
Jinja2 templates in ``tools/mlatlas/outputs/templates/site/``. Nothing generated here is committed.
"""
