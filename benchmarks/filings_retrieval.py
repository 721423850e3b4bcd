"""Retrieval on generated multi-year 10-K filings: BM25, dense, hybrid, with and without the
filing metadata signal (`[search] metadata_boost`).

    python benchmarks/filings_retrieval.py [--threads 1] [--json]

THE CORPUS IS GENERATED: a smoke test of the failure issue 14 describes (other years' filings of
the same company, and other companies' near-identical filings, crowding the top 10), not
evidence about real filings; no public set of filings with questions and evidence pages installs
offline here. Each split is 3 companies x 3 fiscal years of a 30-page 10-K PDF (`tests/pdfs.py`)
with an SEC cover page that `documents/_filing.py` parses, and 27 pages of boilerplate prose
shared by every filing of a company (a few sentences change from year to year), a 3-year
selected-data page, quarterly figures and the MD&A figures: the same templates in every filing,
only the numbers differ. Each question names a company and a fiscal year ("What were
Northwind's net sales in fiscal 2020?"); its gold document is that company's filing for that
year and its gold pages the pages of that filing that hold the answer.

Two splits with other companies, seeds and years: `tune` chooses the metadata boost weight
(gold page @10 of hybrid + boost over a grid, ties to the smaller weight), `report` is scored
once with the chosen weight. The real embedder embeds every chunk (no cache), single-threaded
by default.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' hand-built PDF writer

from tests.pdfs import make_pdf  # noqa: E402

PAGES = 30
SENTENCES = 14  # of boilerplate a page (about 1,700 characters)
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
SPLITS: dict[str, dict[str, Any]] = {
    "tune": {"seed": 7, "years": (2016, 2017, 2018), "companies": (
        ("Litware Systems, Inc.", "Litware"), ("Adatum Corporation", "Adatum"),
        ("Tailspin Logistics, Inc.", "Tailspin"))},
    "report": {"seed": 2024, "years": (2019, 2020, 2021), "companies": (
        ("Northwind Traders, Inc.", "Northwind"), ("Contoso Holdings Corporation", "Contoso"),
        ("Fabrikam Industries, Inc.", "Fabrikam"))},
}
SECTIONS = (  # (first page, heading) of each part of the filing after the cover
    (2, "Item 1. Business"), (7, "Item 1A. Risk Factors"), (13, "Item 2. Properties"),
    (14, "Item 3. Legal Proceedings"), (15, "Item 5. Market for Common Equity"),
    (16, "Item 6. Selected Financial Data"),
    (17, "Item 7. Management's Discussion and Analysis"), (23, "Item 7A. Market Risk"),
    (24, "Item 8. Notes to Consolidated Financial Statements"), (30, "Item 9A. Controls"))
BOILERPLATE = {
    "Item 1. Business": [
        "{co} designs, manufactures and sells {product} to customers in {region} through "
        "direct sales teams, distributors and online channels.",
        "We operate in two reportable segments, Commercial and Consumer, each managed by a "
        "segment president who reports to our chief executive officer.",
        "Our products compete on the basis of quality, reliability, price and the breadth of "
        "the service network available to customers.",
        "We purchase raw materials and components from a limited number of suppliers, and a "
        "disruption at any of them could delay our shipments.",
        "Seasonal demand is highest in the fourth quarter, when distributors build inventory "
        "ahead of the new selling season.",
        "We hold patents and trademarks that we consider important to our business, although "
        "no single patent is material to our results.",
        "Our backlog consists of firm orders that we expect to ship within the next twelve "
        "months, and orders may be cancelled before shipment.",
        "We invest in training programs, health benefits and safety initiatives for our "
        "workforce across every facility.",
        "{co}'s largest customer accounted for less than ten percent of net sales.",
        "Government regulations concerning product safety, emissions and labelling apply to "
        "many of the products we sell.",
        "We believe our relationships with our employees and the unions that represent some "
        "of them are good.",
        "Our website makes our annual and quarterly reports available free of charge as soon "
        "as practicable after we file them.",
    ],
    "Item 1A. Risk Factors": [
        "Adverse economic conditions could reduce demand for {product} and harm our results "
        "of operations.",
        "We face intense competition, and competitors may introduce products that are less "
        "expensive or technologically superior.",
        "Fluctuations in foreign currency exchange rates could adversely affect our reported "
        "net sales and operating income.",
        "A cybersecurity incident could disrupt our operations and expose us to liability and "
        "damage to our reputation.",
        "Our indebtedness could limit our flexibility in planning for changes in our business "
        "and the industry in which we operate.",
        "Changes in tax laws or their interpretation could increase our effective tax rate.",
        "We may not realize the anticipated benefits of acquisitions, and integration may "
        "divert management's attention.",
        "Increases in the cost of raw materials, freight and energy could reduce our gross "
        "margin if we cannot raise prices.",
        "The loss of key personnel could harm our ability to execute our strategy.",
        "Product recalls or warranty claims could be costly and damage the {co} brand.",
        "Climate-related events could disrupt our facilities and those of our suppliers.",
        "The market price of our common stock may be volatile.",
    ],
    "Item 2. Properties": [
        "Our headquarters are located in leased office space, and we own or lease "
        "manufacturing plants and distribution centers in {region}.",
        "We believe our facilities are suitable and adequate for our current needs.",
        "Most of our distribution centers are leased under operating leases with remaining "
        "terms of one to fifteen years.",
    ],
    "Item 3. Legal Proceedings": [
        "From time to time we are party to legal proceedings arising in the ordinary course "
        "of business.",
        "We do not believe that any pending proceeding will have a material adverse effect on "
        "our financial position.",
        "Legal costs are expensed as incurred.",
    ],
    "Item 5. Market for Common Equity": [
        "Our common stock is traded on the New York Stock Exchange.",
        "The declaration of future dividends is at the discretion of the board of directors.",
        "Our repurchase program does not obligate us to acquire any particular number of "
        "shares and may be suspended at any time.",
    ],
    "Item 7. Management's Discussion and Analysis": [
        "The following discussion should be read together with the consolidated financial "
        "statements and the related notes.",
        "Net sales are recognized when control of the products transfers to the customer, "
        "generally upon shipment.",
        "Gross margin reflects the mix of products sold, pricing actions and the cost of "
        "materials, labor and freight.",
        "Selling, general and administrative expenses include compensation, advertising and "
        "the cost of our information systems.",
        "We believe that cash from operations and our credit facility will be sufficient to "
        "fund our needs for the next twelve months.",
        "Critical accounting estimates include revenue reserves, inventory valuation, "
        "goodwill impairment and income taxes.",
        "Changes in foreign currency exchange rates affected the comparison of net sales "
        "between periods.",
        "Operating cash flow is driven mainly by net income and changes in working capital.",
    ],
    "Item 7A. Market Risk": [
        "We are exposed to market risk from changes in interest rates, foreign currency "
        "exchange rates and commodity prices.",
        "We use derivative instruments only to hedge exposures and not for speculation.",
        "A hypothetical ten percent change in exchange rates would not materially affect our "
        "operating income.",
    ],
    "Item 8. Notes to Consolidated Financial Statements": [
        "The consolidated financial statements include the accounts of {co} and its wholly "
        "owned subsidiaries.",
        "Inventories are stated at the lower of cost and net realizable value, cost "
        "determined on a first-in, first-out basis.",
        "Property, plant and equipment are depreciated on a straight-line basis over their "
        "estimated useful lives.",
        "Goodwill is tested for impairment annually in the fourth quarter and whenever events "
        "indicate that it may be impaired.",
        "Deferred income taxes reflect temporary differences between the financial reporting "
        "and tax bases of assets and liabilities.",
        "Stock-based compensation is measured at the grant date fair value and recognized "
        "over the vesting period.",
        "Revenue from service contracts is recognized ratably over the contract term.",
        "Leases with a term longer than twelve months are recognized as right-of-use assets.",
    ],
    "Item 9A. Controls": [
        "Our management evaluated the effectiveness of our disclosure controls and procedures "
        "as of the end of the period covered by this report.",
        "There were no changes in our internal control over financial reporting that "
        "materially affected it during the fourth quarter.",
    ],
}
YEARLY = [  # sentences that come and go from one year's filing to the next
    "During the year we opened a new distribution center to serve customers in {region}.",
    "We completed the consolidation of two manufacturing plants during the year.",
    "We launched a redesigned line of {product} in the second half of the year.",
    "A supplier disruption in the third quarter delayed some shipments into the fourth.",
    "We refinanced our revolving credit facility on terms similar to the prior agreement.",
]
PRODUCTS = ("industrial pumps and valves", "packaged foods and beverages", "home appliances",
            "networking equipment", "outdoor apparel and footwear", "medical supplies")
REGIONS = ("North America and Europe", "the Americas and Asia Pacific", "the United States")
# metric: (MD&A sentence, question), {v} the fiscal year's value, {p} the prior year's
METRICS: dict[str, tuple[str, str]] = {
    "net_sales": ("Net sales for fiscal {y} were ${v} million, compared with ${p} million in "
                  "fiscal {py}.", "What were {co}'s net sales in {when}?"),
    "operating_income": ("Operating income was ${v} million in fiscal {y}, compared with ${p} "
                         "million in fiscal {py}.", "How much operating income did {co} report "
                         "for {when}?"),
    "rnd": ("Research and development expense was ${v} million in fiscal {y} and ${p} million "
            "in fiscal {py}.", "What did {co} spend on research and development in {when}?"),
    "capex": ("Capital expenditures totaled ${v} million in fiscal {y}, compared with ${p} "
              "million in fiscal {py}, mainly for new equipment.",
              "What were {co}'s capital expenditures in {when}?"),
    "employees": ("As of the end of fiscal {y}, we employed approximately {v} full-time "
                  "employees, compared with {p} a year earlier.",
                  "How many full-time employees did {co} have at the end of {when}?"),
    "eps": ("Diluted earnings per share were ${v} for fiscal {y}, compared with ${p} for "
            "fiscal {py}.", "What were {co}'s diluted earnings per share for {when}?"),
    "backlog": ("Our order backlog at the end of fiscal {y} was ${v} million, compared with "
                "${p} million a year earlier.", "How large was {co}'s order backlog at the end "
                "of {when}?"),
    "dividends": ("We paid cash dividends of ${v} per share in fiscal {y} and ${p} per share "
                  "in fiscal {py}.", "What cash dividend per share did {co} pay in {when}?"),
    "debt": ("Total long-term debt outstanding at the end of fiscal {y} was ${v} million, "
             "compared with ${p} million a year earlier.",
             "How much long-term debt did {co} have outstanding at the end of {when}?"),
}
WHEN = ("fiscal {y}", "FY{y}", "{y}", "fiscal year {y}")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    company: str
    year: int
    gold_doc: str
    gold_pages: frozenset[int]


def _values(rng: random.Random, years: tuple[int, ...]) -> dict[str, dict[int, str]]:
    """Each metric's value by fiscal year (the two years before the first included)."""
    span = range(years[0] - 2, years[-1] + 1)
    out: dict[str, dict[int, str]] = {}
    for metric in METRICS:
        base = rng.uniform(200, 9000)
        row = {}
        for year in span:
            base *= rng.uniform(0.9, 1.2)
            if metric == "employees":
                row[year] = f"{int(base * 4):,}"
            elif metric in ("eps", "dividends"):
                row[year] = f"{base / 1500:.2f}"
            else:
                row[year] = f"{int(base):,}"
        out[metric] = row
    return out


