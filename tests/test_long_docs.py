"""Long filings: the metadata signal in search (query facts, boost, nothing changed without
filings) and the parent-document context of model answers (page and section expansion)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragline import Index
from ragline.answer.context import expand_context
from ragline.answer.pipeline import ask
from ragline.config import ContextMode, RaglineConfig, parse_config
from ragline.documents._filing import query_facts
from ragline.documents.chunking import pages_of
from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.retrieve.metadata import STAGE, FilingFacts, agreement
from ragline.retrieve.search import SearchParams
from ragline.types import Chunk, DocType, Document, Heading, Hit
from tests.fakes._http import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for
from tests.pdfs import make_pdf


def cover(year: int, company: str = "Acme Widgets, Inc.", form: str = "10-K") -> str:
    return (f"UNITED STATES SECURITIES AND EXCHANGE COMMISSION\nFORM {form}\n"
            f"For the fiscal year ended December 31, {year}\n{company}\n"
            "(Exact name of registrant as specified in its charter)\n\n")


def words(texts: Sequence[str]) -> list[int]:
    """A token counter that counts words: budgets exact by hand."""
    return [len(text.split()) for text in texts]


# ---------------------------------------------------------------- what a query names


@pytest.mark.parametrize("query", ["revenue in 2019", "FY2019 revenue", "FY 2019 revenue",
                                   "FY19 revenue", "fiscal 2019 revenue",
                                   "revenue for fiscal year 2019", "Nike's 2019 10-K"])
def test_a_query_names_a_fiscal_year_in_the_usual_ways(query: str) -> None:
    assert query_facts(query).years == {2019}


@pytest.mark.parametrize("query", ["$2,019 of revenue", "order 12019", "2019.5 percent",
                                   "a 20190 code", "revenue"])
def test_numbers_that_are_not_years_are_not_years(query: str) -> None:
    assert query_facts(query).years == frozenset()


def test_a_query_names_form_types_by_number_or_by_kind_of_report() -> None:
    assert query_facts("the 10-K of 2020").forms == {"10-K"}
    assert query_facts("10k and 10-Q filings").forms == {"10-K", "10-Q"}
    assert query_facts("the quarterly report").forms == {"10-Q"}
    assert "10-K" in query_facts("Nike's annual report").forms
    assert query_facts("the report on annual leave").forms == frozenset()


def test_a_company_is_named_by_its_name_without_legal_words() -> None:
    assert query_facts("Nike's revenue").names_company("NIKE, Inc.")
    assert query_facts("Procter and Gamble sales").names_company("The Procter & Gamble Company")
    assert query_facts("Northwind net sales").names_company("Northwind Traders, Inc.")
    assert not query_facts("pineapple prices").names_company("Apple Inc.")
    assert not query_facts("general and administrative").names_company("General Mills, Inc.")
    assert query_facts("General Mills revenue").names_company("General Mills, Inc.")
    assert not query_facts("anything").names_company("Inc.")


def test_agreement_counts_matching_facts_minus_contradicting_ones() -> None:
    facts = query_facts("Acme revenue fiscal 2020 annual report")
    acme = ("acme", "widgets")
    same = FilingFacts("10-K", 2020, acme)
    assert agreement(facts, same, {acme}) == 3
    assert agreement(facts, FilingFacts("10-K", 2019, acme), {acme}) == 1
    assert agreement(facts, FilingFacts("10-Q", 2019, ("zenith",)), {acme}) == -3
    assert agreement(facts, FilingFacts(), {acme}) == 0, "no filing metadata: untouched"
    assert agreement(query_facts("revenue"), same, set()) == 0, "the query names nothing"


# ---------------------------------------------------------------- the boost in search

REVENUE = ("Results of operations. Total revenue for fiscal {y} was {v} million dollars, and "
           "total revenue is expected to grow in fiscal {n}, the company said. Revenue rose "
           "because unit shipments increased.\n")


@pytest.fixture(scope="module")
def filings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Index]:
    """Two fiscal years of one company's 10-K and a note without filing metadata."""
    docs = tmp_path_factory.mktemp("filings") / "filings"
    docs.mkdir()
    for year, value in ((2019, 410), (2020, 455)):
        (docs / f"acme-{year}.txt").write_text(cover(year) + REVENUE.format(
            y=year, v=value, n=year + 1))
    (docs / "notes.txt").write_text("Meeting notes: the sales team discussed its revenue "
                                    "forecasts for the year.\n")
    index = Index(tmp_path_factory.mktemp("filings-ix"), embedder=embedder)
    index.ingest(docs)
    yield index
    index.close()


