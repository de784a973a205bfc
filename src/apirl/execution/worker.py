"""The sandbox's worker process and the tree it forks per snippet (shield C, init I, snippet S): the child side
of `apirl.execution.sandbox`, whose docstring has the design and the threat model; `confine` has the kernel
mechanisms. A worker is started as a fresh interpreter (`python -c`), preloads the heavy modules once, then
reads jobs as JSON lines on stdin and answers each on stdout."""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import json
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from apirl.execution import confine
from apirl.execution.failures import classify


class NetworkBlocked(ConnectionError):
    """Raised by the socket guard (used only where network namespaces are refused)."""


# ------------------------------------------------------------------------------------------------------------
# The worker: preloads modules, then runs one job at a time in forked, isolated children.

_MIB = 1024 * 1024


class _TailBuffer:
    """The last `limit` bytes written, in bounded memory, plus how many were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            cut = len(self.data) - self.limit
            del self.data[:cut]
            self.dropped += cut

    def text(self) -> str:
        if len(self.data) > self.limit:
            self.dropped += len(self.data) - self.limit
            del self.data[:-self.limit]
        head = f"[... {self.dropped} bytes truncated ...]\n" if self.dropped else ""
        return head + self.data.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------------------------
# The fallback network block, and what the snippet process reports.


def _install_socket_guard() -> None:
    """The fallback network block: weak (ctypes or a subprocess bypass it), but stops library calls. Only used
    where seccomp is missing too; with seccomp, a sandbox without a network namespace creates no socket."""
    import socket

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise NetworkBlocked("network access is disabled in the sandbox")

    socket.socket.connect = blocked  # type: ignore[method-assign]
    socket.socket.connect_ex = blocked  # type: ignore[method-assign]
    socket.create_connection = blocked
    socket.getaddrinfo = blocked


class _MissRecorder:
    """Last on sys.meta_path, so asked only after every real finder failed: the top-level names the import
    system could not find while the snippet ran (a lookup by importlib.util.find_spec is a probe, not a miss)."""

    def __init__(self) -> None:
        self.missed: set[str] = set()

    def find_spec(self, name: str, path: Any = None, target: Any = None, getframe: Any = sys._getframe) -> None:
        caller = getframe(2)  # bound at definition: the snippet may rebind sys._getframe
        if caller.f_code.co_name == "_find_and_load_unlocked":
            self.missed.add(name.partition(".")[0])
        return None


# A snippet that runs is credited with the models it loaded only if it opened files of their repositories'
# snapshots in the hub (`loaded_repos`); at most this many distinct paths are recorded.
_LOADS_KEPT = 256


def _load_recorder(prefix: str, kept: int = _LOADS_KEPT, type_: Any = type, str_: Any = str, bytes_: Any = bytes,
                   len_: Any = len, fspath: Any = os.fspath) -> tuple[Callable[[str, tuple[Any, ...]], None],
                                                                      dict[str, None]]:
    """An audit hook (`sys.addaudithook`: the snippet cannot remove it) that records, in order, the paths under
    `prefix` (`hub_prefix()`) that the snippet's process opens, relative to it; and the dict it records into. It
    is a closure whose every name is bound here, before the code runs. Library-agnostic: the loaders
    (transformers, diffusers, sentence-transformers...) open a repository's config with Python's `open`."""
    opened: dict[str, None] = {}
    skip = len_(prefix)
    busy = [False]  # fspath of a PathLike runs its __fspath__, which must not record itself

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or busy[0]:
            return
        busy[0] = True
        try:  # an exception here would abort the snippet's open: never raise
            path = args[0]
            if type_(path) is not str_ and type_(path) is not bytes_:
                path = fspath(path)  # a PathLike; an fd or None raises and is skipped
            if type_(path) is bytes_:
                path = bytes_.decode(path, "utf-8", "replace")
            if type_(path) is str_ and len_(opened) < kept and str_.startswith(path, prefix) and \
                    str_.find(path, "\n") < 0:  # a newline would forge a second record line
                opened[path[skip:]] = None
        except BaseException:
            pass
        busy[0] = False

    return hook, opened


def hub_prefix() -> str | None:
    """Where the hub's model repositories lie, spelled as the loaders spell it: huggingface_hub's cache directory
    (computed when the worker preloaded it), else `$HF_HOME/hub`; None without either."""
    constants = sys.modules.get("huggingface_hub.constants")
    cache = getattr(constants, "HF_HUB_CACHE", None) if constants is not None else None
    if not cache and os.environ.get("HF_HOME"):
        cache = os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return cache.rstrip("/") + "/models--" if cache else None


def loaded_repos(opened: str | None, prefix: str) -> tuple[str, ...]:
    """The model ids whose hub repository holds a file the snippet opened (`opened`: paths relative to `prefix`,
    one a line). Only a file of a snapshot counts (`org--name/snapshots/<rev>/...`: not `refs/`, which a cache
    lookup reads before any load), and it must exist, without `..`: a crafted path credits no repository."""
    repos: dict[str, None] = {}
    for relative in (opened or "").split("\n"):
        parts = relative.split("/")
        if len(parts) < 4 or parts[1] != "snapshots" or any(part in ("", ".", "..") for part in parts) or \
                not os.path.isfile(prefix + relative):
            continue
        repos[parts[0].replace("--", "/")] = None
    return tuple(repos)


# The report is one line on fd 3: "<token> <outcome>" then tab-separated fields, each escaped with
# unicode_escape (no tab, newline or non-ASCII byte is left in a field). Only the snippet process writes it, once.
_REPORT_FIELDS = ("type", "mro", "message", "errno", "module_name", "missed", "origin", "code", "line", "loaded")
_REPORT_LIMIT = 64 * 1024  # bytes of the report pipe kept


def _run_snippet(code: str, token: str, cfg: dict[str, Any], isolation: dict[str, bool], sandbox_dir: str,
                 result_fd: int, seccomp_filter: Any | None) -> None:
    """Process S: limits, privileges, environment, then the code. Writes `ok` only if the code returns normally.

    Everything the report uses is bound here, before the code runs, to built-in functions and methods of
    built-in types, which the code cannot rebind (it can rebind json.dumps, os.write or builtins.isinstance, and
    on the old path that forged `ok`); the outcome word is fixed bytes chosen by which branch ran.
    """
    import traceback

    write, exit_now, getpid, exc_info = os.write, os._exit, os.getpid, sys.exc_info
    print_exception = traceback.print_exception
    type_, str_, int_, isinstance_, repr_ = type, str, int, isinstance, repr
    me = getpid()
    head = token.encode() + b" "

    def field(value: Any, limit: int = 2000) -> bytes:
        text = value if type_(value) is str_ else "" if value is None else repr_(value) if \
            type_(value) is int_ else "?"
        return b"\t" + str_.encode(text[:limit], "unicode_escape")

    def report(outcome: bytes, *fields: bytes) -> None:
        if getpid() == me:  # a forked grandchild running to the end must not speak for the snippet
            try:  # noqa: SIM105 (contextlib.suppress is a module attribute the snippet can rebind)
                write(result_fd, head + outcome + b"".join(fields) + b"\n")
            except BaseException:
                pass

    with open("/proc/self/statm") as f:
        base_vm = int(f.read().split()[0]) * resource.getpagesize()
    os.chdir(sandbox_dir)
    os.environ.update(HOME=sandbox_dir, TMPDIR=sandbox_dir, PWD=sandbox_dir)
    tempfile.tempdir = None
    cpu_s = int(cfg["cpu_s"])
    for limit, value in ((resource.RLIMIT_AS, base_vm + cfg["memory_mb"] * _MIB),
                         (resource.RLIMIT_CPU, (cpu_s, cpu_s + 1)),
                         (resource.RLIMIT_FSIZE, cfg["max_file_mb"] * _MIB),
                         (resource.RLIMIT_NPROC, cfg["max_processes"]),
                         (resource.RLIMIT_NOFILE, cfg["max_open_files"]),
                         (resource.RLIMIT_CORE, 0)):
        soft, hard = value if isinstance(value, tuple) else (value, value)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (soft, hard))
    if os.geteuid() != 0:  # its parents are not dumpable; a non-root snippet must be, to read its own
        confine.set_dumpable(True)  # /proc/self/fd (subprocess, multiprocessing). Root can anyway.
    confine.drop_privileges(isolation, seccomp_filter)
    missing = [guard for guard, expected in cfg["expected_isolation"].items() if expected and not isolation[guard]]
    if missing:  # fail closed: this snippet did not get what the worker's probe did (a transient refusal)
        report(b"unconfined", field(",".join(missing)))
        exit_now(0)
    if not isolation["network_namespace"] and not isolation["seccomp"]:
        _install_socket_guard()
    recorder = _MissRecorder()
    sys.meta_path.append(recorder)
    prefix = hub_prefix()
    hook, opened = _load_recorder(prefix) if prefix else (None, {})
    if hook is not None:
        sys.addaudithook(hook)
    join_lines, blanks = "\n".join, (field(None),) * (len(_REPORT_FIELDS) - 1)
    sys.argv = ["<snippet>"]
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(code, "<snippet>", "exec"), namespace)
    except SystemExit as exc:
        _flush_std()
        try:
            report(b"exit", field(None), field(None), field(None), field(None), field(None), field(None),
                   field(None), field(str_(exc.code), 200))
        except BaseException:
            report(b"exit")
    except BaseException as exc:
        try:  # noqa: SIM105 (contextlib.suppress is a module attribute the snippet can rebind)
            print_exception(exc)
        except BaseException:
            pass
        _flush_std()
        try:
            cls = type_(exc)
            module = exc.name if isinstance_(exc, ImportError) else None
            top = module.partition(".")[0] if type_(module) is str_ else ""
            tb = exc_info()[2]  # the interpreter's traceback: an exception class can fake `__traceback__`
            while type_(tb) is TracebackType and type_(tb.tb_next) is TracebackType:
                tb = tb.tb_next
            origin = tb.tb_frame.f_code.co_filename if type_(tb) is TracebackType else None
            line = tb.tb_lineno if type_(tb) is TracebackType else None
            errno = exc.errno if isinstance_(exc, OSError) else None
            report(b"exception", field(cls.__name__), field(",".join(c.__name__ for c in cls.__mro__)),
                   field(str_(exc)), field(errno), field(module), field("1" if top in recorder.missed else ""),
                   field(origin, 500), field(None), field(line))
        except BaseException:
            report(b"exception")
    else:
        _flush_std()
        report(b"ok", *blanks, field(join_lines(opened), 32000))
    exit_now(0)


def _parse_report(data: bytes, token: str) -> dict[str, Any] | None:
    """The snippet's report, found by its token wherever it is in the pipe's bytes (the snippet may have written
    anything before it, but cannot know the token); None when there is none."""
    at = data.find(token.encode() + b" ")
    if at < 0:
        return None
    line = data[at + len(token) + 1:].split(b"\n", 1)[0]
    outcome, *raw = line.split(b"\t")
    fields = dict.fromkeys(_REPORT_FIELDS)
    for name, value in zip(_REPORT_FIELDS, raw, strict=False):
        try:
            fields[name] = value.decode("unicode_escape") if value else None
        except UnicodeDecodeError:
            fields[name] = None
    errno = fields["errno"]
    return {**fields, "outcome": outcome.decode("ascii", "replace"),
            "mro": (fields["mro"] or "").split(",") if fields["mro"] else [],
            "errno": int(errno) if errno and errno.lstrip("-").isdigit() and errno.isascii() else None,
            "missed": fields["missed"] == "1"}


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (after the snippet ran: contextlib.suppress is an attribute it can rebind)
            stream.flush()
        except BaseException:
            pass


def _run_shield(code: str, token: str, cfg: dict[str, Any], sandbox_dir: str, cgroups: confine.SnippetCgroups,
                fds: tuple[int, int, int], seccomp_filters: dict[bool, Any], worker: int) -> None:
    """Process C: new session, cgroups, namespaces, then S; exits the way S ended. Never returns.

    With a PID namespace C's child is the namespace's init I, which locks the mounts and forks S: S must not be
    init itself, because the kernel drops SIGKILL sent to init from inside, so `os.kill(os.getpid(), 9)` would
    not end it. Without one, C's child locks the mounts and is S.
    """
    out_w, err_w, res_w = fds
    try:
        confine.die_with_parent()
        if os.getppid() != worker:  # the worker died before the line above
            os._exit(125)
        os.setsid()
        cgroups.join(os.getpid())
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(res_w, 3)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # the worker's pipes and all else
        isolation = confine.enter_namespaces(sandbox_dir, cfg["namespaces"])
        # Not before: a non-dumpable process cannot write its own uid_map. C and I (which inherits this) hold
        # rights over the first namespace, which the snippet must not borrow by ptrace or /proc/<pid>/mem.
        confine.set_dumpable(False)
        shield = os.getpid()
        pid = os.fork()
        if pid == 0:
            confine.die_with_parent()
            if os.getppid() != shield and not isolation["pid_namespace"]:
                os._exit(125)
            confine.lock_mounts(isolation)
            seccomp_filter = seccomp_filters.get(isolation["network_namespace"])
            if isolation["pid_namespace"]:
                pid = os.fork()
                if pid == 0:
                    _run_snippet(code, token, cfg, isolation, sandbox_dir, 3, seccomp_filter)
                os.close(3)
                _relay(pid)
            _run_snippet(code, token, cfg, isolation, sandbox_dir, 3, seccomp_filter)
        os.close(3)
        _relay(pid)
    except BaseException:
        os._exit(125)


def _relay(pid: int) -> None:
    """Wait for `pid` and exit with its code, or 128 + the signal that killed it (init cannot kill itself)."""
    _, status = os.waitpid(pid, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status))


_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL}


def remove_tree(path: str) -> bool:
    """Remove a snippet's directory whatever the snippet left in it; never raises. shutil.rmtree recurses once
    per level (RecursionError past ~1000 nested directories) and gives up on directories without permissions:
    then `chmod -R u+rwx` and `rm -rf`, which walk any depth."""
    try:
        shutil.rmtree(path)
        return True
    except FileNotFoundError:
        return True
    except BaseException:
        pass
    try:
        subprocess.run(["chmod", "-R", "u+rwx", path], capture_output=True, timeout=120, check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True, timeout=120, check=False)
    except BaseException:
        return False
    return not os.path.lexists(path)


def _execute(code: str, cfg: dict[str, Any], cgroups: confine.SnippetCgroups, workdir: str,
             seccomp_filters: dict[bool, Any]) -> dict[str, Any]:
    """Run one snippet from the worker and build the ExecResult fields."""
    token = secrets.token_hex(16)
    sandbox_dir = tempfile.mkdtemp(prefix="snippet-", dir=workdir)
    os.mkdir(sandbox_dir + "-shm", 0o700)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    cgroups.before_snippet()
    start = time.monotonic()
    worker = os.getpid()
    pid = os.fork()
    if pid == 0:
        _run_shield(code, token, cfg, sandbox_dir, cgroups, (out_w, err_w, res_w), seccomp_filters, worker)
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    limit = cfg["output_kb"] * 1024
    buffers = {out_r: _TailBuffer(limit), err_r: _TailBuffer(limit)}
    report_data = bytearray()
    pidfd = os.pidfd_open(pid)
    open_fds = {out_r, err_r, res_r}
    deadline = start + cfg["timeout_s"]
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([*open_fds, pidfd], [], [], remaining)
        if pidfd in ready:
            break
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
            elif fd == res_r:
                if len(report_data) < _REPORT_LIMIT:
                    report_data += chunk
            else:
                buffers[fd].add(chunk)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # C is at worst a zombie here, so its pgid cannot have been reused
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - start
    for fd in open_fds:  # what was written before the end; bounded, background writers are dead now
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError):
            for _ in range(64):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                if fd == res_r:
                    report_data += chunk[:max(0, _REPORT_LIMIT - len(report_data))]
                else:
                    buffers[fd].add(chunk)
    for fd in (out_r, err_r, res_r, pidfd):
        os.close(fd)
    memory_killed = cgroups.memory_killed()
    fields: dict[str, Any] = {"stdout_tail": buffers[out_r].text(), "stderr_tail": buffers[err_r].text(),
                              "seconds": round(seconds, 4)}
    report = _parse_report(bytes(report_data), token)
    if timed_out:
        return {**fields, "status": "timeout", "message": f"timed out after {cfg['timeout_s']} s"}
    if report is None:
        if memory_killed:
            return {**fields, "status": "resource_limit", "error_type": "SIGKILL",
                    "message": f"killed for using more than {cfg['memory_mb']} MiB (memory cgroup)"}
        cpu = usage.ru_utime + usage.ru_stime
        code = os.waitstatus_to_exitcode(status)  # -N: the shield itself was killed by signal N
        number = -code if code < 0 else code - 128 if 128 < code < 128 + signal.NSIG else 0  # _exit(137) too
        if number:
            name = signal.strsignal(number) or f"signal {number}"
            with contextlib.suppress(ValueError):
                name = signal.Signals(number).name
            over_cpu = number == signal.SIGKILL and cpu >= cfg["cpu_s"]
            if number in (signal.SIGXCPU, signal.SIGXFSZ) or over_cpu:
                return {**fields, "status": "resource_limit", "error_type": name,
                        "message": f"killed by {name} (resource limit)"}
            if number in _CRASH_SIGNALS:
                return {**fields, "status": "runtime_error", "error_type": name,
                        "message": f"crashed with {name}"}
            return {**fields, "status": "early_exit", "error_type": name,
                    "message": f"killed by {name} before the last statement"}
        return {**fields, "status": "early_exit",
                "message": f"exited with code {code} before the last statement"}
    if report["outcome"] == "ok":
        prefix = hub_prefix()
        return {**fields, "status": "ok", "loaded": list(loaded_repos(report["loaded"], prefix) if prefix else ())}
    if report["outcome"] == "unconfined":
        return {**fields, "status": "early_exit", "error_type": "SandboxError",
                "message": f"not run: the sandbox could not confine this snippet ({report['type']} refused)"}
    if report["outcome"] == "exit":
        return {**fields, "status": "early_exit", "error_type": "SystemExit",
                "message": f"SystemExit({report['code']}) before the last statement"}
    error_type = report["type"] or "unknown"
    top = (report["module_name"] or "").partition(".")[0]
    # A real miss, raised where the import is: by library code, or by an import statement of the snippet that
    # names the module (not a `raise` after an import that failed earlier and was caught).
    genuine = report["missed"] and (report["origin"] != "<snippet>" or _imports_at(code, report["line"], top))
    status_name = classify(error_type, report["message"] or "", mro=report["mro"], errno=report["errno"],
                           module_name=report["module_name"], unsupported=cfg["unsupported"],
                           missed=[top] if genuine else [])
    return {**fields, "status": status_name, "error_type": error_type, "message": report["message"] or "",
            "origin": report["origin"]}


def _imports_at(code: str, line: str | None, module: str) -> bool:
    """Whether the statement of `code` at `line` is an import of `module` (or of one of its submodules)."""
    if not line or not line.isdigit() or not module:
        return False
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    number = int(line)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno <= number <= (node.end_lineno or number):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(name.partition(".")[0] == module for name in names):
                return True
    return False


def _probe_isolation(cfg: dict[str, Any], cgroups: confine.SnippetCgroups, workdir: str,
                     seccomp_filters: dict[bool, Any]) -> dict[str, bool]:
    """What the kernel allows here, measured once per worker by a throwaway child that goes through every step
    a snippet does (namespaces, locked mounts, dropped privileges, seccomp)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            probe_dir = tempfile.mkdtemp(dir=workdir)
            got = confine.enter_namespaces(probe_dir, cfg["namespaces"])
            child = os.fork()
            if child == 0:
                try:
                    confine.lock_mounts(got)
                    confine.drop_privileges(got, seccomp_filters.get(got["network_namespace"]))
                    os.write(w, json.dumps(got).encode())
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    for leftover in Path(workdir).iterdir():  # the probe's directory
        remove_tree(str(leftover))
    got = json.loads(data) if data else dict.fromkeys(confine.GUARDS, False)
    got["socket_guard"] = not got["network_namespace"] and not got["seccomp"]
    got["process_limit"] = cgroups.process_limit if os.getuid() == 0 else True
    got["memory_cgroup"] = cgroups.memory is not None
    return got


