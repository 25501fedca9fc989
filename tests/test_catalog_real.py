"""The real catalog validates and README.md / the JSON Schema are up to date with it."""

from __future__ import annotations

from conftest import PROJECT_ROOT
from mlatlas.outputs.jsonschema_export import schema_is_stale
from mlatlas.catalog.loader import load_catalog
from mlatlas.outputs.readme import check_readme


def test_real_catalog_validates():
    catalog, problems = load_catalog(PROJECT_ROOT)
    errors = [str(p) for p in problems if p.severity == "error"]
    assert catalog is not None and errors == [], "\n".join(errors)
    assert len(catalog.papers) >= 1


def test_readme_and_schema_are_up_to_date():
    catalog, _ = load_catalog(PROJECT_ROOT)
    assert check_readme(catalog) == [], "README.md is stale: run `mlatlas render` and commit it"
    assert not schema_is_stale(PROJECT_ROOT), "catalog/schema/paper.schema.json is stale: run `mlatlas render`"


def test_every_paper_file_starts_with_the_schema_comment():
    for path in sorted((PROJECT_ROOT / "catalog" / "papers").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schema/paper.schema.json", path.name
