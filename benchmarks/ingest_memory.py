"""Peak memory (RSS) of `ragline ingest` on a JSONL corpus, fresh and resumed after kill -9.

    python benchmarks/ingest_memory.py                      # SciFact corpus.jsonl (8 MB)
    python benchmarks/ingest_memory.py --large-mb 200       # + a 200 MB JSONL built from it
    python benchmarks/ingest_memory.py --kill-after 60 --no-cache   # kill -9, then resume

Each ingest runs as its own `ragline ingest FILE --index TMP --quiet --json` process; its peak
RSS is read from the kernel (`getrusage(RUSAGE_CHILDREN)` after it exits). The large file cycles
the SciFact records under new ids, so every text is in the embedding cache after the first
5,183: the figure measures ingest (reading, chunking, token counting, storing), not the model,
and must not grow with the file. `--max-file-size` is raised for it (the default limit is 50 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
RAGLINE = str(Path(sys.executable).with_name("ragline"))


def peak_of(command: list[str], kill_after: float | None = None) -> dict[str, Any]:
    """Run `command` in a fresh process (so its peak RSS is its own) and report it."""
    code = ("import resource, subprocess, sys, json, signal, time\n"
            "p = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
            "kill = float(sys.argv[1])\n"
            "if kill > 0:\n"
            "    time.sleep(kill); p.send_signal(signal.SIGKILL)\n"
            "out, err = p.communicate()\n"
            "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
            "print(json.dumps({'rc': p.returncode, 'peak_rss_mb': round(rss, 1),"
            " 'summary': out.decode()[-4000:], 'stderr': err.decode()[-1000:]}))\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(kill_after or 0), *command],
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    result["seconds"] = round(time.perf_counter() - start, 1)
    try:
        summary = json.loads(result.pop("summary"))
        result["added"], result["unchanged"] = summary["added"], summary["unchanged"]
        result["stage_seconds"] = summary.get("seconds")
    except (ValueError, KeyError):
        result.pop("summary", None)
    return result


def make_large(source: Path, target: Path, megabytes: int) -> int:
    records = [json.loads(line) for line in source.open(encoding="utf-8") if line.strip()]
    written = n = 0
    with target.open("w", encoding="utf-8") as out:
        while written < megabytes * 2**20:
            record = dict(records[n % len(records)], _id=f"copy{n}")
            line = json.dumps(record) + "\n"
            out.write(line)
            written += len(line.encode())
            n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DATASET / "corpus.jsonl")
    parser.add_argument("--large-mb", type=int, default=0)
    parser.add_argument("--kill-after", type=float, default=0.0)
    parser.add_argument("--no-cache", action="store_true",
                        help="Bypass the embedding cache ([embedder] cache = false): the model "
                             "embeds every chunk, as on a first ingest.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.file.exists():
        print(f"not found: {args.file}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ragline-mem-") as tmp:
        files = {args.file.name: args.file}
        if args.large_mb:
            large = Path(tmp) / f"large-{args.large_mb}mb.jsonl"
            records = make_large(args.file, large, args.large_mb)
            files[large.name] = large
            results["large_records"] = records
        for name, path in files.items():
            index = Path(tmp) / f"ix-{name}"
            command = [RAGLINE, "ingest", str(path), "--index", str(index), "--quiet", "--json",
                       "--max-file-size", str(path.stat().st_size + 1)]
            if args.no_cache:
                config = Path(tmp) / "no-cache.toml"
                config.write_text("[embedder]\ncache = false\n")
                command += ["--config", str(config)]
            row: dict[str, Any] = {"bytes": path.stat().st_size}
            if args.kill_after:
                row["killed_run"] = peak_of(command, kill_after=args.kill_after)
                row["resumed_run"] = peak_of(command)
            else:
                row["fresh_run"] = peak_of(command)
            results[name] = row
    results["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
