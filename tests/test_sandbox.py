"""The sandbox for model-written code: normal code works, and every escape is contained AND
reported. Each escape program prints what it managed; the test checks it managed nothing."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragline.agent import sandbox as sb
from ragline.agent.sandbox import Limits, SandboxUnavailable, StopReason, run_python

UNAVAILABLE = sb.sandbox_unavailable_reason()
needs_sandbox = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"sandbox: {UNAVAILABLE}")
FAST = Limits(cpu_s=1, wall_s=8)
PROJECT = Path(__file__).resolve().parents[1]


def run(code: str, limits: Limits = FAST, **kwargs: object) -> sb.SandboxResult:
    return run_python(code, limits=limits, **kwargs)  # type: ignore[arg-type]


def attempts(code: str) -> list[str]:
    """Run a program that prints one `name:OK` or `name:BLOCKED ...` line per attempt."""
    result = run(code)
    assert result.ok, (result.message, result.stderr[-2000:])
    lines = [line for line in result.stdout.splitlines() if ":" in line]
    assert lines, result.stdout
    return lines


TRY = '''
def attempt(name, fn):
    try:
        value = fn()
    except BaseException as exc:
        print(f"{name}:BLOCKED {type(exc).__name__} {exc}")
    else:
        print(f"{name}:OK {value!r}"[:300])
'''


def assert_all_blocked(lines: list[str]) -> None:
    leaked = [line for line in lines if ":OK" in line]
    assert not leaked, leaked


# -- the sandbox refuses to run without its layers (no bwrap needed) --------------------------


def test_refuses_to_run_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        run_python("print(1)")


def test_refuses_to_run_without_seccomp_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "libseccomp is not installed (Debian: apt-get install libseccomp2)"
    monkeypatch.setattr(sb, "seccomp_available", lambda: missing)
    with pytest.raises(SandboxUnavailable, match="libseccomp"):
        run_python("print(1)")
    if UNAVAILABLE is None:
        result = run_python("print(1)", allow_without_seccomp=True)
        assert result.ok and "seccomp" not in result.layers


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="cpu_s"):
        Limits(cpu_s=0)
    with pytest.raises(ValueError, match="plain file name"):
        run_python("", files={"../x": Path(__file__)})


# -- normal code works ------------------------------------------------------------------------


@needs_sandbox
def test_normal_code_computes_reads_an_allowed_file_and_writes_scratch(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    data.chmod(0o600)  # readable inside even when only its owner could read it
    code = (
        "import csv, json, os\n"
        "rows = list(csv.DictReader(open('/input/data.csv')))\n"
        "total = sum(int(r['a']) + int(r['b']) for r in rows)\n"
        "open('out.json', 'w').write(json.dumps({'total': total}))\n"
        "print(json.load(open('/scratch/out.json'))['total'], os.getcwd(), 2 ** 100)\n"
    )
    result = run_python(code, files={"data.csv": data}, limits=FAST)
    assert result.ok and result.stopped_by is None and result.exit_status == 0
    assert result.stdout.split() == ["10", "/scratch", str(2**100)]
    assert {"bubblewrap", "seccomp", "rlimits"} <= set(result.layers)


@needs_sandbox
def test_numpy_runs_when_the_interpreter_has_it() -> None:
    if importlib.util.find_spec("numpy") is None:
        pytest.skip("numpy is not installed in this interpreter")
    result = run("import numpy as np\nprint(int(np.arange(1000).sum()))\n")
    assert result.ok, result.stderr[-1000:]
    assert result.stdout.strip() == "499500"


@needs_sandbox
def test_the_program_exit_status_and_stderr_come_back() -> None:
    result = run("import sys\nprint('to err', file=sys.stderr)\nsys.exit(7)\n")
    assert result.exit_status == 7 and result.stopped_by is None and not result.ok
    assert result.stderr == "to err\n"
    result = run("raise ValueError('boom')\n")
    assert result.exit_status == 1 and "ValueError: boom" in result.stderr


# -- network ----------------------------------------------------------------------------------


@pytest.fixture
def host_listeners(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TCP server on the host's 127.0.0.1 and a UNIX socket server in a host folder."""
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    path = tmp_path / "host.sock"
    unix.bind(str(path))
    unix.listen()
    accepted: list[str] = []

    def serve(server: socket.socket) -> None:
        try:
            conn, _ = server.accept()
            accepted.append("connected")
            conn.close()
        except OSError:
            pass

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in (tcp, unix)]
    for t in threads:
        t.start()
    yield tcp.getsockname()[1], path
    tcp.close()
    unix.close()
    assert not accepted, "a sandboxed program reached a host socket"


