"""Load on `ragline serve` from a bounded asyncio client: search at 1, 8 and 32 concurrent
clients, ask at 1 and 4, and a memory soak.

    python benchmarks/server_load.py                        # 30 s a level, the local model
    python benchmarks/server_load.py --soak 600             # + 10 minutes of search, RSS sampled
    python benchmarks/server_load.py --seconds 3 --soak 10 --extractive   # a smoke run, no model

It builds an index of this project's docs/ and README.md (as `make demo` does; `--index DIR`
reuses one), starts `ragline serve --index` on 127.0.0.1 (a real uvicorn in its own process,
`--data-dir` and `--keys` in a temporary folder, so no state of yours is touched), creates a key
whose rate and concurrency limits cannot be the bottleneck, and drives it with httpx.AsyncClient:
each client sends one request at a time, back to back, for `--seconds` per level. Requests
started before a level's deadline are waited for and counted. Reported per level: requests,
requests/s, p50/p99/max latency of the successful ones, and failures by status (503: the
server's bounded model queue refused it; `--inference-queue` is raised to 64 by default so a
level measures queueing, not shedding). The soak (`--soak SECONDS`) runs `--soak-clients`
search clients while sampling the server's resident memory (its process and any children,
from /proc) every `--sample-every` seconds, and reports the start, end and max RSS.

`--extractive` starts the server with --extractive (asks quote the sources, no model starts);
without it asks are answered by the configured local generator (`make generator` assembles
it; the first ask, which starts it, is a warm-up and not counted), with the response cache off
(`[llm] cache = false`; `--llm-cache` keeps it) so that every answer is generated; an ask level
reports how many asks were answered, abstained (the relevance gate: no model call) or cached,
and the latency of those the model generated. `--search-clients 0` skips the search levels. The client runs on the same
machine as the server and competes with it for the CPU: on 2 cores that is part of the figure.

Writes `--out` (JSON, default server_load.json) and `--markdown` (default: beside it, .md), and
prints the Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RAGLINE = str(Path(sys.executable).with_name("ragline"))
COLLECTION = "default"  # what `ragline serve --index DIR` calls the index
QUERIES = (
    "how are keyword and vector scores combined",
    "corrupt PDF",
    "Where does ragline keep its embedding cache?",
    "which local model runs without an API key",
    "rate limit and Retry-After",
    "how is a claim verified against its citation",
    "reranker depth",
    "PostgreSQL store with pgvector",
)
# Every ask of a run is a different question (the pool is larger than the asks a run makes at
# these speeds), so no answer comes from the response cache, which serves a repeated question at
# temperature 0; a level's "cached" count says whether one did.
WARMUP_QUESTION = "What does ragline do?"
QUESTIONS = (
    "How are keyword and vector scores combined in hybrid search?",
    "Which local model does ragline run without an API key?",
    "Where does ragline keep its embedding cache?",
    "What does the server answer when its inference queue is full?",
    "How does ragline verify a citation?",
    "What happens when an ingest is interrupted?",
    "How are API keys stored by the server?",
    "What does the reranker depth setting control?",
    "How does ragline decide to abstain from answering?",
    "Which PostgreSQL extension stores the vectors?",
    "How is a PDF without a text layer reported?",
    "What does the leakage scan compare?",
    "How does the agent sandbox block network access?",
    "What is pass^k in agent evaluation?",
    "How does the regression gate decide a run is worse?",
    "What does ragline adapt generate produce?",
    "How are running heads and feet removed from PDFs?",
    "Which statistics does a paired comparison report?",
    "How does the cost ledger record a retried call?",
    "What does the /metrics endpoint expose?",
    "How are traces stored by the server?",
    "How does an experiment split traffic between two configurations?",
    "What does ragline doctor check in an index?",
    "Which fusion does hybrid search use by default?",
    "How many threads does the embedder use by default?",
    "What does the trained verifier model score?",
    "How does chat rewrite a follow-up question?",
    "What limits does the sandbox put on memory and processes?",
    "How does ragline tune choose search settings?",
    "What is stored in a run's manifest?",
    "Which file types can ragline ingest?",
    "How does the server shut down running jobs?",
    "What does the extractive mode of ask do?",
    "How are structured outputs validated?",
    "What does the OpenAI-compatible endpoint return besides the answer?",
    "How does the response cache decide what to store?",
    "What does a fine-tuned embedder require of an existing index?",
    "How are prompt injections in sources handled?",
    "What is the minimum detectable effect in a comparison?",
    "How does ragline count tokens for OpenAI models?",
)


# ---------------------------------------------------------------- measuring


@dataclass
class Level:
    """One load level's requests: latencies of the successful ones, failures by kind."""

    name: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # ask: answered / abstained / cached
    generated: list[float] = field(default_factory=list)  # ask: answered by the model, uncached

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def observe(self, reply: httpx.Response, seconds: float) -> None:
        """Tally what an ask reply was (answered or abstained, served from the cache) and keep
        the latency of those the model generated."""
        if not self.name.startswith("ask"):
            return
        body = reply.json()
        cached = bool((body.get("usage") or {}).get("cached"))
        kinds = ["abstained" if body.get("abstained") else "answered"] + (
            ["cached"] if cached else [])
        for kind in kinds:
            self.answers[kind] = self.answers.get(kind, 0) + 1
        if kinds == ["answered"] and (body.get("usage") or {}).get("tokens"):
            self.generated.append(seconds)

    def to_dict(self) -> dict[str, Any]:
        ok = sorted(self.latencies)
        total = len(ok) + sum(self.failures.values())
        return {"name": self.name, "clients": self.clients, "seconds": round(self.seconds, 2),
                "requests": total, "ok": len(ok), "failed": total - len(ok),
                "failures": dict(sorted(self.failures.items())),
                "requests_per_s": round(len(ok) / self.seconds, 2) if self.seconds else 0.0,
                "p50_ms": _ms(percentile(ok, 50)), "p99_ms": _ms(percentile(ok, 99)),
                "max_ms": _ms(ok[-1] if ok else None),
                **({"answers": dict(sorted(self.answers.items()))} if self.answers else {}),
                **({"generated": len(self.generated),
                    "generated_p50_ms": _ms(percentile(sorted(self.generated), 50)),
                    "generated_max_ms": _ms(max(self.generated))} if self.generated else {})}


