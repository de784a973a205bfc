"""Run untrusted generated Python snippets in isolated, time- and resource-limited child processes.

The executability reward needs to run thousands of model-written snippets, and importing torch/transformers
costs seconds, so each of `workers` long-lived worker processes imports the heavy modules once (`preload`)
and then forks one child per snippet. A worker reads jobs as JSON lines on its stdin and answers on its
stdout; the harness (`Sandbox`) feeds the workers from threads and restarts any worker that dies.

Per snippet, the worker forks a *shield* process C which isolates itself and forks the snippet process S:

    harness --pipe--> worker --fork--> C (setsid, cgroup, unshare, read-only mounts) --fork--> S (runs code)

S is the first process of a new PID namespace when namespaces are allowed. S sets rlimits, chdirs to a fresh
temporary directory that is also HOME and TMPDIR, runs the compiled code, and only when the code returns
normally writes a per-run random token to a private pipe: that is the only way to get `ok`. `sys.exit(0)`,
`os._exit(0)`, `raise SystemExit` or a signal before the last statement is `early_exit`. Every failure gets
one status from `STATUSES`; `classify` (pure) maps an exception seen in the child to its status.

THREAT MODEL. The snippets are written by a model being trained, not by a determined attacker: we contain
accidents and cheap hostility (what a policy might stumble on), with the strongest cheap Linux mechanism
available, and fall back to weaker guards where the kernel refuses. What is contained:

- Runaway CPU and hangs: a wall-clock timeout kills the whole process group (os.killpg) and, with a PID
  namespace, every process of the namespace (the kernel kills them when S, its init, dies), including ones
  that called setsid() to leave the group. RLIMIT_CPU (SIGXCPU, then SIGKILL one second later) backs it.
- Memory: RLIMIT_AS = the preloaded interpreter's address space + `memory_mb`, so a bomb gets MemoryError.
- Forks and threads: RLIMIT_NPROC = `max_processes`. The kernel ignores RLIMIT_NPROC for real uid 0, so when
  the harness runs as root the worker also puts each snippet in a pids cgroup (v1 `/sys/fs/cgroup/pids`, or
  v2 with the pids controller enabled) with pids.max = `max_processes`. Root without a usable pids cgroup has
  NO fork-bomb bound besides the timeout: `Sandbox.isolation` reports it (`process_limit`).
- File size: RLIMIT_FSIZE = `max_file_mb` (Python ignores SIGXFSZ, so the write fails with EFBIG).
  Open files: RLIMIT_NOFILE. Core dumps: RLIMIT_CORE = 0.
- Output: stdout and stderr go to pipes the worker drains; it keeps only the last `output_kb` KiB of each.
- Network: a new user + network namespace (only a down loopback: every connect fails with 'Network is
  unreachable'). Where namespaces are refused, a socket guard replaces socket connect/connect_ex/
  create_connection/getaddrinfo by functions raising NetworkBlocked. The guard is weak: ctypes, a
  subprocess (curl) or a C extension bypass it.
- Secrets in the environment: the workers are started with a scrubbed environment (`scrub_env`: names that
  look like tokens, keys, secrets, passwords or cloud credentials, and values that look like tokens, are
  dropped), plus HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1, so neither S nor the preloaded modules see them.
  With a PID + mount namespace S also gets a fresh /proc, so it cannot read /proc/<harness pid>/environ.
- Writes outside the sandbox directory: with a user + mount namespace, every mount is made read-only
  (mount_setattr, recursive) except a bind mount of the sandbox directory, so writes, deletes and renames
  anywhere else fail with EROFS. This is enforced by the kernel, not a Python monkeypatch. Without a mount
  namespace there is NO write protection beyond file permissions: `Sandbox.isolation` says so (`readonly_fs`).
- Killing the harness: S's parent is the shield C, not the worker, so os.kill(os.getppid(), ...) kills at most
  C (with a PID namespace getppid() is 0, and kill(0, sig) signals S's own process group). The worker sees C
  die before the token arrives: `early_exit`. In a PID namespace S cannot name any outside process. If a
  snippet still kills a worker, the harness reports `early_exit` for that snippet and starts a new worker.

What is NOT contained:

- Reading files: a snippet can read whatever the harness's user can read (source, data, ~/.cache, keys on
  disk). Only the environment is scrubbed; run the harness as a user without secrets on disk if that matters.
  The snippet keeps the harness's uid (inside its user namespace it has no capability over host objects, but
  owner permissions still apply). We do not drop to `nobody` when root: an interpreter installed under /root
  (pyenv) is then unreadable and every import not preloaded fails.
- Local IPC that does not need a network: abstract unix sockets are per network namespace (blocked with it),
  but files in world-writable dirs are only protected by the read-only mounts.
- The sentinel token lives in S's memory (the runner's frame), so code that walks interpreter frames could
  forge `ok`. Accidental early exits cannot.
- Disk use inside the sandbox directory is bounded per file (RLIMIT_FSIZE), not in total.
- Kernel exploits, timing side channels, and anything a setuid binary on the machine allows.
- Without namespaces (some containers forbid unprivileged user namespaces) the guards degrade as said above.

Preloaded modules resolve some paths at import time (e.g. huggingface_hub reads HF_HOME/HOME then), so they
use the worker's environment, not the per-snippet HOME; point HF_HOME at a shared offline hub via `env`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_mod
import importlib
import json
import os
import queue
import re
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATUSES = ("ok", "syntax_error", "import_error", "unknown_model_id", "unknown_attribute", "bad_arguments",
            "runtime_error", "timeout", "resource_limit", "network", "unsupported_library", "early_exit")

# Libraries Gorilla-style answers import that we know about but do not install: a ModuleNotFoundError for one
# of them is the harness's gap, not the model's mistake.
DEFAULT_UNSUPPORTED = frozenset({
    "torch", "transformers", "huggingface_hub", "tensorflow", "keras", "jax", "flax", "paddle", "mxnet",
    "onnxruntime", "sentencepiece", "timm", "diffusers", "datasets", "soundfile", "librosa", "torchaudio",
    "torchvision", "cv2", "PIL", "sklearn", "pandas", "scipy", "matplotlib", "fairseq", "espnet",
    "espnet_model_zoo", "speechbrain", "asteroid", "pyannote", "sentence_transformers", "joblib", "requests",
    "stable_baselines3", "rl_zoo3", "huggingface_sb3", "tensorflow_hub", "flair", "ultralytics", "ultralyticsplus",
    "yolov5", "sahi", "controlnet_aux", "decord", "pydub", "huggingsound", "optimum", "modelscope", "openai",
    "mlagents", "TTS", "nemo", "whisper", "audiocraft", "skops", "autogluon", "xgboost", "lightgbm", "catboost",
    "tensorflow_io", "accelerate", "peft", "bitsandbytes", "einops", "safetensors", "tokenizers", "gradio",
})

_SECRET_NAME_RE = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|AUTH|"
                             r"COOKIE|SESSION|(^|_)KEY($|_)", re.IGNORECASE)
_SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "GCLOUD_", "OPENAI_", "ANTHROPIC_", "HF_", "HUGGING",
                    "WANDB_", "GITHUB_", "GH_", "GITLAB_", "NPM_", "PYPI_", "TWINE_", "SSH_", "GPG_",
                    "DOCKER_")
_SECRET_VALUE_RE = re.compile(r"^(hf_|sk-|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abp]-|AKIA|ASIA|ya29\.)")

# A worker is `python -c _WORKER_BOOT`: a fresh interpreter, so it inherits nothing from the harness process.
_WORKER_BOOT = ("import sys; sys.path.insert(0, {src!r}); "
                "from apirl.evaluate.sandbox import _worker_main; _worker_main()")


class NetworkBlocked(ConnectionError):
    """Raised by the socket guard (used only where network namespaces are refused)."""


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one snippet: `status` is one of STATUSES; tails are the last bytes of each stream."""

    status: str
    error_type: str | None = None
    message: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------------------------------------
