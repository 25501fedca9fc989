"""Cross-file checks: each one with a failing and a passing case, on a copy of the fixture catalog."""

from __future__ import annotations

from mlatlas.catalog.checks import link_key, normalise_title
from mlatlas.catalog.loader import load_catalog

ALPHA = "catalog/papers/alpha.yaml"
BETA = "catalog/papers/beta.yaml"


def problems(tree, severity="error"):
    _, found = load_catalog(tree.root)
    return [str(p) for p in found if p.severity == severity]


def test_passing_catalog_has_no_errors(tree):
    assert problems(tree) == []


def test_file_name_must_equal_id(tree):
    tree.paper("alpha").rename(tree.paper("alfa"))
    assert problems(tree) == [
        "catalog/papers/alfa.yaml:2: id: id 'alpha' must equal the file name; rename the file to alpha.yaml"
    ]


def test_ids_are_unique(tree):
    tree.write("catalog/papers/alpha2.yaml", tree.read(ALPHA))
    found = problems(tree)
    assert "catalog/papers/alpha2.yaml:2: id: id 'alpha' is already used by catalog/papers/alpha.yaml" in found


def test_new_paper_with_own_identifiers_passes(tree):
    tree.copy_paper("alpha", "gamma")
    assert problems(tree) == []


def test_shared_arxiv_id(tree):
    tree.copy_paper("alpha", "gamma")
    tree.edit("catalog/papers/gamma.yaml", 'arxiv: "2001.', 'arxiv: "1703.00001" #')
    assert problems(tree) == [
        "catalog/papers/gamma.yaml:15: ids.arxiv: arXiv id 1703.00001 is also used by 'alpha' "
        "(catalog/papers/alpha.yaml:15); two entries may not share an arXiv id, DOI, title or link"
    ]


def test_shared_doi_case_insensitive(tree):
    tree.edit(ALPHA, "ids:\n", "ids:\n  doi: 10.1000/ABC.1\n")
    tree.copy_paper("alpha", "gamma", ("doi: 10.1000/ABC.1", "doi: 10.1000/abc.1"))
    assert [p.split(": ", 2)[:2] for p in problems(tree)] == [["catalog/papers/gamma.yaml:15", "ids.doi"]]


def test_shared_normalised_title(tree):
    tree.copy_paper("alpha", "gamma", ("title: Gamma and Alpha Learning of Few-Shot Tasks", "title: alpha learning of few shot tasks!"))
    assert problems(tree) == [
        "catalog/papers/gamma.yaml:3: title: title is also used by 'alpha' (catalog/papers/alpha.yaml:3); "
        "two entries may not share an arXiv id, DOI, title or link"
    ]


def test_four_surveys_sharing_one_arxiv_link_are_caught_exactly(tree):
    """The seed list links 2004.05439 from four different surveys; three of them must be reported, each
    naming the first, and nothing else."""
    tree.edit(BETA, 'arxiv: "1905.00002"', 'arxiv: "2004.05439"')
    for name, url in [
        ("gamma", "https://arxiv.org/abs/2004.05439"),
        ("delta", "https://arxiv.org/pdf/2004.05439v2.pdf"),
        ("epsilon", "https://www.arxiv.org/abs/2004.05439/"),
    ]:
        tree.copy_paper("alpha", name, ("ids:\n", f"links:\n  - label: Paper\n    url: {url}\nids:\n"))
    found = problems(tree)
    assert len(found) == 3, found
    assert all(": links.0.url: link https://" in p or ": ids.arxiv: arXiv id 2004.05439" in p for p in found)
    reported = {p.split(":")[0].split("/")[-1].removesuffix(".yaml") for p in found}
    named = {p.split("also used by '")[1].split("'")[0] for p in found}
    assert len(reported) == 3 and len(named) == 1 and reported | named == {"beta", "gamma", "delta", "epsilon"}


def test_shared_repository_link(tree):
    tree.copy_paper("alpha", "gamma", ("https://github.com/example/gamma", "https://GitHub.com/example/alpha/#readme"))
    found = problems(tree)
    assert len(found) == 1 and found[0].startswith("catalog/papers/gamma.yaml:19: code.repositories.0.url: link")


def test_link_key_and_title_normalisation():
    assert link_key("https://arxiv.org/pdf/1703.03400v3.pdf") == link_key("https://arxiv.org/abs/1703.03400") == "arxiv:1703.03400"
    assert link_key("https://doi.org/10.1/X") == "doi:10.1/x"
    assert link_key("https://example.org/a?x=1") != link_key("https://example.org/a?x=2")
    assert normalise_title("Meta-Learning: A Survey") == normalise_title("meta learning a survey") is not None
    assert normalise_title("Meta-Learning: A Survey") != normalise_title("Meta-Learning in Neural Networks: A Survey")


def test_unknown_labels_per_family(tree):
    tree.edit(ALPHA, "type: [optimization-based]", "type: [optimisation-based, image]")
    assert problems(tree) == [
        "catalog/papers/alpha.yaml:11: labels.type.0: unknown type label 'optimisation-based' — did you mean 'optimization-based'?",
        "catalog/papers/alpha.yaml:11: labels.type.1: unknown type label 'image' (it is a modality label)",
    ]


