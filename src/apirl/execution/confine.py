"""Linux confinement of one snippet: namespaces, locked read-only mounts, no capabilities, seccomp, cgroups.

The sandbox (`sandbox.py`) forks one process tree per snippet from a worker that has torch preloaded; this
module holds the kernel mechanisms that tree goes through, in the order it goes through them:

1. `enter_namespaces` (the shield C): new user, network, mount and PID namespaces, with IPC, UTS and cgroup
   ones (the best set the kernel allows); the harness's uid and gid mapped to themselves; every mount made
   read-only and device-less except the snippet's own directory, a private /dev/shm and the harmless character
   devices; /run (daemons' sockets and FIFOs) covered by an empty read-only tmpfs.
2. `lock_mounts` (C's child: the new PID namespace's init, or the snippet itself without one): a fresh /proc
   for the new PID namespace, then a *second* user + mount namespace. Mounts copied into a less privileged
   mount namespace are locked by the kernel: they cannot be unmounted (to uncover the host's /proc) and their
   read-only flag cannot be cleared (mount_setattr). C made itself non-dumpable once its ids were mapped, and
   the init inherits it, so the snippet, which keeps its uid, cannot ptrace either or open its /proc/<pid>/mem
   to act with the first namespace's rights; both die with their parent (`die_with_parent`).
3. `drop_privileges` (the snippet process S, last, just before the code runs): no_new_privs, an empty
   capability bounding set, no capabilities at all, then a seccomp filter (libseccomp through `pyseccomp`,
   ctypes, no compiler) that refuses: every mount and namespace syscall (a third line behind the lock),
   keyrings, bpf, perf events, userfaultfd, ptrace and process_vm_*, kernel modules and kexec, io_uring (it
   would bypass the socket filter), and sockets of any family but AF_INET/AF_INET6 inside the empty network
   namespace (none at all without one): so no UNIX path socket of the host, no vsock to the hypervisor, no
   netlink. socketpair(AF_UNIX), which multiprocessing's pipes use, stays allowed.

Cgroups (`SnippetCgroups`), made by a root worker for the snippets it runs one at a time: pids.max bounds
forks and threads (RLIMIT_NPROC does not bind uid 0), and a memory limit bounds the snippet's memory *with*
shared memory, memfds and tmpfs pages, which RLIMIT_AS does not see. cgroup v1 (one hierarchy per controller)
or v2 (one hierarchy with the controllers enabled at the root).

Every step reports whether the kernel allowed it; the sandbox publishes the result (`Sandbox.isolation`).
Python 3.11 has no os.unshare / os.mount, so the syscalls go through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_mod
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_CLONE_NEWCGROUP, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x02000000, 0x04000000, 0x08000000
_CLONE_NEW_ANY = (CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, _CLONE_NEWCGROUP, _CLONE_NEWUTS,
                  _CLONE_NEWIPC)  # (a time namespace cannot be made by clone(), only by unshare)
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NODEV, _AT_RECURSIVE, _AT_FDCWD = 0x1, 0x4, 0x8000, -100
_SYS_MOUNT_SETATTR = 442  # the same on x86_64, arm64 and every architecture of the unified table (not alpha)
_SAFE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PR_SET_DUMPABLE, _PR_SET_PDEATHSIG, _PR_CAPBSET_READ, _PR_CAPBSET_DROP = 4, 1, 23, 24
_PR_SET_SECUREBITS, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 28, 38, 47, 4
# NOROOT (+locked): uid 0 gains no capabilities by exec; NO_SETUID_FIXUP (+locked); KEEP_CAPS_LOCKED.
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

GUARDS = ("network_namespace", "pid_namespace", "readonly_fs", "fresh_proc", "locked_mounts", "no_capabilities",
          "seccomp")

# Refused outright (EPERM): changing mounts or namespaces, and kernel interfaces a snippet has no use for that
# reach outside its namespaces. io_uring is refused with ENOSYS, which libraries treat as "not available".
_DENIED = ("mount", "umount2", "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
           "fspick", "pivot_root", "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf",
           "perf_event_open", "userfaultfd", "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load",
           "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
           "acct", "quotactl", "name_to_handle_at", "open_by_handle_at", "lookup_dcookie", "syslog")
_NOT_AVAILABLE = ("io_uring_setup", "io_uring_enter", "io_uring_register", "clone3")  # clone3: glibc falls back
_MAX_FAMILY = 64  # address families are small integers (AF_MAX is 46 on Linux 6.x)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    return _libc().unshare(flags) == 0


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> bool:
    def enc(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    return _libc().mount(enc(source), enc(target), enc(fstype), flags, None) == 0


def _set_attr(path: str, set_: int = 0, clear: int = 0, recursive: bool = False) -> bool:
    attr = _MountAttr(set_, clear, 0, 0)
    return _libc().syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), _AT_RECURSIVE if recursive else 0,
                           ctypes.byref(attr), ctypes.sizeof(attr)) == 0


def _write(path: str, text: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, text.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _map_ids(uid: int, gid: int) -> bool:
    """Map the harness's ids to themselves in the new user namespace: a nested one needs a mapped creator."""
    return (_write("/proc/self/setgroups", "deny") and _write("/proc/self/uid_map", f"{uid} {uid} 1")
            and _write("/proc/self/gid_map", f"{gid} {gid} 1"))


