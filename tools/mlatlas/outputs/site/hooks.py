"""mkdocs event handlers that generate the site from the catalog (re-exported by ``site/hooks.py``).

- ``on_config``: load and validate the catalog (a bad catalog fails the build with every problem
  listed) and restrict mkdocs-material tags to the label vocabulary, so an unknown tag fails too.
- ``on_files``: add the generated pages, plots and downloads as virtual files (nothing is written
  to the docs folder, nothing generated is committed).
- ``on_page_content`` / ``on_page_context``: put each generated page's HTML blocks back, the
  unindexed ones only after search has read the page (see ``mlatlas.outputs.site.render``).
- ``on_serve``: watch ``catalog/`` and the reproductions' results so ``mkdocs serve`` rebuilds on edit.

The catalog is read from ``MLATLAS_ROOT`` when set, else from the folder holding ``mkdocs.yml``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.catalog.problems import CatalogError
from mlatlas.outputs.site.pages import SiteContent, allowed_tags

_state: dict = {}


def catalog_root(config) -> Path:
    env = os.environ.get("MLATLAS_ROOT")
    return Path(env).resolve() if env else Path(config.config_file_path).resolve().parent


def load_site(root: Path, use_directory_urls: bool = True) -> SiteContent:
    """The site's content for the checkout at ``root``; a :class:`PluginError` names every problem."""
    try:
        catalog = load_valid_catalog(root)
    except CatalogError as exc:
        raise PluginError(f"the catalog has problems; fix them first:\n{exc}") from None
    return SiteContent(catalog, use_directory_urls=use_directory_urls)


def on_config(config, **kwargs):
    site = load_site(catalog_root(config), config.use_directory_urls)
    _state["site"] = site
    tags = config.plugins.get("material/tags") or config.plugins.get("tags")
    if tags is not None:
        # The plugin validates every page's tags against this set (the same object it holds), and
        # an empty set would allow anything, so it is filled in place before pages are read.
        from material.plugins.tags.structure.tag import Tag

        tags.config.tags_allowed.update(Tag(name) for name in allowed_tags(site.catalog))
    return config


def on_files(files: Files, config, **kwargs) -> Files:
    site = _state["site"]
    _state["rendered"] = {}
    for page in site.pages():
        _state["rendered"][page.src_uri] = page.rendered
        _add(files, File.generated(config, page.src_uri, content=page.rendered.markdown))
    for asset in site.assets + site.downloads():
        if asset.source is not None:
            _add(files, File.generated(config, asset.src_uri, abs_src_path=str(asset.source)))
        else:
            _add(files, File.generated(config, asset.src_uri, content=asset.content))
    return files


def _add(files: Files, file: File) -> None:
    if files.get_file_from_path(file.src_uri) is not None:
        raise PluginError(
            f"{file.src_uri} is generated from the catalog, but another file already has that path "
            "(a hand-written page in site/docs, or two venues whose names give the same page name)"
        )
    files.append(file)


def on_page_content(html: str, page, config, files) -> str:
    """Put the generated pages' searchable HTML blocks back in place of their markers."""
    rendered = _state.get("rendered", {}).get(page.file.src_uri)
    return rendered.fill(html, indexed=True) if rendered else html


@event_priority(-100)  # after the search plugin has indexed the page
def on_page_context(context, page, config, nav):
    """Put back the blocks search should not index (tables of details, BibTeX ...)."""
    rendered = _state.get("rendered", {}).get(page.file.src_uri)
    if rendered:
        page.content = rendered.fill(page.content, indexed=False)
    return context


def on_serve(server, config, builder, **kwargs):
    root = catalog_root(config)
    server.watch(str(root / "catalog"))
    for results in sorted((root / "reproductions").glob("*/results")):
        server.watch(str(results))
    return server
