"""catalog.json, BibTeX and the JSON Schema of the paper model."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import FIXTURE_CATALOG
from mlatlas.outputs.bibtex import base_key, bibtex_keys, catalog_bibtex, paper_bibtex
from mlatlas.cli import main
from mlatlas.outputs.export_json import FORMAT_NAME, catalog_to_json
from mlatlas.outputs.jsonschema_export import paper_json_schema
from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.records import summary, verdict
from mlatlas.catalog.yamlio import read_yaml


@pytest.fixture(scope="module")
def catalog():
    return load_valid_catalog(FIXTURE_CATALOG)


def test_catalog_json_is_versioned_and_complete(catalog):
    data = catalog_to_json(catalog)
    assert data["format"] == FORMAT_NAME and data["version"] == 2
    assert [p["id"] for p in data["papers"]] == ["alpha", "beta"]
    alpha = data["papers"][0]
    assert alpha["date"] == "2017-03-09" and alpha["bibtex_key"] == "lovelace2017alpha"
    assert alpha["file"] == "catalog/papers/alpha.yaml"
    assert [t["id"] for t in data["vocabularies"]["topics"]] == ["survey", "few-shot-learning"]
    assert data["resources"]["datasets"][0]["paper"] == "alpha"
    assert data["records"][0]["paper"] == "beta" and data["records"][0]["file"].endswith("results/omniglot.yaml")
    # each record carries its verdict, each reproduced paper its one-line summary (both from mlatlas.records)
    record = catalog.records[0][1]
    assert data["records"][0]["verdict"]["kind"] == verdict(record).kind
    assert data["papers"][1]["reproduction_summary"] == summary([record]) != ""
    assert "reproduction_summary" not in alpha
    assert json.loads(json.dumps(data)) == data  # plain JSON, nothing lost
    assert catalog_to_json(catalog) == data  # deterministic


def test_bibtex_entries(catalog):
    alpha = paper_bibtex(catalog.papers["alpha"], catalog)
    assert alpha.startswith("@inproceedings{lovelace2017alpha,\n")
    assert "  title = {{Alpha Learning of Few-Shot Tasks}},\n" in alpha
    assert "  author = {Ada Lovelace and Alan Turing},\n" in alpha
    assert "  booktitle = {International Conference on Machine Learning},\n" in alpha
    assert "  eprint = {1703.00001},\n" in alpha and alpha.endswith("}\n")
    # without the catalog: the base key and a guess from the venue
    assert paper_bibtex(catalog.papers["beta"]).startswith("@inproceedings{hopper2019beta,")


def test_bibtex_keys_skip_stop_words_and_fold_accents(catalog):
    paper = catalog.papers["alpha"].model_copy(update={"title": "On the Théorie of X", "authors": ["José Müller"]})
    assert base_key(paper) == "muller2017theorie"


def test_colliding_keys_are_deduplicated_in_catalog_order(catalog):
    papers = dict(catalog.papers)
    twin = catalog.papers["alpha"].model_copy(update={"id": "alpha-twin", "title": "Alpha again"})
    late = catalog.papers["alpha"].model_copy(update={"id": "aardvark", "title": "Alpha thrice"})
    catalog.papers.clear()
    catalog.papers.update({"aardvark": late, "alpha": papers["alpha"], "alpha-twin": twin, "beta": papers["beta"]})
    try:
        keys = bibtex_keys(catalog)
        assert keys == {"aardvark": "lovelace2017alpha", "alpha": "lovelace2017alphab", "alpha-twin": "lovelace2017alphac", "beta": "hopper2019beta"}
        bib = catalog_bibtex(catalog)
        assert bib.count("@inproceedings{lovelace2017alpha") == 3 and "{lovelace2017alphac," in bib
    finally:
        catalog.papers.clear()
        catalog.papers.update(papers)


def test_schema_is_valid_and_accepts_every_real_paper(tmp_path):
    from conftest import PROJECT_ROOT

    schema = paper_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    papers = sorted((PROJECT_ROOT / "catalog" / "papers").glob("*.yaml"))
    assert papers, "the real catalog has papers"
    for path in papers:
        data = json.loads(json.dumps(read_yaml(path).data, default=str))  # dates as the editor sees them: text
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], (path.name, errors)
    assert list(validator.iter_errors({"id": "x"}))  # and it rejects an incomplete entry


def test_export_command_writes_all_files(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--root", str(tree.root), "export", "--out", str(out)]) == 0
    data = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
    assert data["version"] == 2 and len(data["papers"]) == 2
    bib = (out / "catalog.bib").read_text(encoding="utf-8")
    assert bib.count("\n@") + bib.startswith("@") == 2
    assert json.loads((tree.root / "catalog/schema/paper.schema.json").read_text()) == paper_json_schema()


def test_export_to_an_unwritable_place_is_a_clear_error(tree, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--root", str(tree.root), "export", "--out", str(blocker / "out")]) == 1
    assert "error: cannot write the export" in capsys.readouterr().err