def _section_of(page: int) -> str:
    return [title for first, title in SECTIONS if first <= page][-1]


def filing_pages(name: str, short: str, year: int, values: dict[str, dict[int, str]],
                 placement: dict[str, int], seed: int) -> list[str]:
    """The 30 pages of one 10-K: cover, boilerplate (per company, a little per year), the
    selected data, quarterly and MD&A figures of `year`."""
    company_rng = random.Random(f"{seed}-{short}")
    product, region = company_rng.choice(PRODUCTS), company_rng.choice(REGIONS)
    cover = "\n".join([
        "UNITED STATES SECURITIES AND EXCHANGE COMMISSION", "Washington, D.C. 20549", "",
        "FORM 10-K", "",
        "ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934",
        f"For the fiscal year ended December 31, {year}", "", name,
        "(Exact name of registrant as specified in its charter)", "",
        "Delaware    (State of incorporation)", "",
        "Indicate by check mark whether the registrant is a well-known seasoned issuer.",
    ])
    pages = [cover]
    for page in range(2, PAGES + 1):
        section = _section_of(page)
        page_rng = random.Random(f"{seed}-{short}-{page}")
        pool = BOILERPLATE.get(section, BOILERPLATE["Item 7A. Market Risk"])
        extra = [s for part in BOILERPLATE.values() if part is not pool for s in part]
        sentences = page_rng.sample(pool, min(len(pool), SENTENCES))
        sentences += page_rng.sample(extra, SENTENCES - len(sentences))
        year_rng = random.Random(f"{seed}-{short}-{page}-{year}")
        if year_rng.random() < 0.4:
            sentences[year_rng.randrange(len(sentences))] = year_rng.choice(YEARLY)
        for metric, at in placement.items():
            if at == page:
                template = METRICS[metric][0]
                sentences.insert(4, template.format(y=year, py=year - 1, v=values[metric][year],
                                                    p=values[metric][year - 1]))
        if section == "Item 6. Selected Financial Data":
            sentences = [f"Selected financial data for the three fiscal years ended {year}."] + [
                f"{label}: " + "; ".join(f"fiscal {y} ${values[metric][y]}"
                                         for y in (year, year - 1, year - 2)) + "."
                for metric, label in (("net_sales", "Net sales (millions)"),
                                      ("operating_income", "Operating income (millions)"),
                                      ("eps", "Diluted earnings per share"),
                                      ("debt", "Long-term debt (millions)"))]
        if page == 27:
            q = [f"{int(int(values['net_sales'][year].replace(',', '')) * s):,}"
                 for s in (0.22, 0.24, 0.25, 0.29)]
            sentences.insert(2, f"Quarterly net sales for fiscal {year} were ${q[0]} million in "
                             f"the first quarter, ${q[1]} million in the second, ${q[2]} million "
                             f"in the third and ${q[3]} million in the fourth.")
        body = " ".join(s.format(co=short, product=product, region=region) for s in sentences)
        heading = section if page == next(p for p, t in SECTIONS if t == section) else \
            f"{section} (continued)"
        pages.append("\n".join([f"{name.upper()}  {year} FORM 10-K", "", heading, "",
                                *textwrap.wrap(body, 90), "", f"Page {page}"]))
    return pages