def percentile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolated percentile of sorted values (None for none)."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def drive(client: httpx.AsyncClient, level: Level, seconds: float,
                request: Any) -> None:
    """`level.clients` clients, each sending `request(client, n)` back to back until the
    deadline; what is in flight at the deadline is waited for and counted."""
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def one_client(index: int) -> None:
        n = index
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                reply = await request(client, n)
            except httpx.HTTPError as exc:
                level.fail(type(exc).__name__)
            else:
                if reply.status_code == 200:
                    level.latencies.append(time.perf_counter() - began)
                    level.observe(reply, level.latencies[-1])
                else:
                    level.fail(str(reply.status_code))
            n += level.clients

    await asyncio.gather(*(one_client(i) for i in range(level.clients)))
    level.seconds = time.monotonic() - started


def search_request(client: httpx.AsyncClient, n: int) -> Any:
    return client.post(f"/collections/{COLLECTION}/search",
                       json={"query": QUERIES[n % len(QUERIES)], "k": 5})


def ask_request(extractive: bool, max_tokens: int) -> Any:
    """Asks that walk through QUESTIONS in order, across clients and levels."""
    asked = iter(range(1 << 62))

    def send(client: httpx.AsyncClient, n: int) -> Any:
        return client.post(f"/collections/{COLLECTION}/ask", json={
            "question": QUESTIONS[next(asked) % len(QUESTIONS)], "k": 3,
            "max_tokens": max_tokens, "extractive": extractive})
    return send


def warmup_ask(client: httpx.AsyncClient, extractive: bool, max_tokens: int) -> Any:
    return client.post(f"/collections/{COLLECTION}/ask", json={
        "question": WARMUP_QUESTION, "k": 3, "max_tokens": max_tokens,
        "extractive": extractive})


# ---------------------------------------------------------------- the server's memory


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (uvicorn workers, the llama.cpp server),
    in MiB, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


