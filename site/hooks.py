"""mkdocs hooks of the atlas site: the logic lives in ``mlatlas.site.hooks`` (tools/site/hooks.py)."""

from mlatlas.site.hooks import on_config, on_files, on_page_content, on_page_context, on_serve  # noqa: F401
