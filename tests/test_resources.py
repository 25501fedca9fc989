"""The non-paper resources in catalog/resources/: every file validates, the benchmark data sets the
seeds name are all there with a licence and an https home, and no link is listed twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlatlas.catalog.checks import link_key, normalise_title
from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.catalog.models import RESOURCE_FILES

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "catalog" / "resources"

# The data sets seed 001 lists as the most used ones, as they are named in catalog/resources/datasets.yaml.
REQUIRED_DATASETS = {
    "omniglot": "Omniglot",
    "mini-imagenet": "mini-ImageNet",
    "ilsvrc-imagenet": "ILSVRC",
    "fgvc-aircraft": "FGVC-Aircraft",
    "cub-200-2011": "CUB-200-2011",
}

# The URL-bearing field of each resource kind.
URL_FIELD = {"books": "url", "blogs": "url", "videos": "url", "datasets": "url", "workshops": "url", "researchers": "homepage"}


@pytest.fixture(scope="module")
def catalog():
    return load_valid_catalog(REPO)


@pytest.mark.parametrize("name", sorted(RESOURCE_FILES))
def test_every_resource_file_exists_and_validates(name):
    path = RESOURCES / name
    assert path.is_file(), f"{path} is missing"
    model = RESOURCE_FILES[name]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    parsed = model.model_validate(data)
    kind = name.removesuffix(".yaml")
    items = getattr(parsed, kind)
    assert items, f"{name} lists no {kind}"
    ids = [item.id for item in items]
    assert len(ids) == len(set(ids)), f"{name} repeats an id: {sorted(i for i in ids if ids.count(i) > 1)}"


def test_the_catalog_loads_the_resources(catalog):
    assert set(catalog.resources) == {name.removesuffix(".yaml") for name in RESOURCE_FILES}


def test_required_datasets_have_licence_and_https_home(catalog):
    datasets = {d.id: d for d in catalog.resources["datasets"]}
    missing = sorted(set(REQUIRED_DATASETS) - set(datasets))
    assert not missing, f"datasets.yaml lacks {missing}"
    for dataset_id, short_name in REQUIRED_DATASETS.items():
        dataset = datasets[dataset_id]
        assert normalise_title(short_name) in normalise_title(dataset.name)
        assert dataset.url.startswith("https://")
        assert len(dataset.license) > 3, f"{dataset_id}: licence text is empty"
        assert dataset.paper or dataset.citation, f"{dataset_id}: name the introducing paper or give a citation"


def test_dataset_papers_are_catalog_entries(catalog):
    for dataset in catalog.resources["datasets"]:
        if dataset.paper:
            assert dataset.paper in catalog.papers, f"{dataset.id}: paper {dataset.paper!r} is not a catalog id"


def test_workshops_are_the_three_metalearn_editions(catalog):
    venues = {w.id: w.venue for w in catalog.resources["workshops"]}
    assert venues == {"metalearn-2017": "NeurIPS 2017", "metalearn-2018": "NeurIPS 2018", "metalearn-2019": "NeurIPS 2019"}


def test_no_two_resources_share_a_url(catalog):
    owners: dict[str, str] = {}
    shared = []
    for kind, items in catalog.resources.items():
        for item in items:
            key = link_key(getattr(item, URL_FIELD[kind]))
            where = f"{kind}/{item.id}"
            if key in owners:
                shared.append((owners[key], where))
            owners[key] = where
    assert not shared, f"resources that share a URL: {shared}"


def test_url_check_treats_spelling_variants_as_one_link():
    # The duplicate check above relies on link_key folding these variants together.
    assert link_key("https://www.github.com/brendenlake/omniglot/") == link_key("https://github.com/brendenlake/omniglot")
    assert link_key("https://github.com/brendenlake/omniglot") != link_key("https://github.com/brendenlake/omniglot2")