@needs_sandbox
def test_no_network_tcp_to_localhost_an_external_ip_or_a_host_unix_socket(
        host_listeners: tuple[int, Path]) -> None:
    port, unix_path = host_listeners
    code = TRY + f'''
import socket
def tcp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(2)
    s.connect((host, port)); return "connected"
def unix(path):
    s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(path); return "connected"
attempt("tcp-localhost", lambda: tcp("127.0.0.1", {port}))
attempt("tcp-external", lambda: tcp("1.1.1.1", 443))
attempt("udp-external", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)))
attempt("ipv6", lambda: socket.socket(socket.AF_INET6).connect(("::1", {port})))
attempt("raw-netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
attempt("unix-host-socket", lambda: unix({str(unix_path)!r}))
attempt("unix-abstract", lambda: unix("\\0ragline-test"))
attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
'''
    assert_all_blocked(attempts(code))


# -- files ------------------------------------------------------------------------------------


@needs_sandbox
def test_cannot_read_shadow_the_home_folder_or_the_project(tmp_path: Path) -> None:
    home = Path.home()
    code = TRY + f'''
import os
attempt("shadow", lambda: open("/etc/shadow").read())
attempt("passwd", lambda: open("/etc/passwd").read())
attempt("home-listing", lambda: os.listdir({str(home)!r}))
attempt("home-bashrc", lambda: open({str(home / ".bashrc")!r}).read())
attempt("ssh-keys", lambda: os.listdir({str(home / ".ssh")!r}))
attempt("project", lambda: os.listdir({str(PROJECT)!r}))
attempt("project-readme", lambda: open({str(PROJECT / "README.md")!r}).read())
attempt("test-tmp", lambda: os.listdir({str(tmp_path)!r}))
OWN = {"bin", "dev", "input", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sandbox",
       "sbin", "scratch", "tmp", "usr"}
def others():
    extra = sorted(set(os.listdir("/")) - OWN)
    if extra:
        return extra
    raise PermissionError("the root holds only the sandbox's own folders")
attempt("root-has-more", others)
'''
    assert_all_blocked(attempts(code))


@needs_sandbox
def test_cannot_write_outside_scratch_and_scratch_is_bounded() -> None:
    code = TRY + '''
import os
def write(path):
    with open(path, "w") as f: f.write("x")
    return "written"
for path in ["/evil", "/usr/evil", "/opt/python/evil", "/sandbox/main.py", "/input/evil",
             "/proc/sysrq-trigger", "/proc/sys/kernel/hostname", "/dev/evil"]:
    attempt("write " + path, lambda: write(path))
attempt("chmod-python", lambda: os.chmod("/opt/python/bin", 0o777))
attempt("scratch-fill", lambda: open("/scratch/big", "wb").write(b"x" * (200 * 2**20)))
'''
    assert_all_blocked(attempts(code))


@needs_sandbox
def test_symlinks_in_scratch_lead_nowhere() -> None:
    code = TRY + f'''
import os
os.symlink("/etc/shadow", "/scratch/shadow")
os.symlink({str(PROJECT)!r}, "/scratch/project")
os.symlink("/proc/1/root/..", "/scratch/up")
attempt("via-symlink-shadow", lambda: open("/scratch/shadow").read())
attempt("via-symlink-project", lambda: os.listdir("/scratch/project"))
attempt("via-proc-root", lambda: os.listdir("/scratch/up/root"))
attempt("dotdot", lambda: open("/scratch/../../../etc/shadow").read())
'''
    assert_all_blocked(attempts(code))


# -- processes, signals, the parent -----------------------------------------------------------