def test_ingest_records_the_filing_facts(filings: Index) -> None:
    doc = filings.get_document("filings/acme-2019.txt")
    assert doc is not None
    assert {k: doc.metadata[k] for k in ("form_type", "fiscal_year", "company")} == {
        "form_type": "10-K", "fiscal_year": 2019, "company": "Acme Widgets, Inc."}


def test_the_filing_of_the_named_year_is_lifted_and_the_other_demoted(filings: Index) -> None:
    query = "total revenue in fiscal 2020"
    plain = {h.chunk.doc_id: h for h in filings.search(query, metadata_boost=0)}
    boosted = filings.search(query, metadata_boost=0.5)
    assert boosted[0].chunk.doc_id == "filings/acme-2020.txt"
    by_doc = {h.chunk.doc_id: h for h in boosted}
    assert by_doc["filings/acme-2020.txt"].score > plain["filings/acme-2020.txt"].score
    assert by_doc["filings/acme-2019.txt"].score < plain["filings/acme-2019.txt"].score
    notes = by_doc["filings/notes.txt"]
    assert notes.score == plain["filings/notes.txt"].score, "no filing metadata: untouched"
    assert all(STAGE in h.stages for h in boosted)
    assert [h.rank for h in boosted] == list(range(1, len(boosted) + 1))


def test_the_boost_follows_the_year_the_query_names(filings: Index) -> None:
    for year in (2019, 2020):
        hits = filings.search(f"Acme total revenue FY{year}", metadata_boost=0.5, k=3)
        assert hits[0].chunk.doc_id == f"filings/acme-{year}.txt"


def test_tune_scores_the_signal_as_search_applies_it(filings: Index) -> None:
    from ragline.retrieve.search import fuse

    query = "Acme total revenue FY2019"
    fused = fuse(filings.candidates(query, depth=20), SearchParams(k=40))
    rescored = filings.rescore_rows(query, fused)
    docs = filings.chunk_doc_ids()
    searched = [h.chunk.doc_id for h in filings.search(query, k=3)]  # the default weight
    assert [docs[row] for row, _ in rescored[:3]] == searched
    assert searched[0] == "filings/acme-2019.txt"
    assert filings.rescore_rows("Acme", []) == []


def test_search_command_takes_the_weight(filings: Index) -> None:
    from ragline.cli.root import app

    def top(*extra: str) -> dict[str, Any]:
        shown = CliRunner().invoke(app, ["search", "Acme total revenue FY2019", "--index",
                                         str(filings.path), "-k", "1", "--json", *extra])
        assert shown.exit_code == 0, shown.output
        return dict(json.loads(shown.stdout)["hits"][0])

    assert top("--metadata-boost", "0.5")["doc_id"] == "filings/acme-2019.txt"
    assert STAGE not in top("--metadata-boost", "0")["stages"]
    refused = CliRunner().invoke(app, ["search", "x", "--metadata-boost", "-1"])
    assert refused.exit_code == 2


@pytest.mark.skipif(os.environ.get("RAGLINE_NO_POSTGRES") == "1", reason="no PostgreSQL")
def test_the_signal_ranks_alike_on_postgres(filings: Index, tmp_path: Path, embedder: Embedder,
                                            request: pytest.FixtureRequest) -> None:
    import psycopg

    dsn = request.getfixturevalue("pg_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    config = RaglineConfig.model_validate({"store": {"backend": "postgres", "dsn": dsn,
                                                     "schema": schema}})
    index = Index(tmp_path / "pg", config, embedder=embedder)
    notes = filings.get_document("filings/notes.txt")
    assert notes is not None and notes.source_path is not None
    try:
        index.ingest(Path(notes.source_path).parent)
        for query in ("total revenue in fiscal 2020", "Acme revenue FY2019 10-K"):
            assert [h.chunk.id for h in index.search(query)] == \
                [h.chunk.id for h in filings.search(query)]
            assert STAGE in index.search(query, k=1)[0].stages
    finally:
        index.close()
        with psycopg.connect(dsn, autocommit=True,
                             password=os.environ.get("RAGLINE_PG_PASSWORD")) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_search_json_says_when_the_metadata_signal_applied(filings: Index) -> None:
    hit = filings.search("Acme revenue fiscal 2020", metadata_boost=0.5, k=1)[0]
    stages = hit.to_dict()["stages"]
    assert stages[STAGE]["score"] == hit.score
    assert stages[STAGE]["score"] > stages["hybrid"]["score"], "the boost is the difference"