# Pure helpers: environment scrubbing and failure classification.


def scrub_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without anything that looks like a credential, by name or by value (HF_TOKEN, AWS_*, sk-...)."""
    return {name: value for name, value in env.items()
            if not _SECRET_NAME_RE.search(name) and not name.upper().startswith(_SECRET_PREFIXES)
            and not _SECRET_VALUE_RE.match(value)}


_MODEL_ID_PATTERNS = ("is not a local folder and is not a valid model identifier", "Repository Not Found",
                      "couldn't find them in the cached files", "couldn't find it in the cached files",
                      "Cannot find the requested files in the local cache")
_MODEL_ID_TYPES = {"RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError",
                   "LocalEntryNotFoundError"}
_BAD_ARGUMENTS_RE = re.compile(r"unexpected keyword argument|missing \d+ required|"
                               r"required positional argument|"
                               r"required keyword-only argument|takes \d+ positional argument|"
                               r"takes (no|exactly \d+|at most \d+|at least \d+) (positional )?arguments?|"
                               r"got multiple values for (keyword )?argument|positional arguments? but \d+|"
                               r"got an unexpected|got some positional-only arguments passed as keyword")
_NETWORK_ERRNOS = {errno_mod.ENETUNREACH, errno_mod.ENETDOWN, errno_mod.EHOSTUNREACH, errno_mod.ECONNREFUSED,
                   errno_mod.ECONNRESET, errno_mod.ECONNABORTED}
_NETWORK_PATTERNS = ("Network is unreachable", "Name or service not known",
                     "Temporary failure in name resolution", "No address associated with hostname",
                     "Failed to establish a new connection")
_RESOURCE_ERRNOS = {errno_mod.EAGAIN, errno_mod.EFBIG, errno_mod.EMFILE, errno_mod.ENFILE, errno_mod.ENOMEM,
                    errno_mod.ENOSPC, errno_mod.EDQUOT}
_RESOURCE_PATTERNS = ("can't start new thread", "Resource temporarily unavailable", "Cannot allocate memory",
                      "Too many open files", "File too large")


def classify(error_type: str, message: str, *, mro: Sequence[str] = (), errno: int | None = None,
             module_name: str | None = None, unsupported: Collection[str] = DEFAULT_UNSUPPORTED) -> str:
    """The status of a snippet that raised `error_type(message)`.

    `mro` is the names of the exception's classes (so library subclasses of OSError or ImportError are
    recognized without importing the library here), `module_name` the `.name` of an ImportError. Order
    matters: the most specific diagnosis that helps the model fix its call wins.
    """
    names = {error_type, *mro}
    if names & {"SyntaxError", "IndentationError", "TabError"}:
        return "syntax_error"
    if "ModuleNotFoundError" in names:
        top = (module_name or "").split(".")[0]
        return "unsupported_library" if top and top in unsupported else "import_error"
    if "ImportError" in names:
        return "unknown_attribute" if "cannot import name" in message else "import_error"
    if names & _MODEL_ID_TYPES or any(p in message for p in _MODEL_ID_PATTERNS):
        return "unknown_model_id"
    if "NetworkBlocked" in names or "gaierror" in names or "OfflineModeIsEnabled" in names:
        return "network"
    if "MemoryError" in names:
        return "resource_limit"
    if ("OSError" in names and errno in _NETWORK_ERRNOS) or any(p in message for p in _NETWORK_PATTERNS):
        return "network"
    if "OSError" in names and errno in _RESOURCE_ERRNOS:
        return "resource_limit"
    if ("OSError" in names or "RuntimeError" in names) and any(p in message for p in _RESOURCE_PATTERNS):
        return "resource_limit"
    if "AttributeError" in names:
        return "unknown_attribute"
    if "TypeError" in names and _BAD_ARGUMENTS_RE.search(message):
        return "bad_arguments"
    return "runtime_error"


# ------------------------------------------------------------------------------------------------------------
# Linux isolation primitives (ctypes: Python 3.11 has no os.unshare / os.mount).

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MOUNT_ATTR_RDONLY, _AT_RECURSIVE, _AT_FDCWD = 0x1, 0x8000, -100
_SYS_MOUNT_SETATTR = 442  # one number on every architecture (added after the syscall tables were unified)
_NAMESPACE_GUARDS = ("network_namespace", "pid_namespace", "readonly_fs")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    return _libc().unshare(flags) == 0


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> bool:
    def enc(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    return _libc().mount(enc(source), enc(target), enc(fstype), flags, None) == 0


def _set_readonly(path: str, readonly: bool, recursive: bool) -> bool:
    attr = _MountAttr(_MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else _MOUNT_ATTR_RDONLY, 0, 0)
    flags = _AT_RECURSIVE if recursive else 0
    return _libc().syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                           ctypes.sizeof(attr)) == 0


def _isolate_namespaces(sandbox_dir: str, use_namespaces: bool) -> dict[str, bool]:
    """In the shield C: new user/net/mount/pid namespaces (best first), then a read-only view of every mount
    except the sandbox directory. Returns what worked, for the snippet process and `Sandbox.isolation`."""
    got = dict.fromkeys(_NAMESPACE_GUARDS, False)
    if not use_namespaces:
        return got
    for flags in (_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS | _CLONE_NEWPID,
                  _CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS, _CLONE_NEWUSER | _CLONE_NEWNET):
        if _unshare(flags):
            got["network_namespace"] = True
            got["pid_namespace"] = bool(flags & _CLONE_NEWPID)
            if flags & _CLONE_NEWNS:
                # A private, writable /dev/shm (multiprocessing's locks, used by some pipelines, need one): the
                # snippet's sibling directory `<sandbox>-shm`, not a tmpfs (owned by an unmapped uid: EOVERFLOW).
                shm = sandbox_dir + "-shm"
                private = _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
                with_shm = private and os.path.isdir(shm) and os.path.isdir("/dev/shm") and \
                    _mount(shm, "/dev/shm", None, _MS_BIND)
                got["readonly_fs"] = (private
                                      and _mount(sandbox_dir, sandbox_dir, None, _MS_BIND | _MS_REC)
                                      and _set_readonly("/", True, recursive=True)
                                      and _set_readonly(sandbox_dir, False, recursive=True))
                if got["readonly_fs"] and with_shm:
                    _set_readonly("/dev/shm", False, recursive=False)
            break
    return got


def _install_socket_guard() -> None:
    """The fallback network block: weak (ctypes or a subprocess bypass it), but stops library calls."""
    import socket

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise NetworkBlocked("network access is disabled in the sandbox")

    socket.socket.connect = blocked  # type: ignore[method-assign]
    socket.socket.connect_ex = blocked  # type: ignore[method-assign]
    socket.create_connection = blocked
    socket.getaddrinfo = blocked


def _pids_cgroup_root() -> Path | None:
    """Where a root worker can create a pids cgroup: RLIMIT_NPROC does not apply to uid 0."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").is_file() and os.access(v1, os.W_OK):
        return v1
    v2 = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        if "pids" in (v2 / "cgroup.subtree_control").read_text().split() and os.access(v2, os.W_OK):
            return v2
    return None


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