def test_unknown_topic(tree):
    tree.edit(ALPHA, "topics: [few-shot-learning]", "topics:\n  - few-shot-learning\n  - fewshot-learning")
    assert problems(tree) == [
        "catalog/papers/alpha.yaml:15: topics.1: unknown topic 'fewshot-learning' — did you mean 'few-shot-learning'?"
    ]


def test_unknown_venue_with_alias_suggestion(tree):
    tree.edit(BETA, "venue: NeurIPS 2019", "venue: NIPS 2019")
    tree.edit(ALPHA, "venue: ICML 2017", "venue: ICLM 2017")
    assert problems(tree) == [
        "catalog/papers/alpha.yaml:8: venue: unknown venue 'ICLM 2017' — did you mean 'ICML 2017'?",
        "catalog/papers/beta.yaml:7: venue: unknown venue 'NIPS 2019' — did you mean 'NeurIPS 2019'?",
    ]


def test_only_https_links(tree):
    tree.edit(ALPHA, "ids:\n", "links:\n  - label: Blog\n    url: ftp://example.org/x\nids:\n")
    assert problems(tree) == [
        "catalog/papers/alpha.yaml:16: links.0.url: only https links are allowed, got 'ftp://example.org/x'"
    ]


def test_reproduction_package_must_exist(tree):
    tree.edit(BETA, "reproductions: [toy_repro]", "reproductions: [toy_repo]")
    found = problems(tree)
    assert found == [
        "catalog/papers/beta.yaml:16: reproductions.0: no reproduction package reproductions/toy_repo/ — did you mean 'toy_repro'?",
        "reproductions/toy_repro/results/omniglot.yaml:2: reproduction: 'toy_repro' is not listed under 'reproductions'"
        " in catalog/papers/beta.yaml",
    ]


def test_needs_code_without_reproduction_is_info_not_error(tree):
    tree.edit(BETA, "reproductions: [toy_repro]\n", "")
    tree.path("reproductions/toy_repro/results/omniglot.yaml").unlink()  # no reproduction, so no record either
    assert problems(tree) == []
    assert problems(tree, "info") == ["catalog/papers/beta.yaml:15: needs_code: needs code and has no reproduction yet"]


def test_result_source_paper_must_exist(tree):
    tree.edit(BETA, "      paper: alpha", "      paper: alpah")
    assert problems(tree) == [
        "catalog/papers/beta.yaml:27: results.0.source.paper: no catalog paper 'alpah' — did you mean 'alpha'?"
    ]


def test_dataset_paper_must_exist(tree):
    tree.edit("catalog/resources/datasets.yaml", "paper: alpha", "paper: omega")
    assert problems(tree) == ["catalog/resources/datasets.yaml:6: datasets.0.paper: no catalog paper 'omega'"]


def test_record_paper_and_reproduction_must_exist(tree):
    record = "reproductions/toy_repro/results/omniglot.yaml"
    tree.edit(record, "paper: beta", "paper: betta")
    tree.edit(record, "reproduction: toy_repro", "reproduction: missing_repro")
    assert problems(tree) == [
        f"{record}:1: paper: no catalog paper 'betta' — did you mean 'beta'?",
        f"{record}:2: reproduction: no reproduction package reproductions/missing_repro/",
    ]


def test_record_reproduction_must_be_listed_by_its_paper(tree):
    record = "reproductions/toy_repro/results/omniglot.yaml"
    tree.edit(BETA, "reproductions: [toy_repro]", "reproductions: []")
    assert problems(tree) == [
        f"{record}:2: reproduction: 'toy_repro' is not listed under 'reproductions' in catalog/papers/beta.yaml"
    ]


def test_records_are_in_the_catalog(tree):
    catalog, _ = load_catalog(tree.root)
    [(path, record)] = catalog.records
    assert path.name == "omniglot.yaml" and record.value == 97.1
    assert catalog.records_for("beta") == catalog.records and catalog.records_for("alpha") == []


def test_schema_comment_is_required(tree):
    tree.edit(ALPHA, "# yaml-language-server: $schema=../schema/paper.schema.json\n", "")
    found = problems(tree)
    assert len(found) == 1 and found[0].startswith("catalog/papers/alpha.yaml:1: the first line must be")


def test_reference_to_a_broken_paper_is_not_reported_twice(tree):
    tree.edit(ALPHA, "method: Alpha", "method: [Alpha]")
    found = problems(tree)
    assert len(found) == 1 and found[0].startswith("catalog/papers/alpha.yaml:4: method:"), found


def test_vocabulary_mistakes_of_an_otherwise_invalid_paper_are_reported_too(tree):
    tree.edit(ALPHA, "method: Alpha", "method: [Alpha]")
    tree.edit(ALPHA, "venue: ICML 2017", "venue: NIPS 2017")
    tree.edit(ALPHA, "modality: [image]", "modality: [images]")
    assert problems(tree) == [
        "catalog/papers/alpha.yaml:4: method: expected text, got a list ['Alpha']",
        "catalog/papers/alpha.yaml:8: venue: unknown venue 'NIPS 2017' — did you mean 'NeurIPS 2017'?",
        "catalog/papers/alpha.yaml:12: labels.modality.0: unknown modality label 'images' — did you mean 'image'?",
    ]