def test_a_query_naming_nothing_ranks_as_without_the_signal(filings: Index) -> None:
    query = "why did unit shipments increase"
    assert _same(filings.search(query, metadata_boost=0.5), filings.search(query,
                                                                         metadata_boost=0))


def test_a_corpus_without_filings_ranks_exactly_as_before(tmp_path: Path,
                                                          embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "census.txt").write_text("In 2019 people moved to the city; the census of 2019 "
                                     "counted them.\n")
    (docs / "annual.md").write_text("# Annual report of the garden club\n\nThe 10-K run took "
                                    "place in 2020 and 2019 people joined.\n")
    index = Index(tmp_path / "ix", embedder=embedder)
    index.ingest(docs)
    for query in ("2019 people", "annual report 2020 10-K", "the census"):
        for mode in ("bm25", "dense", "hybrid"):
            assert _same(index.search(query, mode=mode, metadata_boost=2.0),
                         index.search(query, mode=mode, metadata_boost=0))


def _same(a: list[Hit], b: list[Hit]) -> bool:
    return [(h.chunk.id, h.score, dict(h.stages)) for h in a] == \
        [(h.chunk.id, h.score, dict(h.stages)) for h in b]


def test_metadata_boost_is_validated() -> None:
    with pytest.raises(ConfigError, match="metadata_boost"):
        SearchParams(metadata_boost=-1)
    with pytest.raises(ConfigError, match="metadata_boost"):
        parse_config({"search": {"metadata_boost": -0.5}})
    assert parse_config({"search": {"metadata_boost": 0}}).search.metadata_boost == 0


# ---------------------------------------------------------------- parent-document context

PAGES = ["Cover page of the report.",
         "Page two opens here. " + " ".join(f"alpha{i}" for i in range(40)) + " The hit sits "
         "here on page two. " + " ".join(f"omega{i}" for i in range(40)) + " Page two ends.",
         "Page three is short."]


def paged_document() -> Document:
    starts, text = [], ""
    for page in PAGES:
        text += "\n\n" if text else ""
        starts.append(len(text))
        text += page
    return Document(id="report.pdf", text=text, doc_type=DocType.PDF, content_hash="x",
                    metadata={"page_starts": starts})


def hit_at(doc: Document, needle: str, rank: int = 1, score: float = 1.0,
           starts: Sequence[int] = ()) -> Hit:
    start = doc.text.index(needle)
    end = start + len(needle)
    chunk = Chunk(id=f"{doc.id}#{rank}", doc_id=doc.id, ordinal=rank, text=needle,
                  start=start, end=end, pages=pages_of(list(starts), start, end))
    return Hit(chunk=chunk, score=score, rank=rank, doc_title=doc.title)


def expand(hits: list[Hit], doc: Document, mode: ContextMode, budget: int = 1000) -> list[Hit]:
    return expand_context(hits, {doc.id: doc}.get, mode, budget, words)


def test_a_hit_expands_to_its_whole_page() -> None:
    doc = paged_document()
    starts = doc.metadata["page_starts"]
    (out,) = expand([hit_at(doc, "The hit sits here", starts=starts)], doc, ContextMode.PAGE)
    assert out.chunk.text == doc.text[out.chunk.start:out.chunk.end] == PAGES[1]
    assert out.chunk.pages == (2,) and out.chunk.doc_id == doc.id
    assert out.chunk.id == "report.pdf#1", "the hit's own chunk id: citations name it"