def _run_snippet(code: str, token: str, cfg: dict[str, Any], isolation: dict[str, bool], sandbox_dir: str,
                 result_fd: int) -> None:
    """Process S: limits, environment, then the code. Writes the token only if the code returns normally."""
    me = os.getpid()

    def report(**fields: Any) -> None:
        if os.getpid() == me:  # a forked grandchild running to the end must not speak for the snippet
            with contextlib.suppress(Exception):
                os.write(result_fd, (json.dumps({"token": token, **fields}) + "\n").encode())

    if isolation["pid_namespace"] and isolation["readonly_fs"]:
        # A fresh /proc: the host's would show the harness's /proc/<pid>/environ.
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.chdir(sandbox_dir)
    os.environ.update(HOME=sandbox_dir, TMPDIR=sandbox_dir, PWD=sandbox_dir)
    tempfile.tempdir = None
    with open("/proc/self/statm") as f:
        base_vm = int(f.read().split()[0]) * resource.getpagesize()
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
    if not isolation["network_namespace"]:
        _install_socket_guard()
    sys.argv = ["<snippet>"]
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(code, "<snippet>", "exec"), namespace)
    except SystemExit as exc:
        _flush_std()
        report(outcome="exit", code=str(exc.code)[:200])
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            import traceback
            traceback.print_exc()
        _flush_std()
        report(outcome="exception", type=type(exc).__name__, mro=[c.__name__ for c in type(exc).__mro__],
               message=str(exc)[:2000], errno=getattr(exc, "errno", None),
               module_name=getattr(exc, "name", None) if isinstance(exc, ImportError) else None)
    else:
        _flush_std()
        report(outcome="ok")
    os._exit(0)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def _run_shield(code: str, token: str, cfg: dict[str, Any], sandbox_dir: str, cgroup: Path | None,
                fds: tuple[int, int, int]) -> None:
    """Process C: new session, cgroup, namespaces, then S; exits the way S ended. Never returns.

    With a PID namespace C's child is the namespace's init I, which forks S: S must not be init itself,
    because the kernel drops SIGKILL sent to init from inside, so `os.kill(os.getpid(), 9)` would not end it.
    """
    out_w, err_w, res_w = fds
    try:
        os.setsid()
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(res_w, 3)
        os.closerange(4, 65536)  # the worker's protocol pipes and everything else it holds
        isolation = _isolate_namespaces(sandbox_dir, cfg["namespaces"])
        pid = os.fork()
        if pid == 0:
            if isolation["pid_namespace"]:
                pid = os.fork()
                if pid == 0:
                    _run_snippet(code, token, cfg, isolation, sandbox_dir, 3)
                os.close(3)
                _relay(pid)
            _run_snippet(code, token, cfg, isolation, sandbox_dir, 3)
        os.close(3)
        _relay(pid)
    except BaseException:
        os._exit(125)


