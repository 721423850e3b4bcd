"""Runs xllamacpp's llama.cpp server in a child process.

Why not in this process: xllamacpp holds the GIL while it loads a model and while its server
shuts down. In-process, a model load freezes every Python thread (so no start-up timeout can
fire) and stopping the server while a request is in flight deadlocks: the destructor waits for
the request, and the client thread waiting for the reply needs the GIL to notice anything.
In a child process a load can be timed out, a stop can fall back to killing the process, and a
crash inside llama.cpp cannot take the caller down with it.

Protocol: the parent writes one JSON line (the LaunchSpec, kept off the command line because
it holds the API key) to the child's stdin; the child answers one JSON line on stdout,
`{"ready": "http://127.0.0.1:PORT"}` or `{"error": "..."}`, then serves until its stdin closes
(the parent's stop(), or the parent's death).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any


class LaunchError(Exception):
    """The child did not come up; the message says why (the caller re-raises it typed)."""


@dataclass(frozen=True)
class LaunchSpec:
    """Everything the child needs to build llama.cpp's CommonParams."""

    model_path: str
    alias: str
    n_ctx: int
    n_parallel: int
    threads: int
    host: str
    port: int
    api_key: str
    seed: int
    verbosity: int


class LlamaProcess:
    """A started child process serving llama.cpp's HTTP API at `root_url`."""

    def __init__(self, proc: subprocess.Popen[bytes], root_url: str) -> None:
        self._proc = proc
        self.root_url = root_url

    @classmethod
    def launch(cls, spec: LaunchSpec, timeout: float) -> LlamaProcess:
        """Start the child and wait (at most `timeout` s) until the model is loaded."""
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            **_detach_kwargs(),
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(asdict(spec)).encode() + b"\n")
        proc.stdin.flush()
        try:
            reply = _read_reply(proc.stdout, timeout)
        except LaunchError:
            _kill(proc)
            raise
        if "ready" not in reply:
            _kill(proc)
            raise LaunchError(str(reply.get("error", reply)))
        return cls(proc, str(reply["ready"]).rstrip("/"))

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, grace: float) -> None:
        """Ask the child to stop (close its stdin); kill it if it takes longer than `grace` s."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            # BrokenPipeError: the child is already gone; wait() below reaps it.
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            # llama.cpp waits for in-flight requests before it exits; their clients get a
            # connection error instead.
            _kill(self._proc)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _child_env() -> dict[str, str]:
    """The parent's environment, with ragline's own folder first on PYTHONPATH."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _detach_kwargs() -> dict[str, Any]:
    # A new session keeps the terminal's Ctrl+C away from the child: the parent decides when
    # the server stops (its KeyboardInterrupt unwinds into stop()).
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def _read_reply(stream: IO[bytes], timeout: float) -> dict[str, Any]:
    lines: queue.Queue[bytes] = queue.Queue(maxsize=1)
    reader = threading.Thread(
        target=lambda: lines.put(stream.readline()), name="ragline-llama-start", daemon=True
    )
    reader.start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise LaunchError(f"the model was not loaded within {timeout:.0f}s") from None
    if not line:
        raise LaunchError("the llama.cpp process exited during start-up (see its log above)")
    reply: dict[str, Any] = json.loads(line)
    return reply


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


# --- the child ------------------------------------------------------------------------------


def _build_params(spec: LaunchSpec) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = spec.model_path
    params.model_alias = {spec.alias}
    params.n_ctx = spec.n_ctx
    params.n_parallel = spec.n_parallel
    params.cpuparams.n_threads = spec.threads
    params.cpuparams_batch.n_threads = spec.threads
    params.hostnames = [spec.host]
    params.port = spec.port
    params.api_keys = [spec.api_key]
    params.sampling.seed = spec.seed
    params.verbosity = spec.verbosity
    return params


def _child_main() -> int:
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so anything
    # llama.cpp prints cannot corrupt the reply line.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    spec = LaunchSpec(**json.loads(sys.stdin.readline()))
    try:
        import xllamacpp

        server = xllamacpp.Server(_build_params(spec))
    except RuntimeError as exc:  # xllamacpp's only failure signal
        protocol.write(json.dumps({"error": str(exc)}) + "\n")
        protocol.flush()
        return 1
    protocol.write(json.dumps({"ready": str(server.listening_address)}) + "\n")
    protocol.flush()
    sys.stdin.read()  # returns when the parent closes our stdin (stop) or dies
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