def test_the_budget_trims_around_the_hit_and_keeps_it() -> None:
    doc = paged_document()
    starts = doc.metadata["page_starts"]
    hit = hit_at(doc, "The hit sits here on page two.", starts=starts)
    (out,) = expand([hit], doc, ContextMode.PAGE, budget=21)
    assert len(out.chunk.text.split()) <= 21
    assert out.chunk.start <= hit.chunk.start and out.chunk.end >= hit.chunk.end
    assert out.chunk.text == doc.text[out.chunk.start:out.chunk.end]
    assert "alpha39" in out.chunk.text and "omega0" in out.chunk.text, "context on both sides"
    assert not out.chunk.text.startswith("lpha"), "cut at word boundaries"
    (tight,) = expand([hit], doc, ContextMode.PAGE, budget=3)
    assert tight.chunk.text == hit.chunk.text, "a hit over the budget is kept whole"


def test_hits_expanding_to_the_same_page_merge_into_the_best_ranked() -> None:
    doc = paged_document()
    starts = doc.metadata["page_starts"]
    hits = [hit_at(doc, "alpha3 alpha4", 1, 0.9, starts), hit_at(doc, "Cover page", 2, 0.8, starts),
            hit_at(doc, "omega7 omega8", 3, 0.7, starts)]
    out = expand(hits, doc, ContextMode.PAGE)
    assert [h.rank for h in out] == [1, 2]
    assert out[0].chunk.id == hits[0].chunk.id and out[0].score == 0.9
    assert out[0].chunk.text == PAGES[1] and out[1].chunk.text == PAGES[0]


def test_merged_hits_keep_both_chunks_when_the_budget_allows() -> None:
    doc = paged_document()
    starts = doc.metadata["page_starts"]
    first, second = hit_at(doc, "alpha3", 1, starts=starts), hit_at(doc, "omega30", 2,
                                                                     starts=starts)
    (out,) = expand([first, second], doc, ContextMode.PAGE, budget=75)
    assert out.chunk.start <= first.chunk.start and out.chunk.end >= second.chunk.end
    assert len(out.chunk.text.split()) <= 75


SECTIONED = ("# Annual report\n\nIntro text of the report.\n\n## Revenue\n\nRevenue grew by "
             "ten percent.\n\n## Costs\n\nCosts fell.\n\n# Appendix\n\nTables follow.\n")


def sectioned_document() -> Document:
    heads = [(i, level, title) for i, level, title in (
        (SECTIONED.index("# Annual"), 1, "Annual report"),
        (SECTIONED.index("## Revenue"), 2, "Revenue"), (SECTIONED.index("## Costs"), 2, "Costs"),
        (SECTIONED.index("# Appendix"), 1, "Appendix"))]
    return Document(id="report.md", text=SECTIONED, doc_type=DocType.MARKDOWN,
                    content_hash="x", headings=tuple(Heading(*h) for h in heads))


def test_a_hit_expands_to_its_heading_section() -> None:
    doc = sectioned_document()
    (out,) = expand([hit_at(doc, "grew by ten")], doc, ContextMode.SECTION)
    assert out.chunk.text == "## Revenue\n\nRevenue grew by ten percent."
    (top,) = expand([hit_at(doc, "Intro text")], doc, ContextMode.SECTION)
    assert top.chunk.text.startswith("# Annual report") and "Costs fell." in top.chunk.text
    assert "Appendix" not in top.chunk.text, "a section ends at the next heading of its level"
    assert top.chunk.text == doc.text[top.chunk.start:top.chunk.end]


def test_documents_without_pages_or_headings_keep_the_chunk() -> None:
    doc = Document(id="plain.txt", text="Just some text here. And more text.",
                   doc_type=DocType.TXT, content_hash="x")
    hits = [hit_at(doc, "some text", 1), hit_at(doc, "text here", 2)]
    for mode in (ContextMode.PAGE, ContextMode.SECTION):
        assert [h.chunk for h in expand(hits, doc, mode)] == [h.chunk for h in hits]
    assert expand(hits, doc, ContextMode.CHUNK) == hits
    assert [h.chunk for h in expand(hits, sectioned_document(), ContextMode.PAGE)] == \
        [h.chunk for h in hits], "a document the lookup does not find keeps its chunks"


def test_answer_settings_default_to_the_chunk() -> None:
    settings = RaglineConfig().answer
    assert settings.context is ContextMode.CHUNK and settings.context_tokens == 600
    assert parse_config({"answer": {"context": "page"}}).answer.context is ContextMode.PAGE
    with pytest.raises(ConfigError, match="context"):
        parse_config({"answer": {"context": "book"}})