def _relay(pid: int) -> None:
    """Wait for `pid` and exit with its code, or 128 + the signal that killed it (init cannot kill itself)."""
    _, status = os.waitpid(pid, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status))


_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL}


def _execute(code: str, cfg: dict[str, Any], cgroup: Path | None, workdir: str) -> dict[str, Any]:
    """Run one snippet from the worker and build the ExecResult fields."""
    token = secrets.token_hex(16)
    sandbox_dir = tempfile.mkdtemp(prefix="snippet-", dir=workdir)
    os.mkdir(sandbox_dir + "-shm", 0o700)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _run_shield(code, token, cfg, sandbox_dir, cgroup, (out_w, err_w, res_w))
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    limit = cfg["output_kb"] * 1024
    buffers = {out_r: _TailBuffer(limit), err_r: _TailBuffer(limit), res_r: _TailBuffer(64 * 1024)}
    pidfd = os.pidfd_open(pid)
    open_fds = set(buffers)
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
            if chunk:
                buffers[fd].add(chunk)
            else:
                open_fds.discard(fd)
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
                buffers[fd].add(chunk)
    for fd in (*buffers, pidfd):
        os.close(fd)
    shutil.rmtree(sandbox_dir, ignore_errors=True)
    shutil.rmtree(sandbox_dir + "-shm", ignore_errors=True)
    fields: dict[str, Any] = {"stdout_tail": buffers[out_r].text(), "stderr_tail": buffers[err_r].text(),
                              "seconds": round(seconds, 4)}
    report = _last_report(buffers[res_r].text(), token)
    if timed_out:
        return {**fields, "status": "timeout", "message": f"timed out after {cfg['timeout_s']} s"}
    if report is None:
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
        return {**fields, "status": "ok"}
    if report["outcome"] == "exit":
        return {**fields, "status": "early_exit", "error_type": "SystemExit",
                "message": f"SystemExit({report['code']}) before the last statement"}
    status_name = classify(report["type"], report["message"], mro=report["mro"], errno=report["errno"],
                           module_name=report["module_name"], unsupported=cfg["unsupported"])
    return {**fields, "status": status_name, "error_type": report["type"], "message": report["message"]}


