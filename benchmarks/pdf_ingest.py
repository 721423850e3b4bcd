"""Ingest of a long PDF: pages/s, chunks/s, peak RSS, and the raw embedder on the same texts.

    python benchmarks/pdf_ingest.py [--pages 300] [--threads 1] [--json]

No real 10-K installs offline here, so the PDF is built from public prose: SciFact abstracts
(`../shared/datasets/scifact/corpus.jsonl`), about 3,000 characters per page, wrapped at 90
characters, with a running head and a page-number foot on every page (as filings have). The
ingest runs as its own `ragline ingest FILE --json` process with the embedding cache off (the
model embeds every chunk, as on a first ingest) and `RAGLINE_EMBED_THREADS=--threads`; its peak
RSS is the kernel's `ru_maxrss`. Then the raw embedder (`OnnxEmbedder.embed`, same threads,
same batch size) embeds exactly the chunk texts the ingest stored, so the ratio is ragline's
overhead (reading, chunking, token counting, storing, building the search files) over the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
sys.path.insert(0, str(ROOT))  # the tests' hand-built PDF writer

from ingest_memory import RAGLINE, peak_of  # noqa: E402  (beside this script)
from tests.pdfs import make_pdf  # noqa: E402


def filing_pages(n: int) -> list[str]:
    texts = (json.loads(line) for line in CORPUS.open(encoding="utf-8"))
    pages = []
    for number in range(1, n + 1):
        body: list[str] = []
        while sum(len(x) for x in body) < 3000:
            record = next(texts)
            body += [*textwrap.wrap(f"{record.get('title', '')}. {record['text']}", 90), ""]
        lines = ["EXAMPLE CORP  ANNUAL REPORT ON FORM 10-K  FISCAL 2019", "", *body[:64],
                 f"Page {number} of {n}"]
        pages.append("\n".join(lines))
    return pages


def raw_embed(texts: list[str], threads: int) -> float:
    from ragline.embed.onnx import OnnxEmbedder

    embedder = OnnxEmbedder(threads=threads)
    embedder.embed(texts[:8])  # load the model outside the timing
    started = time.perf_counter()
    embedder.embed(texts)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not CORPUS.exists():
        print(f"skipped: {CORPUS} not found", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="ragline-pdf-") as tmp:
        pdf = Path(tmp) / "EXAMPLE_2019_10K.pdf"
        pdf.write_bytes(make_pdf(filing_pages(args.pages), font_size=9, leading=11, top=760))
        pdf_mb = round(pdf.stat().st_size / 2**20, 2)
        config = Path(tmp) / "no-cache.toml"
        config.write_text("[embedder]\ncache = false\n")
        os.environ["RAGLINE_EMBED_THREADS"] = str(args.threads)  # the ingest process's threads
        ingest = peak_of([RAGLINE, "ingest", str(pdf), "--index", str(Path(tmp) / "ix"),
                          "--json", "--config", str(config)])
        if ingest["rc"] != 0:
            print(f"ingest failed: {ingest['stderr']}", file=sys.stderr)
            return 1
        with sqlite3.connect(Path(tmp) / "ix" / "ragline.sqlite") as conn:
            texts = [r[0] for r in conn.execute("SELECT text FROM chunks ORDER BY rowid")]
        raw_s = raw_embed(texts, args.threads)
    embed_s = (ingest["stage_seconds"] or {}).get("embed", 0.0)
    result = {
        "pages": args.pages, "pdf_mb": pdf_mb,
        "chunks": len(texts), "threads": args.threads, "peak_rss_mb": ingest["peak_rss_mb"],
        "ingest_seconds": ingest["seconds"], "stage_seconds": ingest["stage_seconds"],
        "pages_per_s": round(args.pages / ingest["seconds"], 2),
        "chunks_per_s": round(len(texts) / ingest["seconds"], 2),
        "raw_embed_seconds": round(raw_s, 1),
        "raw_chunks_per_s": round(len(texts) / raw_s, 2),
        "embed_stage_vs_raw": round(embed_s / raw_s, 3) if raw_s else None,
        "whole_ingest_vs_raw": round(ingest["seconds"] / raw_s, 3) if raw_s else None,
        "load_avg_1m": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
