"""A sandbox for model-written Python: bubblewrap namespaces, seccomp and rlimits, secure by default.

`run_python(code)` runs the code in a fresh `python` under `bwrap` with no network (an empty
network namespace), its own PID/IPC/UTS/cgroup namespaces, a root filesystem holding only `/usr`,
the interpreter and its packages (read-only), the allowed input files (read-only, under `/input`)
and a private tmpfs scratch folder (`/scratch`, the only writable place), a minimal environment,
an unprivileged user, a seccomp deny list (`_seccomp.py`) and rlimits on CPU, memory, processes
and file size; the parent enforces wall time and output size. Nothing runs when a layer is
missing: `SandboxUnavailable` says which and how to install it (docs/sandbox.md explains why).
"""

from __future__ import annotations

import contextlib
import enum
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from ragline.agent._seccomp import seccomp_available, seccomp_filter_fd
from ragline.errors import RaglineError

SCRATCH = "/scratch"
INPUT = "/input"
_PYTHON_ROOT = "/opt/python"
_MAIN = "/sandbox/main.py"
# what a contained process runs as when ragline itself is root: a fresh uid per run, so no two
# sandboxes (and no host account) share the per-user process count that RLIMIT_NPROC enforces
_UID_RANGE = (2_000_000, 3_000_000)


class StopReason(enum.StrEnum):
    """The limit that stopped a run."""

    CPU = "cpu"
    WALL = "wall"
    MEMORY = "memory"
    PROCESSES = "processes"
    OUTPUT = "output"
    SIGNAL = "signal"


class SandboxUnavailable(RaglineError):
    """A layer the sandbox needs is missing here, so nothing was run."""


@dataclass(frozen=True)
class Limits:
    """What a run may use. There is no network and no writable place but the scratch folder."""

    cpu_s: float = 10.0
    wall_s: float = 30.0
    memory_mb: int = 512
    processes: int = 32
    output_bytes: int = 1_048_576  # each of stdout and stderr
    scratch_mb: int = 64

    def __post_init__(self) -> None:
        for name in ("cpu_s", "wall_s", "memory_mb", "processes", "output_bytes", "scratch_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")
        if self.memory_mb < 32:
            raise ValueError(f"Limits.memory_mb must be at least 32 (python needs it to start), "
                             f"got {self.memory_mb}")
        if self.processes < 2:
            raise ValueError(f"Limits.processes must be at least 2, got {self.processes}")


@dataclass(frozen=True)
class SandboxResult:
    """What a run printed and how it ended. `exit_status` is the program's own status (None when
    a signal or a limit ended it); `stopped_by` names the limit that stopped it, with `message`."""

    stdout: str
    stderr: str
    exit_status: int | None
    stopped_by: StopReason | None
    message: str
    wall_s: float
    cpu_s: float
    signal: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    layers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.stopped_by is None and self.exit_status == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stopped_by"] = self.stopped_by.value if self.stopped_by else None
        data["layers"] = list(self.layers)
        return data


class Sandbox(Protocol):
    """The seam: anything that runs untrusted Python under limits."""

    def run_python(self, code: str, *, files: Mapping[str, Path] | None = None,
                   limits: Limits = Limits()) -> SandboxResult: ...


def run_python(code: str, *, files: Mapping[str, Path] | None = None, limits: Limits = Limits(),
               allow_without_seccomp: bool = False) -> SandboxResult:
    """Run `code` in a fresh bubblewrap sandbox (see `BubblewrapSandbox`)."""
    sandbox = BubblewrapSandbox(allow_without_seccomp=allow_without_seccomp)
    return sandbox.run_python(code, files=files, limits=limits)


