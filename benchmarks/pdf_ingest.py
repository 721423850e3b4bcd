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
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"
RAGLINE = str(Path(sys.executable).with_name("ragline"))


def _escape(line: str) -> bytes:
    text = line.encode("latin-1", "replace")
    return text.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def build_pdf(pages: list[list[str]]) -> bytes:
    """A valid PDF with one Helvetica text line per input line; xref offsets exact."""
    bodies: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        ops = b"BT /F1 9 Tf 40 760 Td 11 TL " + b" ".join(
            b"(" + _escape(line) + b") Tj T*" for line in lines) + b" ET"
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops))
        bodies.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                      b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(bodies))
        kids.append(len(bodies))
    bodies[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    bodies[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1, xref)
    return bytes(out)


def filing_pages(n: int) -> list[list[str]]:
    texts = (json.loads(line) for line in CORPUS.open(encoding="utf-8"))
    pages = []
    for number in range(1, n + 1):
        body: list[str] = []
        while sum(len(x) for x in body) < 3000:
            record = next(texts)
            body += [*textwrap.wrap(f"{record.get('title', '')}. {record['text']}", 90), ""]
        pages.append(["EXAMPLE CORP  ANNUAL REPORT ON FORM 10-K  FISCAL 2019", "", *body[:64], f"Page {number} of {n}"])
    return pages


def peak_ingest(pdf: Path, index: Path, config: Path, threads: int) -> dict[str, Any]:
    code = ("import resource, subprocess, sys, json\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
            "print(json.dumps({'rc': p.returncode, 'peak_rss_mb': round(rss, 1),"
            " 'summary': p.stdout[-4000:], 'stderr': p.stderr[-2000:]}))\n")
    env = {**os.environ, "RAGLINE_EMBED_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, RAGLINE, "ingest", str(pdf), "--index",
                           str(index), "--json", "--config", str(config)],
                          capture_output=True, text=True, check=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if result["rc"] != 0:
        raise SystemExit(f"ingest failed: {result['stderr']}")
    summary = json.loads(result.pop("summary"))
    result["stage_seconds"] = summary.get("seconds")
    result.pop("stderr")
    return result


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
        pdf.write_bytes(build_pdf(filing_pages(args.pages)))
        pdf_mb = round(pdf.stat().st_size / 2**20, 2)
        config = Path(tmp) / "no-cache.toml"
        config.write_text("[embedder]\ncache = false\n")
        ingest = peak_ingest(pdf, Path(tmp) / "ix", config, args.threads)
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