async def soak(client: httpx.AsyncClient, pid: int, seconds: float, clients: int,
               every: float) -> dict[str, Any]:
    level = Level("soak search", clients)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()

    async def sample() -> None:
        while True:
            samples.append((round(time.monotonic() - started, 1), rss_mb(pid)))
            await asyncio.sleep(every)

    sampler = asyncio.create_task(sample())
    try:
        await drive(client, level, seconds, search_request)
    finally:
        sampler.cancel()
    samples.append((round(time.monotonic() - started, 1), rss_mb(pid)))
    values = [mb for _, mb in samples]
    return {**level.to_dict(), "rss_start_mb": values[0], "rss_end_mb": values[-1],
            "rss_max_mb": max(values), "rss_growth_mb": round(values[-1] - values[0], 1),
            "samples": samples}


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def build_index(index: Path) -> dict[str, Any]:
    """This project's docs/ and README.md, as `make demo` ingests them."""
    started = time.perf_counter()
    out = run([RAGLINE, "ingest", str(ROOT / "docs"), str(ROOT / "README.md"), "--index",
               str(index), "--prune", "--quiet", "--json"])
    summary: dict[str, Any] = json.loads(out) if out.strip().startswith("{") else {}
    return {"seconds": round(time.perf_counter() - started, 1),
            **{k: summary[k] for k in ("added", "chunks") if k in summary}}


def create_key(keys: Path) -> str:
    out = run([RAGLINE, "keys", "create", "--keys", str(keys), "--collections", "*",
               "--name", "load", "--rate", "1000000", "--burst", "1000000",
               "--concurrency", "1024", "--json"])
    return str(json.loads(out)["key"])