def build_split(split: str, folder: Path) -> list[Question]:
    """Write one split's PDFs into `folder`; its questions."""
    spec = SPLITS[split]
    seed, years = spec["seed"], spec["years"]
    questions: list[Question] = []
    candidates: list[tuple[str, str, int, str]] = []
    for name, short in spec["companies"]:
        rng = random.Random(f"{seed}-{short}-values")
        values = _values(rng, years)
        mdna = list(range(17, 23)) + list(range(24, 30))
        placement = {m: rng.choice(mdna) for m in METRICS if m != "employees"}
        placement["employees"] = rng.choice(range(3, 7))
        for year in years:
            pages = filing_pages(name, short, year, values, placement, seed)
            doc = f"{short.lower()}-{year}-10k.pdf"
            (folder / doc).write_bytes(make_pdf(pages, font_size=9, leading=11, top=760))
            for metric in METRICS:
                value = values[metric][year]
                exact = re.compile(rf"(?<![\d,.]){re.escape(value)}(?!\d|[.,]\d)")
                gold = frozenset(i for i, text in enumerate(pages, 1)
                                 if exact.search(text.replace("\n", " ")))
                if gold:
                    candidates.append((short, doc, year, metric))
                    questions.append(Question(
                        f"{split}-{short}-{year}-{metric}", "", name, year,
                        f"{folder.name}/{doc}", gold))
    rng = random.Random(f"{seed}-questions")
    picked = sorted(rng.sample(range(len(questions)), 30))
    out = []
    for i in picked:
        q, (short, _doc, year, metric) = questions[i], candidates[i]
        when = rng.choice(WHEN).format(y=year)
        out.append(Question(q.id, METRICS[metric][1].format(co=short, when=when), q.company,
                            year, q.gold_doc, q.gold_pages))
    return out