def _last_report(text: str, token: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError, AttributeError):
            report = json.loads(line)
            if report.get("token") == token:
                return report
    return None


def _probe_isolation(cfg: dict[str, Any], cgroup: Path | None, workdir: str) -> dict[str, bool]:
    """What the kernel allows here, measured once per worker by a throwaway child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            probe_dir = tempfile.mkdtemp(dir=workdir)
            got = _isolate_namespaces(probe_dir, cfg["namespaces"])
            os.write(w, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    got = json.loads(data) if data else dict.fromkeys(_NAMESPACE_GUARDS, False)
    is_root = os.getuid() == 0
    got["socket_guard"] = not got["network_namespace"]
    got["process_limit"] = cgroup is not None if is_root else True
    return got


def _worker_main() -> None:
    """Entry point of a worker process (see `_WorkerHandle.start`)."""
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the preloaded libraries print goes to stderr, not into the protocol
    cfg = json.loads(sys.stdin.readline())
    cfg["unsupported"] = frozenset(cfg["unsupported"])
    loaded = []
    for name in cfg["preload"]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # a missing or broken optional library is skipped, not fatal
            pass
    for target in cfg.get("setup", ()):  # "module:function", run once here so every forked child inherits it
        module_name, _, function_name = target.partition(":")
        getattr(importlib.import_module(module_name), function_name)()
    cgroup = None
    workdir = cfg["workdir"]
    if os.getuid() == 0 and (root := _pids_cgroup_root()) is not None:
        with contextlib.suppress(OSError):
            cgroup = root / f"apirl-sandbox-{os.getpid()}"
            cgroup.mkdir(exist_ok=True)
            (cgroup / "pids.max").write_text(str(cfg["max_processes"] + 1))  # +1: the shield process
    if cgroup is not None and not (cgroup / "pids.max").is_file():
        cgroup = None
    isolation = _probe_isolation(cfg, cgroup, workdir)
    proto_out.write(json.dumps({"ready": True, "preloaded": loaded, "isolation": isolation}) + "\n")
    # EOF on stdin (the harness closed the pipe, or died) ends the worker. Not PR_SET_PDEATHSIG: it fires when
    # the harness *thread* that started the worker exits, and restarts happen in short-lived job threads.
    try:
        for line in sys.stdin:
            job = json.loads(line)
            proto_out.write(json.dumps(_execute(job["code"], cfg, cgroup, workdir)) + "\n")
    finally:
        if cgroup is not None:
            with contextlib.suppress(OSError):
                cgroup.rmdir()


# ------------------------------------------------------------------------------------------------------------
# The harness side.


class _WorkerHandle:
    """One worker process and its JSON-lines pipe; restarted when it dies."""

    def __init__(self, cfg: dict[str, Any], env: dict[str, str]) -> None:
        self.cfg, self.env = cfg, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.start()

    def start(self) -> None:
        src = str(Path(__file__).resolve().parents[2])
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_BOOT.format(src=src)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env,
                                     start_new_session=True)
        self._buffer = b""
        self.workdir = tempfile.mkdtemp(prefix="apirl-sandbox-")  # ours: removed even if the worker is killed
        self._send({**self.cfg, "unsupported": sorted(self.cfg["unsupported"]), "workdir": self.workdir})
        info = self._receive(self.cfg["start_timeout_s"])
        if info is None or not info.get("ready"):
            self.stop()
            raise RuntimeError("sandbox worker failed to start")
        self.info = info

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._remove_cgroup(self.proc.pid)
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.proc = None

    @staticmethod
    def _remove_cgroup(pid: int) -> None:
        root = _pids_cgroup_root()
        if root is not None:
            with contextlib.suppress(OSError):
                (root / f"apirl-sandbox-{pid}").rmdir()

    def run(self, code: str) -> ExecResult:
        start = time.monotonic()
        if self.proc is None or self.proc.poll() is not None:  # died between jobs: not this snippet's doing
            self.stop()
            self.start()
        try:
            self._send({"code": code})
            reply = self._receive(self.cfg["timeout_s"] + 30)
        except OSError:
            reply = None
        if reply is None:
            code_ = self.proc.poll() if self.proc is not None else None
            if self.proc is not None:
                self.proc.kill()
            self.stop()
            self.start()
            return ExecResult("early_exit", None, f"sandbox worker died (exit {code_}) running the snippet",
                              seconds=time.monotonic() - start)
        return ExecResult(**reply)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def _receive(self, timeout_s: float) -> dict[str, Any] | None:
        """One JSON line from the worker, or None if it died or stayed silent for `timeout_s`."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