# ---------------------------------------------------------------- model answers on pages

PUMP_PAGES = [
    "Riverside water works annual report. Contents and overview of the pumping stations.",
    "\n".join(["The Riverside pump station was rebuilt in 2018 with three new pumps.",
               *[f"In week {i} the crew inspected the {part} and found it in good order." for
                 i, part in enumerate(("filters", "valves", "intake screens", "motors",
                                       "control panel", "backup generator", "pipework",
                                       "pressure gauges") * 3, 1)],
               "The station pumps 4,200 litres of water per minute at full load."]),
    "Budget and staffing notes for the water works follow on this page.",
]


@pytest.fixture(scope="module")
def pump_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("pumps")
    (root / "pumps.pdf").write_bytes(make_pdf(PUMP_PAGES))
    index = Index(tmp_path_factory.mktemp("pumps-ix"), embedder=embedder)
    index.ingest(root)
    yield index
    index.close()


def test_an_ingested_pdf_hit_expands_to_its_page(pump_index: Index) -> None:
    hits = pump_index.search("How many litres per minute does the station pump?", k=1)
    assert 2 in hits[0].chunk.pages and "4,200" in hits[0].chunk.text
    assert "rebuilt in 2018" not in hits[0].chunk.text
    out = expand_context(hits, pump_index.get_document, ContextMode.PAGE, 2000,
                         pump_index.embedder.count_tokens)
    doc = pump_index.get_document(hits[0].chunk.doc_id)
    assert doc is not None
    assert out[0].chunk.text == doc.text[out[0].chunk.start:out[0].chunk.end]
    assert "rebuilt in 2018" in out[0].chunk.text and "4,200 litres" in out[0].chunk.text
    assert out[0].chunk.pages == hits[0].chunk.pages, "the pages the hit is on, whole"
    assert out[0].chunk.start == doc.metadata["page_starts"][hits[0].chunk.pages[0] - 1]


def test_ask_with_page_context_prompts_the_page_and_cites_its_span(pump_index: Index) -> None:
    question = "How many litres per minute does the Riverside pump station pump?"
    with FakeOpenAIServer() as server:
        server.push_reply(Reply(json_value={"sentences": [{
            "text": "The station pumps 4,200 litres of water per minute.", "sources": [1],
            "quote": "4,200 litres of water per minute"}], "abstained": False}))
        llm = llm_for("openai-compatible", server, model="gpt-test", sleeper=RecordingSleep(),
                      cache=False)
        answer = ask(pump_index, question, llm=llm, k=2, context="page", min_relevance=0)
        prompt = json.dumps(server.requests[-1]["messages"])
    assert "rebuilt in 2018" in prompt, "the whole page reaches the model, not just the chunk"
    assert not answer.abstained
    check = answer.checks[0]
    assert check.quote_source == 1 and check.quote_match == 1.0, "verified against the page"
    (citation,) = answer.citations
    doc = pump_index.get_document(citation.doc_id)
    assert doc is not None and citation.quote_start is not None
    assert doc.text[citation.quote_start:citation.quote_end] == "4,200 litres of water per minute"
    assert "rebuilt in 2018" in doc.text[citation.start:citation.end]


def test_extractive_answers_stay_on_chunks(pump_index: Index) -> None:
    question = "How many litres per minute does the Riverside pump station pump?"
    answer = ask(pump_index, question, k=2, extractive=True, context="page", min_relevance=0)
    hits = pump_index.search(question, k=2)
    assert [s["text"] for s in answer.sources] == [h.chunk.text for h in hits]


def test_an_unknown_context_is_refused(pump_index: Index) -> None:
    with pytest.raises(ConfigError, match="chunk, page, section"):
        ask(pump_index, "pumps?", extractive=True, context="book")


def test_ask_cli_offers_and_validates_context() -> None:
    from ragline.cli.root import app

    shown = CliRunner().invoke(app, ["ask", "--help"])
    assert shown.exit_code == 0 and "--context" in shown.output and "section" in shown.output
    refused = CliRunner().invoke(app, ["ask", "anything", "--context", "book"])
    assert refused.exit_code == 2 and "book" in refused.output
