"""The sandbox's seccomp filter, compiled with libseccomp (Debian's `libseccomp2`) through ctypes.

The filter is a deny list on top of the namespaces: the calls a contained program has no use for
and that widen the kernel surface it can reach (ptrace, mounts, new namespaces, kernel keyrings,
eBPF, io_uring, module loading, terminal injection) fail with EPERM, and sockets of any family
but AF_UNIX fail with EACCES. A call from another ABI (32-bit `int 0x80`, x32) kills the process:
libseccomp's default for a foreign architecture.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from functools import cache

_ACT_ALLOW = 0x7FFF0000
_CMP_NE = 1
_CMP_MASKED_EQ = 7
_SCMP_ERROR = -1
_AF_UNIX = 1
_TIOCSTI = 0x5412  # push bytes into a terminal's input: the classic way out of a sandbox
_TIOCLINUX = 0x541C

_DENIED = (
    # another process's memory or a way around the PID namespace
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # the mount table and namespaces (new ones are refused below, on clone's flags)
    "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount",
    "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "name_to_handle_at", "open_by_handle_at",
    # kernel surfaces with a long record of privilege escalations
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init",
    # the machine itself
    "reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl", "ioperm", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "vhangup",
    "lookup_dcookie", "nfsservctl", "uselib", "personality",
)
# clone() flags that make a namespace: a new user namespace would hand the program capabilities
_CLONE_NAMESPACES = (0x10000000, 0x00020000, 0x20000000, 0x40000000, 0x08000000, 0x04000000,
                     0x02000000)  # NEWUSER, NEWNS, NEWPID, NEWNET, NEWIPC, NEWUTS, NEWCGROUP


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


@cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def seccomp_available() -> str | None:
    """None when the filter can be built here, else why not."""
    if _library() is None:
        return "libseccomp is not installed (Debian: apt-get install libseccomp2)"
    return None


def _add(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: _ArgCmp) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number == _SCMP_ERROR:  # not a call on this architecture
        return
    array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
    if rc < 0:
        raise OSError(-rc, f"seccomp rule for {name}: {os.strerror(-rc)}")


def seccomp_filter_fd() -> int:
    """A file descriptor (a memfd, at offset 0) holding the compiled BPF program, for
    `bwrap --seccomp FD`. The caller closes it."""
    lib = _library()
    if lib is None:
        raise OSError(errno.ENOENT, seccomp_available())
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    try:
        deny = _errno_action(errno.EPERM)
        for name in _DENIED:
            _add(lib, ctx, deny, name)
        for flag in _CLONE_NAMESPACES:
            _add(lib, ctx, deny, "clone", _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))
        # clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone
        _add(lib, ctx, _errno_action(errno.ENOSYS), "clone3")
        _add(lib, ctx, _errno_action(errno.EACCES), "socket", _ArgCmp(0, _CMP_NE, _AF_UNIX, 0))
        for request in (_TIOCSTI, _TIOCLINUX):  # the mask: only the low 32 bits are the request
            _add(lib, ctx, deny, "ioctl", _ArgCmp(1, _CMP_MASKED_EQ, 0xFFFFFFFF, request))
        fd = os.memfd_create("ragline-seccomp", os.MFD_CLOEXEC)
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            os.close(fd)
            raise OSError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    finally:
        lib.seccomp_release(ctx)