class Sandbox:
    """Parallel, isolated snippet runner. Use as a context manager; see the module docstring for the limits.

    with Sandbox(workers=2, timeout_s=10) as box:
        results = box.run_many(snippets)
    """

    def __init__(self, workers: int = 2, timeout_s: float = 10.0, *, memory_mb: int = 2048,
                 cpu_s: float | None = None, max_processes: int = 64, max_open_files: int = 256,
                 max_file_mb: int = 64, output_kb: int = 64, preload: Iterable[str] = (),
                 setup: Iterable[str] = (), env: Mapping[str, str] | None = None,
                 unsupported: Collection[str] = DEFAULT_UNSUPPORTED,
                 namespaces: bool = True, start_timeout_s: float = 300.0) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.config: dict[str, Any] = {
            "timeout_s": float(timeout_s), "memory_mb": int(memory_mb),
            "cpu_s": int(cpu_s if cpu_s is not None else max(1, timeout_s)) + 1,
            "max_processes": int(max_processes), "max_open_files": int(max_open_files),
            "max_file_mb": int(max_file_mb), "output_kb": int(output_kb), "preload": list(preload),
            "setup": list(setup),
            "unsupported": frozenset(unsupported), "namespaces": bool(namespaces),
            "start_timeout_s": float(start_timeout_s)}
        self.worker_env = {**scrub_env(os.environ), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                           "HF_DATASETS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                           "PYTHONUNBUFFERED": "1",
                           "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                           "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self._workers: list[_WorkerHandle] = []
        try:
            for _ in range(workers):
                self._workers.append(_WorkerHandle(self.config, self.worker_env))
        except BaseException:
            self.close()
            raise

    @property
    def isolation(self) -> dict[str, bool]:
        """Which guards the kernel allowed (network_namespace, pid_namespace, readonly_fs, socket_guard,
        process_limit): log it with the results, a weaker setup changes what `ok` is worth."""
        return dict(self._workers[0].info["isolation"])

    @property
    def preloaded(self) -> list[str]:
        return list(self._workers[0].info["preloaded"])

    def run(self, code: str) -> ExecResult:
        return self.run_many([code])[0]

    def run_many(self, codes: Sequence[str], on_result: Callable[[], None] | None = None) -> list[ExecResult]:
        """Results in the order of `codes`, run in parallel across the workers; `on_result` is called (from a
        worker thread) after each one, for progress bars."""
        if not self._workers:
            raise RuntimeError("the sandbox is closed")
        jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(codes)):
            jobs.put(index)
        results: list[ExecResult | None] = [None] * len(codes)

        def serve(worker: _WorkerHandle) -> None:
            while True:
                try:
                    index = jobs.get_nowait()
                except queue.Empty:
                    return
                results[index] = worker.run(codes[index])
                if on_result is not None:
                    on_result()

        threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in self._workers[:len(codes)]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"sandbox lost {len(missing)} results (a worker could not be restarted)")
        return results  # type: ignore[return-value]

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_dict(result: ExecResult) -> dict[str, Any]:
    """ExecResult as a JSON-ready dict (for details files)."""
    return asdict(result)