def start_server(args: argparse.Namespace, index: Path, work: Path, port: int
                 ) -> subprocess.Popen[bytes]:
    command = [RAGLINE, "serve", "--index", str(index), "--data-dir", str(work / "data"),
               "--keys", str(work / "keys.sqlite"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(args.workers), "--inference-workers",
               str(args.inference_workers), "--inference-queue", str(args.inference_queue),
               "--log-level", "warning"]
    if args.extractive:
        command.append("--extractive")
    elif not args.llm_cache:  # every ask is generated: the response cache is off for this run
        config = work / "no-cache.toml"
        config.write_text("[llm]\ncache = false\n", encoding="utf-8")
        command += ["--config", str(config)]
    log = (work / "server.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"ragline serve exited with {server.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"ragline serve was not ready within {timeout:.0f} s")


def stop_server(server: subprocess.Popen[bytes]) -> int | None:
    server.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
    try:
        return server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return None


# ---------------------------------------------------------------- the run


async def measure(args: argparse.Namespace, base: str, key: str, pid: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=args.timeout) as client:
        warm = time.perf_counter()
        for request in (search_request(client, 0),
                        warmup_ask(client, args.extractive, args.max_tokens)):
            reply = await request
            if reply.status_code != 200:
                raise SystemExit(f"warm-up failed: {reply.status_code} {reply.text[:500]}")
        warmup_s = round(time.perf_counter() - warm, 1)
        collection = (await client.get("/collections")).json()["collections"][0]
        rss_before = rss_mb(pid)
        levels = []
        for clients in args.search_clients:
            level = Level("search", clients)
            await drive(client, level, args.seconds, search_request)
            levels.append(level.to_dict())
            print(_line(levels[-1]), file=sys.stderr)
        ask = ask_request(args.extractive, args.max_tokens)
        for clients in args.ask_clients:
            level = Level("ask (extractive)" if args.extractive else "ask", clients)
            await drive(client, level, args.ask_seconds or args.seconds, ask)
            levels.append(level.to_dict())
            print(_line(levels[-1]), file=sys.stderr)
        soaked = None
        if args.soak > 0:
            soaked = await soak(client, pid, args.soak, args.soak_clients, args.sample_every)
            print(_line(soaked) + f", RSS {soaked['rss_start_mb']} -> {soaked['rss_end_mb']} MiB"
                  f" (max {soaked['rss_max_mb']})", file=sys.stderr)
    return {"warmup_s": warmup_s, "collection": collection, "rss_after_warmup_mb": rss_before,
            "levels": levels, "soak": soaked}


def _line(level: dict[str, Any]) -> str:
    answers = level.get("answers")
    return (f"{level['name']} x{level['clients']}: {level['requests_per_s']} req/s, "
            f"p50 {level['p50_ms']} ms, p99 {level['p99_ms']} ms, {level['failed']} failed"
            + (f", {answers}" if answers else ""))


def cell(value: Any) -> str:
    return "-" if value is None else str(value)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"ragline serve load, {result['machine']['cpus']} CPUs, "
             f"{'extractive' if result['settings']['extractive'] else 'local model'}, "
             f"{result['index']['chunks']} chunks, {result['settings']['seconds']} s a level",
             "",
             "| load | clients | requests | req/s | p50 ms | p99 ms | max ms | failed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = list(result["levels"]) + ([result["soak"]] if result["soak"] else [])
    for level in rows:
        failed = str(level["failed"]) + (
            f" ({', '.join(f'{k}: {v}' for k, v in level['failures'].items())})"
            if level["failures"] else "")
        lines.append(f"| {level['name']} | {level['clients']} | {level['requests']} | "
                     f"{level['requests_per_s']} | {cell(level['p50_ms'])} | "
                     f"{cell(level['p99_ms'])} | {cell(level['max_ms'])} | {failed} |")
    if result["soak"]:
        s = result["soak"]
        lines += ["", f"Soak: {s['seconds']} s of search at {s['clients']} clients; server RSS "
                      f"{s['rss_start_mb']} MiB at the start, {s['rss_end_mb']} MiB at the end, "
                      f"{s['rss_max_mb']} MiB at most ({s['rss_growth_mb']:+} MiB), "
                      f"{len(s['samples'])} samples."]
    for level in result["levels"]:
        if level.get("answers"):
            lines.append(f"{level['name']} x{level['clients']}: "
                         + ", ".join(f"{k} {v}" for k, v in level["answers"].items())
                         + (f"; generated by the model (not cached) {level['generated']}, "
                            f"p50 {level['generated_p50_ms']} ms, max "
                            f"{level['generated_max_ms']} ms" if level.get("generated") else ""))
    return "\n".join(lines) + "\n"


def counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if text.strip() in ("", "0"):
        return []  # skip this kind of load
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive client counts")
    return values


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per load level")
    parser.add_argument("--ask-seconds", type=float, default=None,
                        help="seconds per ask level (default: --seconds)")
    parser.add_argument("--search-clients", type=counts, default=[1, 8, 32])
    parser.add_argument("--ask-clients", type=counts, default=[1, 4])
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="then search for this long, sampling the server's RSS")
    parser.add_argument("--soak-clients", type=int, default=8)
    parser.add_argument("--sample-every", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--extractive", action="store_true",
                        help="serve --extractive: asks quote the sources, no model is started")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--llm-cache", action="store_true",
                        help="keep the server's response cache on (off by default, so that an "
                             "ask repeated from an earlier run is generated again)")
    parser.add_argument("--index", type=Path, default=None,
                        help="serve this index instead of building one from docs/ and README")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--inference-workers", type=int, default=2)
    parser.add_argument("--inference-queue", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    parser.add_argument("--out", type=Path, default=Path("server_load.json"))
    parser.add_argument("--markdown", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from importlib.metadata import version

    with tempfile.TemporaryDirectory(prefix="ragline-load-") as tmp:
        work = Path(tmp)
        index = args.index or work / "index"
        built = build_index(index) if args.index is None else {"reused": str(index)}
        key = create_key(work / "keys.sqlite")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(args, index, work, port)
        try:
            asyncio.run(wait_ready(base, server, timeout=120))
            measured = asyncio.run(measure(args, base, key, server.pid))
        finally:
            exit_code = stop_server(server)
            log = (work / "server.log").read_text(errors="replace")[-4000:]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "ragline": version("ragline")},
        "settings": {"llm_cache": args.llm_cache, "seconds": args.seconds,
                     "ask_seconds": args.ask_seconds or args.seconds,
                     "extractive": args.extractive, "max_tokens": args.max_tokens,
                     "workers": args.workers, "inference_workers": args.inference_workers,
                     "inference_queue": args.inference_queue},
        "index": {**built, "chunks": measured["collection"].get("chunks"),
                  "documents": measured["collection"].get("documents")},
        "warmup_s": measured["warmup_s"], "rss_after_warmup_mb": measured["rss_after_warmup_mb"],
        "levels": measured["levels"], "soak": measured["soak"],
        "server_exit_code": exit_code, "server_log_tail": log,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = markdown(result)
    (args.markdown or args.out.with_suffix(".md")).write_text(table, encoding="utf-8")
    print(table)
    failed = sum(level["failed"] for level in result["levels"]) + (
        result["soak"]["failed"] if result["soak"] else 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