def worker_main() -> None:
    """Entry point of a worker process (see `_WorkerHandle.start`)."""
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the preloaded libraries print goes to stderr, not into the protocol
    cfg = json.loads(sys.stdin.readline())
    sys.path.extend(cfg["site_dirs"])  # libraries only the workers see, after the interpreter's own
    for target in cfg["prepare"]:  # "module:function", before the preloads (they may import what it mends)
        _call(target)
    loaded = []
    for name in cfg["preload"]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # a missing or broken optional library is skipped, not fatal
            pass
    for target in cfg["setup"]:  # after the preloads; run once here so every forked child inherits it
        _call(target)
    cfg["unsupported"] = frozenset(name for name in cfg["unsupported"] if not _importable(name))
    workdir = cfg["workdir"]
    # The memory limit is memory_mb plus what the worker has resident: RLIMIT_AS (address space beyond the
    # worker's) still gives ordinary allocations a MemoryError, and the cgroup bounds what it does not see
    # (memfds, shared memory), the pages a snippet copies from the worker counted in.
    with open("/proc/self/statm") as statm:  # resident now (ru_maxrss would include what the parent had
        resident_mb = int(statm.read().split()[1]) * resource.getpagesize() // _MIB  # before the exec)
    cgroups = confine.make_cgroups(f"apirl-sandbox-{os.getpid()}", cfg["max_processes"] + 2,  # + C and I
                                   cfg["memory_mb"] + resident_mb)
    seccomp_filters = {netns: confine.seccomp_filter(netns) for netns in (True, False)}
    isolation = _probe_isolation(cfg, cgroups, workdir, seccomp_filters)
    cfg["expected_isolation"] = {guard: isolation[guard] for guard in confine.GUARDS}
    proto_out.write(json.dumps({"ready": True, "preloaded": loaded, "isolation": isolation,
                                "cgroups": [str(p) for p in cgroups.paths]}) + "\n")
    # EOF on stdin (the harness closed the pipe, or died) ends the worker. Not PR_SET_PDEATHSIG: it fires when
    # the harness *thread* that started the worker exits, and restarts happen in short-lived job threads.
    try:
        for line in sys.stdin:
            job = json.loads(line)
            try:
                reply = _execute(job["code"], cfg, cgroups, workdir, seccomp_filters)
            except Exception as exc:  # the harness's own failure: say so for this snippet, keep serving
                reply = {"status": "early_exit", "error_type": type(exc).__name__,
                         "message": f"sandbox worker failed running the snippet: {type(exc).__name__}: {exc}"}
            proto_out.write(json.dumps(reply) + "\n")
            for leftover in os.listdir(workdir):  # after the verdict: a slow removal cannot cost it
                remove_tree(os.path.join(workdir, leftover))
    finally:
        cgroups.remove()


def _call(target: str) -> None:
    module_name, _, function_name = target.partition(":")
    getattr(importlib.import_module(module_name), function_name)()


def _importable(name: str) -> bool:
    """Whether this interpreter has the top-level module (decided in the worker, before any snippet runs)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