@needs_sandbox
def test_cannot_kill_or_trace_the_parent() -> None:
    me = os.getpid()
    code = TRY + f'''
import os, signal
def kill_parent():
    if os.getppid() == 0:  # pid 1 of its own namespace: the parent has no pid here
        raise PermissionError("getppid() is 0: the parent is outside this PID namespace")
    os.kill(os.getppid(), signal.SIGKILL)
attempt("kill-ppid", kill_parent)
os.kill(0, signal.SIGKILL)  # its own process group: ignored, it is its namespace's init
attempt("kill-host-pid", lambda: os.kill({me}, signal.SIGKILL))
attempt("kill-all", lambda: os.kill(-1, signal.SIGKILL))
attempt("kill-pid1", lambda: os.kill(1, signal.SIGKILL) or "survived" if os.getpid() != 1 else
        (_ for _ in ()).throw(PermissionError("this program is pid 1 of its own namespace")))
attempt("host-pids-visible", lambda: [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]
        or (_ for _ in ()).throw(PermissionError("only itself")))
'''
    assert_all_blocked(attempts(code))
    assert os.getpid() == me  # and this process is alive to say so


@needs_sandbox
def test_ctypes_calls_to_libc_are_refused() -> None:
    me = os.getpid()
    code = TRY + f'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    rc = fn(*args)
    if rc == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return rc
attempt("ptrace-attach-parent", lambda: call(libc.ptrace, 16, os.getppid(), 0, 0))
attempt("ptrace-attach-host", lambda: call(libc.ptrace, 16, {me}, 0, 0))
attempt("kill-host", lambda: call(libc.kill, {me}, 9))
attempt("mount-proc", lambda: call(libc.mount, b"proc", b"/scratch", b"proc", 0, None))
attempt("mount-bind-root", lambda: call(libc.mount, b"/", b"/scratch", None, 4096, None))
attempt("unshare-user", lambda: call(libc.unshare, 0x10000000))
attempt("unshare-net", lambda: call(libc.unshare, 0x40000000))
attempt("setns", lambda: call(libc.setns, os.open("/proc/self/ns/net", os.O_RDONLY), 0))
attempt("setuid-0", lambda: call(libc.setuid, 0))
attempt("chroot", lambda: call(libc.chroot, b"/scratch"))
attempt("tiocsti", lambda: call(libc.ioctl, 0, 0x5412, ctypes.byref(ctypes.c_char(b"x"))))
attempt("bpf", lambda: call(libc.syscall, 321, 0, 0, 0))
attempt("io_uring", lambda: call(libc.syscall, 425, 8, 0))
attempt("userfaultfd", lambda: call(libc.syscall, 323, 0))
'''
    assert_all_blocked(attempts(code))


@needs_sandbox
def test_a_fork_bomb_is_stopped_by_the_process_limit() -> None:
    result = run("import os\nwhile True:\n    os.fork()\n")
    assert result.stopped_by is StopReason.PROCESSES, (result.message, result.stderr[-500:])
    assert "process limit (32)" in result.message
    assert result.wall_s < FAST.wall_s


@needs_sandbox
def test_subprocess_to_bin_sh_stays_inside() -> None:
    code = ("import subprocess\n"
            "out = subprocess.run(['/bin/sh', '-c', 'cat /etc/shadow; ls /root; id -u; "
            "cat /proc/1/environ | tr \"\\\\0\" \" \"; echo done'], capture_output=True, text=True)\n"
            "print(out.stdout); print(out.stderr)\n")
    result = run(code)
    assert result.ok, result.stderr
    assert "done" in result.stdout and "No such file" in result.stdout
    assert "root:" not in result.stdout and "SECRET" not in result.stdout
    assert result.stdout.split()[0] != "0"  # not root


# -- environment and /proc --------------------------------------------------------------------


@needs_sandbox
def test_the_parents_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_TEST_SECRET", "hunter2-SECRET")
    code = TRY + '''
import os
def find():
    seen = [k for k in os.environ]
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
        try:
            seen.append(open(f"/proc/{pid}/environ", "rb").read().decode())
        except OSError:
            pass
    hits = [s for s in seen if "SECRET" in s or "hunter2" in s]
    if hits:
        return hits
    raise PermissionError("no secret anywhere; env is " + ",".join(sorted(os.environ)))