def enter_namespaces(sandbox_dir: str, use_namespaces: bool) -> dict[str, bool]:
    """In the shield C: new user/net/mount/pid namespaces (best first), then a read-only view of every mount
    except the sandbox directory and a private /dev/shm (`<sandbox>-shm`). Returns what worked."""
    got = dict.fromkeys(GUARDS, False)
    if not use_namespaces:
        return got
    uid, gid = os.geteuid(), os.getegid()
    for flags in (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID,
                  CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS, CLONE_NEWUSER | CLONE_NEWNET):
        # + IPC (SysV shared memory, semaphores, message queues of the host, and left behind for the next
        # snippet), UTS and cgroup namespaces, where the kernel has them
        if not (_unshare(flags | _CLONE_NEWIPC | _CLONE_NEWUTS | _CLONE_NEWCGROUP) or _unshare(flags)):
            continue
        got["network_namespace"] = True
        got["pid_namespace"] = bool(flags & CLONE_NEWPID)
        mapped = _map_ids(uid, gid)
        if flags & CLONE_NEWNS:
            got["readonly_fs"] = _mount(None, "/", None, _MS_REC | _MS_PRIVATE) and _readonly_view(sandbox_dir)
            got["mapped"] = mapped
        break
    return got


def _readonly_view(sandbox_dir: str) -> bool:
    """Every mount read-only and without devices, then writable binds of the sandbox directory and of a private
    /dev/shm (multiprocessing's locks; the snippet's sibling directory `<sandbox>-shm`), and the harmless
    character devices. Devices matter because the snippet keeps the harness's uid: as root it could otherwise
    open the disk (/dev/vda) or the kernel log, which a read-only mount does not stop."""
    if not (_mount(sandbox_dir, sandbox_dir, None, _MS_BIND | _MS_REC)
            and _set_attr("/", set_=_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NODEV, recursive=True)
            and _set_attr(sandbox_dir, clear=_MOUNT_ATTR_RDONLY, recursive=True)):
        return False
    shm = sandbox_dir + "-shm"
    if os.path.isdir(shm) and os.path.isdir("/dev/shm") and _mount(shm, "/dev/shm", None, _MS_BIND):
        _set_attr("/dev/shm", clear=_MOUNT_ATTR_RDONLY)
    for device in _SAFE_DEVICES:
        if os.path.exists(device) and _mount(device, device, None, _MS_BIND):
            _set_attr(device, clear=_MOUNT_ATTR_NODEV)
    for runtime in ("/run", "/var/run"):  # daemons' sockets and FIFOs (a FIFO is writable on a read-only mount)
        if os.path.isdir(runtime) and not os.path.islink(runtime):
            _mount("tmpfs", runtime, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    return True


def lock_mounts(got: dict[str, bool]) -> None:
    """In C's child (the PID namespace's init, or the snippet): a fresh /proc, then a nested user + mount
    namespace that locks every mount as it is now."""
    if got["pid_namespace"] and got["readonly_fs"]:
        # The host's /proc would show every host process's command line; this one shows the namespace only.
        # Read-only: the snippet keeps the harness's uid, and sysctls (/proc/sys) check the uid, not capabilities.
        flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        got["fresh_proc"] = _mount("proc", "/proc", "proc", flags)
        if not got["fresh_proc"]:  # refused (a container's masked /proc): no /proc at all rather than the host's
            _mount("tmpfs", "/proc", "tmpfs", flags)
    mapped = got.pop("mapped", False)  # a nested user namespace needs a creator with a mapped uid
    if got["readonly_fs"] and mapped:
        got["locked_mounts"] = _unshare(CLONE_NEWUSER | CLONE_NEWNS)


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (a worker killed mid-snippet leaves no snippet running)."""
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def set_dumpable(dumpable: bool) -> None:
    """A non-dumpable process cannot be ptraced or have its /proc/<pid>/mem opened by one of the same uid."""
    _libc().prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)


def drop_privileges(got: dict[str, bool], seccomp_filter: Any | None) -> None:
    """In the snippet process, last: no new privileges, no capabilities in any set, then the seccomp filter."""
    libc = _libc()
    nnp = libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno_mod.EINVAL:
            break  # past the last capability this kernel knows
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    bounding_empty = libc.prctl(_PR_CAPBSET_READ, 0, 0, 0, 0) == 0  # CAP_CHOWN, the first, is gone
    got["no_capabilities"] = nnp and bounding_empty and libc.capset(ctypes.byref(header), data) == 0
    if seccomp_filter is not None and nnp:
        try:
            seccomp_filter.load()
            got["seccomp"] = True
        except OSError:
            got["seccomp"] = False


def seccomp_filter(network_namespace: bool) -> Any | None:
    """The snippet's syscall filter (built once per worker; `load()` in each snippet), or None when libseccomp
    is missing. In an empty network namespace AF_INET/AF_INET6 sockets reach nothing and stay allowed (libraries
    probe with them); without one, no socket at all."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError):  # pyseccomp not installed, or libseccomp.so.2 missing
        return None
    try:
        filt = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in _DENIED:
            with contextlib.suppress(OSError, ValueError):  # a syscall this architecture lacks
                filt.add_rule(seccomp.ERRNO(errno_mod.EPERM), name)
        for name in _NOT_AVAILABLE:
            with contextlib.suppress(OSError, ValueError):
                filt.add_rule(seccomp.ERRNO(errno_mod.ENOSYS), name)
        for flag in _CLONE_NEW_ANY:  # clone() that would make a namespace
            filt.add_rule(seccomp.ERRNO(errno_mod.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        allowed = {socket.AF_INET, socket.AF_INET6} if network_namespace else set()
        for family in range(_MAX_FAMILY):
            if family not in allowed:
                filt.add_rule(seccomp.ERRNO(errno_mod.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
            if family != socket.AF_UNIX:
                filt.add_rule(seccomp.ERRNO(errno_mod.EAFNOSUPPORT), "socketpair",
                              seccomp.Arg(0, seccomp.EQ, family))
        for call in ("socket", "socketpair"):  # the kernel reads an int: a family with high bits set is refused
            filt.add_rule(seccomp.ERRNO(errno_mod.EAFNOSUPPORT), call, seccomp.Arg(0, seccomp.GE, _MAX_FAMILY))
        return filt
    except (OSError, ValueError, RuntimeError):
        return None


# ------------------------------------------------------------------------------------------------------------
# Cgroups: one set per worker, reused by its snippets one at a time.


@dataclass
class SnippetCgroups:
    """The cgroups a root worker puts each snippet in; `paths` is empty where none can be made."""

    paths: list[Path] = field(default_factory=list)
    memory: Path | None = None
    version: int = 0
    _oom_kills: int = 0

    @property
    def process_limit(self) -> bool:
        return any((p / "pids.max").is_file() for p in self.paths)

    def join(self, pid: int) -> None:
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid))

    def before_snippet(self) -> None:
        self._oom_kills = self.oom_kills()

    def oom_kills(self) -> int:
        """How many processes the memory limit has killed so far (v1 memory.oom_control, v2 memory.events)."""
        if self.memory is None:
            return 0
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def memory_killed(self) -> bool:
        """Whether the last snippet was killed for going over its memory limit."""
        return self.memory is not None and self.oom_kills() > self._oom_kills

    def remove(self) -> None:
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.rmdir()
        self.paths, self.memory = [], None


def cgroup_roots() -> tuple[int, dict[str, Path]]:
    """(version, controller -> writable hierarchy) for pids and memory; (0, {}) when none is usable."""
    base = Path("/sys/fs/cgroup")
    v1 = {name: base / name for name in ("pids", "memory")
          if (base / name / "cgroup.procs").is_file() and os.access(base / name, os.W_OK)}
    if v1:
        return 1, v1
    with contextlib.suppress(OSError):
        enabled = (base / "cgroup.subtree_control").read_text().split()
        if os.access(base, os.W_OK):
            return 2, {name: base for name in ("pids", "memory") if name in enabled}
    return 0, {}


def make_cgroups(name: str, max_processes: int, memory_mb: int) -> SnippetCgroups:
    """Cgroups `name` with pids.max and a memory limit (swap included), for a root worker; empty otherwise."""
    groups = SnippetCgroups()
    if os.getuid() != 0:
        return groups
    version, roots = cgroup_roots()
    limit = str(memory_mb * 1024 * 1024)
    settings = {("pids", 1): {"pids.max": str(max_processes)},
                ("memory", 1): {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit},
                ("pids", 2): {"pids.max": str(max_processes)},
                ("memory", 2): {"memory.max": limit, "memory.swap.max": "0"}}
    for controller, root in roots.items():
        path = root / name
        required, *optional = settings[controller, version].items()
        try:
            path.mkdir(exist_ok=True)
            (path / required[0]).write_text(required[1])
        except OSError:
            if path not in groups.paths:  # cgroup v2: one directory for both controllers, keep the first's
                with contextlib.suppress(OSError):
                    path.rmdir()
            continue
        for file, value in optional:  # swap accounting exists only where the kernel was booted with it
            with contextlib.suppress(OSError):
                (path / file).write_text(value)
        if path not in groups.paths:
            groups.paths.append(path)
        if controller == "memory":
            groups.memory = path
    groups.version = version
    return groups


def remove_cgroups(name: str) -> None:
    """Remove a dead worker's cgroups (they are empty once its processes are gone)."""
    for root in cgroup_roots()[1].values():
        with contextlib.suppress(OSError):
            (root / name).rmdir()