CONFIGS: dict[str, dict[str, Any]] = {  # name: Index.search overrides (w: the chosen boost)
    "bm25": {"mode": "bm25", "metadata_boost": 0.0},
    "dense": {"mode": "dense", "metadata_boost": 0.0},
    "hybrid (minmax, alpha 0.4)": {"mode": "hybrid", "metadata_boost": 0.0},
    "hybrid (rrf)": {"mode": "hybrid", "fusion": "rrf", "metadata_boost": 0.0},
    "bm25 + boost": {"mode": "bm25", "metadata_boost": "w"},
    "dense + boost": {"mode": "dense", "metadata_boost": "w"},
    "hybrid + boost": {"mode": "hybrid", "metadata_boost": "w"},
    "hybrid + --where company, fiscal_year (oracle filter)": {"mode": "hybrid",
                                                              "metadata_boost": 0.0},
}


def score(index: Any, questions: list[Question], overrides: dict[str, Any],
          oracle: bool = False) -> dict[str, float]:
    """Over `questions`: the gold filing at rank 1 and in the top 10, a hit on a gold page at
    rank 1 and in the top 10, the reciprocal rank of the first such hit (MRR@10), the share of
    the top 10 from the gold filing, and the median latency."""
    totals = dict.fromkeys(("gold_doc@1", "gold_doc@10", "gold_page@1", "gold_page@10",
                            "gold_page_mrr@10", "gold_doc_share@10"), 0.0)
    seconds = []
    for q in questions:
        where = {"company": q.company, "fiscal_year": str(q.year)} if oracle else None
        started = time.perf_counter()
        hits = index.search(q.text, k=10, where=where, **overrides)
        seconds.append(time.perf_counter() - started)
        in_doc = [h for h in hits if h.chunk.doc_id == q.gold_doc]
        on_page = [h for h in in_doc if q.gold_pages & set(h.chunk.pages)]
        totals["gold_doc@1"] += bool(in_doc) and in_doc[0].rank == 1
        totals["gold_doc@10"] += bool(in_doc)
        totals["gold_page@1"] += bool(on_page) and on_page[0].rank == 1
        totals["gold_page@10"] += bool(on_page)
        totals["gold_page_mrr@10"] += 1 / on_page[0].rank if on_page else 0.0
        totals["gold_doc_share@10"] += len(in_doc) / max(len(hits), 1)
    out = {name: round(value / len(questions), 3) for name, value in totals.items()}
    out["p50_ms"] = round(statistics.median(seconds) * 1000, 2)
    return out


