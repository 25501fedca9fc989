"""mkdocs hooks of the atlas site: the logic lives in ``mlatlas.outputs.site.hooks`` (tools/mlatlas/outputs/site/hooks.py)."""

from mlatlas.outputs.site.hooks import on_config, on_files, on_page_content, on_page_context, on_serve  # noqa: F401