attempt("environ", find)
'''
    lines = attempts(code)
    assert_all_blocked(lines)
    assert "PATH" in lines[0] and "RAGLINE_TEST_SECRET" not in lines[0]


@needs_sandbox
def test_proc_self_tricks_do_not_reach_the_host() -> None:
    me = os.getpid()
    code = TRY + f'''
import os
attempt("proc-root-project", lambda: os.listdir("/proc/self/root/work"))
attempt("proc-1-cwd", lambda: os.listdir("/proc/1/cwd/..") if "work" in os.listdir(
    "/proc/1/cwd/..") else (_ for _ in ()).throw(PermissionError("the sandbox's own root")))
attempt("proc-host-mem", lambda: open("/proc/{me}/mem", "wb").write(b"x"))
attempt("proc-host-environ", lambda: open("/proc/{me}/environ").read())
attempt("proc-sys-write", lambda: open("/proc/sys/vm/drop_caches", "w").write("3"))
attempt("sysfs", lambda: os.listdir("/sys/class"))
attempt("kcore", lambda: open("/proc/kcore", "rb").read(1))
attempt("devices", lambda: [d for d in os.listdir("/dev") if d.startswith(("sd", "vd", "nvme",
    "mem", "kmem", "port"))] or (_ for _ in ()).throw(PermissionError("no disks or memory")))
'''
    assert_all_blocked(attempts(code))


# -- limits: each stops the run and is reported -----------------------------------------------


@needs_sandbox
def test_allocating_10_gb_is_stopped_by_the_memory_limit() -> None:
    result = run("b = bytearray(10 * 1024 ** 3)\nprint('allocated')\n")
    assert result.stopped_by is StopReason.MEMORY and "allocated" not in result.stdout
    assert "memory limit (512 MB)" in result.message
    # bytearray zero-fills each page: a smaller cap keeps the CPU time it costs well under 2 s
    grow = run("x = []\nwhile True:\n    x.append(bytearray(2 ** 24))\n",
               Limits(cpu_s=2, wall_s=8, memory_mb=128))
    assert grow.stopped_by is StopReason.MEMORY, (grow.message, grow.stderr[-300:])


@needs_sandbox
def test_an_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    result = run(code, Limits(cpu_s=1, wall_s=30))  # a busy machine may give 1 s of CPU slowly
    assert result.stopped_by is StopReason.CPU and result.exit_status is None
    assert 0.8 <= result.cpu_s < 3 and "CPU time limit (1 s)" in result.message


@needs_sandbox
def test_a_sleep_is_stopped_by_the_wall_limit() -> None:
    result = run("import time\ntime.sleep(60)\n", Limits(cpu_s=1, wall_s=1.5))
    assert result.stopped_by is StopReason.WALL and result.exit_status is None
    assert 1.5 <= result.wall_s < 4 and "wall-clock limit (1.5 s)" in result.message


@needs_sandbox
def test_a_1_gb_print_is_stopped_by_the_output_limit() -> None:
    code = "import sys\nchunk = 'x' * 2 ** 20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    result = run(code)
    assert result.stopped_by is StopReason.OUTPUT and result.stdout_truncated
    assert len(result.stdout) == FAST.output_bytes and result.wall_s < FAST.wall_s


# -- the command line -------------------------------------------------------------------------


def ragline_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ragline.cli", "sandbox", "run", *args],
                          capture_output=True, text=True, timeout=60)


@needs_sandbox
def test_cli_reports_the_exit_status_and_the_limit(tmp_path: Path) -> None:
    ok = tmp_path / "ok.py"
    ok.write_text("import sys\nprint(open('/input/ok.py').read()[:6])\nsys.exit(3)\n")
    done = ragline_sandbox(str(ok), "--allow-file", str(ok))
    assert done.returncode == 3 and done.stdout.startswith("import")
    assert "exited with status 3" in done.stderr
    loop = tmp_path / "loop.py"
    loop.write_text("while True:\n    pass\n")
    done = ragline_sandbox(str(loop), "--cpu", "1", "--json")
    assert done.returncode == 124 and "Traceback" not in done.stderr
    assert '"stopped_by": "cpu"' in done.stdout


def test_cli_fails_cleanly_on_a_missing_file(tmp_path: Path) -> None:
    done = ragline_sandbox(str(tmp_path / "missing.py"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot read" in done.stderr