def ingest(folder: Path, index_dir: Path, threads: int) -> tuple[Any, int, float]:
    from ragline.embed.onnx import OnnxEmbedder
    from ragline.index import Index

    index = Index(index_dir, embedder=OnnxEmbedder(threads=threads))  # no cache: every chunk
    started = time.perf_counter()
    index.ingest(folder)
    return index, index.count_chunks(), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {"corpus": "GENERATED (a smoke test, not evidence about real "
                                        "filings)"}
    with tempfile.TemporaryDirectory(prefix="ragline-filings-") as tmp:
        os.environ["RAGLINE_HOME"] = str(Path(tmp) / "home")  # nothing of the user's is used
        indexes = {}
        for split in ("tune", "report"):
            folder = Path(tmp) / split
            folder.mkdir()
            questions = build_split(split, folder)
            index, chunks, seconds = ingest(folder, Path(tmp) / f"ix-{split}", args.threads)
            index.search("warm up", k=1)
            indexes[split] = (index, questions)
            result[split] = {"filings": len(list(folder.glob("*.pdf"))), "chunks": chunks,
                             "questions": len(questions), "ingest_s": round(seconds, 1)}
        index, questions = indexes["tune"]
        sweep = {f"{mode} w={w}": score(index, questions, {"mode": mode, "metadata_boost": w})
                 for mode in ("hybrid", "dense") for w in WEIGHTS}
        chosen = max(WEIGHTS, key=lambda w: (sweep[f"hybrid w={w}"]["gold_page@10"],
                                             sweep[f"hybrid w={w}"]["gold_page_mrr@10"], -w))
        result["tune"].update({"sweep": sweep, "chosen_weight": chosen})
        index, questions = indexes["report"]
        rows = {}
        for name, overrides in CONFIGS.items():
            given = {k: (chosen if v == "w" else v) for k, v in overrides.items()}
            rows[name] = score(index, questions, given, oracle="oracle" in name)
        result["report"]["rows"] = rows
        for index, _ in indexes.values():
            index.close()
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_avg_1m"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"corpus: {result['corpus']}")
    for split in ("tune", "report"):
        info = {k: v for k, v in result[split].items() if k not in ("sweep", "rows")}
        print(f"{split}: {info}")
    print("\ntune split, hybrid/dense + boost by weight (gold page @10, MRR@10):")
    for name, row in result["tune"]["sweep"].items():
        print(f"  {name:<14} {row['gold_page@10']:.3f}  {row['gold_page_mrr@10']:.3f}")
    print(f"\nreport split (boost weight {chosen}, chosen on the tune split):")
    columns = list(next(iter(result["report"]["rows"].values())))
    print("| configuration | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in result["report"]["rows"].items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c != "p50_ms" else f"{row[c]:.1f}"
                                        for c in columns) + " |")
    print(f"\n{result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