def sandbox_unavailable_reason(*, allow_without_seccomp: bool = False) -> str | None:
    """None when the sandbox can run here, else what is missing and how to get it."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return ("bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap; "
                "`make sandbox` does it)")
    if not allow_without_seccomp and (reason := seccomp_available()) is not None:
        return reason + "; or opt into a sandbox without seccomp explicitly"
    return _probe(bwrap, os.geteuid() == 0)


@cache
def _probe(bwrap: str, as_root: bool) -> str | None:
    args = [bwrap, *_namespace_args(as_root), *_system_binds(), "--proc", "/proc",
            "--dev", "/dev", "--", "/usr/bin/true"]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, env={},
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0:
        return (f"bubblewrap cannot create its namespaces here ({done.stderr.strip()[-300:]}); "
                "user namespaces may be disabled (sysctl user.max_user_namespaces, or an "
                "AppArmor/container policy)")
    return None


@dataclass(frozen=True)
class _Interpreter:
    """Where the interpreter lives on the host and how it is laid out inside the sandbox."""

    host_prefix: Path
    executable: str  # inside the sandbox
    binds: tuple[tuple[str, str], ...]  # (host, inside), read-only
    env: tuple[tuple[str, str], ...]


def _interpreter() -> _Interpreter:
    """The running interpreter, its stdlib and the running environment's packages. A prefix
    outside /usr (pyenv under $HOME, a venv's base) is mounted at /opt/python, so the home folder
    it lives in is never part of the sandbox."""
    base = Path(sys.base_prefix).resolve()
    real = Path(os.path.realpath(sys.executable))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    in_venv = Path(sys.prefix).resolve() != base
    if base == Path("/usr") or base.is_relative_to("/usr"):
        binds: list[tuple[str, str]] = []
        env: list[tuple[str, str]] = []
        if in_venv:
            binds.append((str(packages), "/opt/site-packages"))
            env.append(("PYTHONPATH", "/opt/site-packages"))
        return _Interpreter(base, str(real), tuple(binds), tuple(env))
    inside = f"{_PYTHON_ROOT}/{real.relative_to(base)}" if real.is_relative_to(base) else None
    if inside is None:
        raise SandboxUnavailable(f"the interpreter {real} is not under its prefix {base}")
    binds = [(str(base), _PYTHON_ROOT)]
    base_packages = base / "lib" / version / "site-packages"
    if in_venv and base_packages.is_dir():
        # the venv's packages take the base's place (and the base's own stay out of sight)
        binds.append((str(packages), f"{_PYTHON_ROOT}/lib/{version}/site-packages"))
    # an absolute RUNPATH (pyenv's) points at the host prefix: give the loader the new one
    return _Interpreter(base, inside, tuple(binds), (("LD_LIBRARY_PATH", f"{_PYTHON_ROOT}/lib"),))


def _namespace_args(as_root: bool) -> list[str]:
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if not as_root:  # an unprivileged caller: a user namespace, and none nested inside it
        args += ["--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534"]
    return args


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return args


def _minimal_env(interpreter: _Interpreter) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
           # one thread per math library: a thread counts against the process limit
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(interpreter.env)
    return env


def _rlimit_args(limits: Limits) -> list[str]:
    """prlimit's options: never above the caller's own hard limits (that would fail)."""

    def capped(kind: int, soft: int, hard: int) -> str:
        current = resource.getrlimit(kind)[1]
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        return f"{soft}:{hard}"

    # soft == hard: the program is pid 1 of its namespace, where SIGXCPU is ignored; SIGKILL is not
    cpu = max(1, int(limits.cpu_s + 0.999))
    memory = limits.memory_mb * 1024 * 1024
    scratch = limits.scratch_mb * 1024 * 1024
    return [f"--cpu={capped(resource.RLIMIT_CPU, cpu, cpu)}",
            f"--as={capped(resource.RLIMIT_AS, memory, memory)}",
            f"--nproc={capped(resource.RLIMIT_NPROC, limits.processes, limits.processes)}",
            f"--fsize={capped(resource.RLIMIT_FSIZE, scratch, scratch)}",
            f"--nofile={capped(resource.RLIMIT_NOFILE, 256, 256)}",
            "--core=0:0", "--memlock=0:0"]


class BubblewrapSandbox:
    """Runs each program in a fresh `bwrap` sandbox. `allow_without_seccomp=True` is the one
    weaker mode, and only on request: without libseccomp the namespaces and rlimits still hold."""

    def __init__(self, *, allow_without_seccomp: bool = False) -> None:
        self.allow_without_seccomp = allow_without_seccomp

    def run_python(self, code: str, *, files: Mapping[str, Path] | None = None,
                   limits: Limits = Limits()) -> SandboxResult:
        """Run `code` as `/sandbox/main.py` with cwd `/scratch`; `files` appear read-only as
        `/input/NAME`."""
        reason = sandbox_unavailable_reason(allow_without_seccomp=self.allow_without_seccomp)
        if reason is not None:
            raise SandboxUnavailable(f"the sandbox cannot run here: {reason}")
        inputs = _check_inputs(files or {})
        with _Run(code, inputs, limits, self.allow_without_seccomp) as run:
            return run.execute()


def _check_inputs(files: Mapping[str, Path]) -> dict[str, Path]:
    checked: dict[str, Path] = {}
    for name, path in files.items():
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise ValueError(f"an input file's name must be a plain file name, got {name!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"an allowed input file does not exist: {path}")
        checked[name] = Path(path)
    return checked


class _Run:
    """One run: the file descriptors handed to bwrap, the process, its output and its end."""

    def __init__(self, code: str, inputs: dict[str, Path], limits: Limits,
                 allow_without_seccomp: bool) -> None:
        self.limits = limits
        self.as_root = os.geteuid() == 0
        self.fds: list[int] = []
        self.layers = ["bubblewrap", "namespaces: pid, net, ipc, uts, mount, cgroup"
                       + ("" if self.as_root else ", user"), "rlimits", "minimal env"]
        self.code_fd = self._memfd("main.py", code.encode())
        self.input_fds = {name: self._keep(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                          for name, path in inputs.items()}
        self.seccomp_fd: int | None = None
        if seccomp_available() is None:
            self.seccomp_fd = self._keep(seccomp_filter_fd())
            self.layers.append("seccomp")
        elif not allow_without_seccomp:
            raise SandboxUnavailable(f"the sandbox cannot run here: {seccomp_available()}")
        self.status_r, status_w = os.pipe()
        self.status_w = self._keep(status_w)
        self._keep(self.status_r)

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def _memfd(self, name: str, data: bytes) -> int:
        fd = self._keep(os.memfd_create(name, os.MFD_CLOEXEC))
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *_: object) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def command(self) -> list[str]:
        bwrap = shutil.which("bwrap") or "bwrap"
        interpreter = _interpreter()
        # --as-pid-1: no bwrap init between, so the wait status and the CPU time used (rusage)
        # are the program's own, and its end ends every process it started
        args = [bwrap, *_namespace_args(self.as_root), "--as-pid-1", *_system_binds(),
                "--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(self.limits.scratch_mb * 1024 * 1024),
                "--tmpfs", SCRATCH, "--symlink", SCRATCH, "/tmp"]
        for folder in ("/opt", "/sandbox", INPUT):  # bwrap would make them 0700, root's
            args += ["--perms", "0755", "--dir", folder]
        for host, inside in interpreter.binds:
            args += ["--ro-bind", host, inside]
        args += ["--perms", "0444", "--ro-bind-data", str(self.code_fd), _MAIN]
        for name, fd in self.input_fds.items():
            args += ["--perms", "0444", "--ro-bind-data", str(fd), f"{INPUT}/{name}"]
        args += ["--remount-ro", "/", "--chdir", SCRATCH, "--json-status-fd", str(self.status_w)]
        if self.seccomp_fd is not None:
            args += ["--seccomp", str(self.seccomp_fd)]
        inner = ["/usr/bin/prlimit", *_rlimit_args(self.limits), interpreter.executable,
                 "-s", "-B", _MAIN]
        if self.as_root:  # drop to a uid of its own before anything untrusted runs
            uid = str(_UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]))
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP"]
            inner = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *inner]
            self.layers.append("unprivileged uid")
        return [*args, "--", *inner]

    def execute(self) -> SandboxResult:
        interpreter = _interpreter()
        started = time.monotonic()
        proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=_minimal_env(interpreter), start_new_session=True,
            pass_fds=[fd for fd in self.fds if fd != self.status_r], cwd="/")
        os.close(self.status_w)
        self.fds.remove(self.status_w)
        watch = _Watch(proc, self.limits, started)
        try:
            watch.pump()
        finally:
            watch.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        cpu = usage.ru_utime + usage.ru_stime
        started_child = self._child_started()
        stderr = watch.text("stderr")
        if not started_child and watch.first is None:
            raise SandboxUnavailable(f"bubblewrap could not set up the sandbox: {stderr[-500:]}")
        return _result(watch, proc.returncode, wall, cpu, self.limits, tuple(self.layers))

    def _child_started(self) -> bool:
        os.set_blocking(self.status_r, False)
        try:
            data = os.read(self.status_r, 65536)
        except BlockingIOError:
            data = b""
        return b"child-pid" in data


_FORK_FAILED = (b"Resource temporarily unavailable", b"can't start new thread",
                b"Cannot fork", b"fork: retry")


class _Watch:
    """Reads stdout and stderr up to their cap and enforces the wall-clock limit."""

    def __init__(self, proc: subprocess.Popen[bytes], limits: Limits, started: float) -> None:
        self.proc = proc
        self.limits = limits
        self.deadline = started + limits.wall_s
        self.data: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}
        self.first: tuple[StopReason, str] | None = None  # the first limit seen while running

    def _note(self, reason: StopReason, detail: str) -> None:
        if self.first is None:
            self.first = (reason, detail)

    def pump(self) -> None:
        selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        selector.register(self.proc.stdout, selectors.EVENT_READ, "stdout")
        selector.register(self.proc.stderr, selectors.EVENT_READ, "stderr")
        open_streams = 2
        while open_streams:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self._note(StopReason.WALL, "")
                return
            for key, _ in selector.select(timeout=min(remaining, 0.5)):
                name = str(key.data)
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if self._take(name, chunk):
                    return
        selector.close()

    def _take(self, name: str, chunk: bytes) -> bool:
        """Keep a chunk; True when the output limit stops the run."""
        buffer = self.data[name]
        if name == "stderr" and any(p in bytes(buffer[-200:]) + chunk for p in _FORK_FAILED):
            self._note(StopReason.PROCESSES, "")
        room = self.limits.output_bytes - len(buffer)
        buffer += chunk[:room]
        if len(chunk) > room:
            self.truncated[name] = True
            self._note(StopReason.OUTPUT, name)
            return True
        return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def text(self, name: str) -> str:
        return bytes(self.data[name]).decode("utf-8", errors="replace")


def _result(watch: _Watch, code: int, wall: float, cpu: float, limits: Limits,
            layers: tuple[str, ...]) -> SandboxResult:
    stderr = watch.text("stderr")
    signum = -code if code < 0 else code - 128 if code > 128 else None
    exit_status: int | None = code if signum is None else None
    reason, message = _stop_reason(watch, code, signum, stderr, cpu, limits)
    if reason is not None and reason not in (StopReason.MEMORY, StopReason.PROCESSES):
        exit_status = None
    return SandboxResult(stdout=watch.text("stdout"), stderr=stderr, exit_status=exit_status,
                         stopped_by=reason, message=message, wall_s=round(wall, 3),
                         cpu_s=round(cpu, 3), signal=signum,
                         stdout_truncated=watch.truncated["stdout"],
                         stderr_truncated=watch.truncated["stderr"], layers=layers)


def _stop_reason(watch: _Watch, code: int, signum: int | None, stderr: str, cpu: float,
                 limits: Limits) -> tuple[StopReason | None, str]:
    """Which limit ended the run, and a sentence saying so. A limit seen while the program ran
    (a failed fork, the output cap, the wall clock) comes first: it is what stopped it."""
    first = watch.first
    if first is not None and first[0] is not StopReason.PROCESSES:
        if first[0] is StopReason.WALL:
            return first[0], f"stopped by the wall-clock limit ({limits.wall_s:g} s)"
        return first[0], (f"stopped by the output limit ({limits.output_bytes:,} bytes on "
                          f"{first[1]})")
    if code != 0 and first is not None:
        return StopReason.PROCESSES, (f"stopped by the process limit ({limits.processes}): "
                                      "creating a process or thread failed")
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= limits.cpu_s * 0.9):
        return StopReason.CPU, f"stopped by the CPU time limit ({limits.cpu_s:g} s)"
    if code != 0 and "MemoryError" in stderr[-2000:]:
        return StopReason.MEMORY, (f"stopped by the memory limit ({limits.memory_mb} MB): an "
                                   "allocation failed")
    if signum is not None:
        name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
        return StopReason.SIGNAL, f"killed by signal {name}"
    return None, f"exited with status {code}"
