"""Run untrusted generated Python snippets in isolated, time- and resource-limited child processes.

The executability reward needs to run thousands of model-written snippets, and importing torch/transformers
costs seconds, so each of `workers` long-lived worker processes imports the heavy modules once (`preload`)
and then forks one child per snippet. A worker reads jobs as JSON lines on its stdin and answers on its
stdout; the harness (`Sandbox`) feeds the workers from threads and replaces any worker that dies.

Per snippet, the worker forks a *shield* process C, which confines itself, and the tree under it:

    harness --pipe--> worker --fork--> C (setsid, cgroups, namespaces, read-only mounts)
                                         --fork--> I (init of the new PID namespace: fresh /proc, locks mounts)
                                           --fork--> S (rlimits, no privileges, seccomp, then the code)

`confine.py` has the kernel mechanisms, step by step. S runs the compiled code in a fresh temporary directory
that is also HOME and TMPDIR and, only when the code returns normally, writes "<per-run token> ok" on a private
pipe: the only way to get `ok`. `sys.exit(0)`, `os._exit(0)`, `raise SystemExit` or a signal before the last
statement is `early_exit`. Every failure gets one status from `STATUSES`; `classify` (pure) maps an exception
seen in the child to its status.

THREAT MODEL. The snippets come from a model that RL pays for a verdict of "ran", so the sandbox must hold
against code that tries to escape or to fool the verdict, with the kernel's mechanisms, not Python
monkeypatches, wherever the kernel allows them (`Sandbox.isolation` says which ones it did). Each item below has
a hostile-snippet test (tests/test_sandbox_escape.py, tests/test_sandbox.py). Contained:

- The filesystem: every mount is read-only and device-less but the snippet's own directory and a private
  /dev/shm; /dev/null, zero, full, random and urandom stay usable. The mounts are locked (a second user + mount
  namespace), so mount_setattr cannot clear the read-only flag and umount cannot uncover what lies beneath;
  mount syscalls are also refused by seccomp. Nothing a snippet does survives it: the next snippet of the same
  worker gets a new directory, /dev/shm and /proc, and the old ones are removed whatever they hold (any depth).
- /proc and other processes: a fresh, read-only /proc of the new PID namespace (the host's, with every process's
  command line, is under it and locked); sysctls cannot be written (they check the uid, not capabilities). The
  snippet sees only its namespace; the namespace's init and the shield are non-dumpable (no ptrace, no
  /proc/<pid>/mem), and ptrace / process_vm_* are refused. Killing the parent kills at most the shield; the
  worker sees `early_exit` and, if a worker dies anyway, it is replaced and the snippet gets its verdict.
- Capabilities: none in any set (effective, permitted, inheritable, ambient, bounding), no_new_privs, so a
  setuid binary or an exec gains none; no new namespaces (seccomp on unshare, setns and clone flags).
- Memory: RLIMIT_AS = the worker's address space + `memory_mb` gives ordinary allocations a MemoryError, and a
  memory cgroup (v1 or v2, root harness) bounds what RLIMIT_AS does not see, memfds and shared memory
  included, at `memory_mb` + the worker's resident size (the pages a snippet copies from it count); a kill by
  it is `resource_limit`.
- Forks and threads: RLIMIT_NPROC = `max_processes`, and for a root harness (whose uid RLIMIT_NPROC does not
  bind) a pids cgroup. Hangs: a wall-clock timeout kills the whole namespace; RLIMIT_CPU backs it.
- Files: RLIMIT_FSIZE per file, RLIMIT_NOFILE, no core dumps. Output: the last `output_kb` KiB of each stream.
- Sockets of every family: an empty network namespace (AF_INET/AF_INET6 reach nothing), and seccomp refuses
  socket() for every other family: no UNIX path socket of the host, no vsock, netlink or packet socket; io_uring,
  which could open sockets past the filter, is refused. socketpair(AF_UNIX) stays (multiprocessing's pipes).
- The verdict: the report is written with functions bound before the code runs (built-ins and methods of
  built-in types, which the code cannot rebind: rebinding json.dumps or os.write once forged `ok`), its outcome
  is fixed bytes chosen by the branch that ran, and the worker reads the first report with the token: anything
  else written on the pipe is ignored.
- Gap classes: `unsupported_library` (the harness's gap, left out of `executability_supported`) needs a module
  the harness knows it does not have, a real miss of it by the import system while the snippet ran (recorded
  by a finder at the end of sys.meta_path), and an import statement naming it (or library code) where the
  error was raised: not a raised ModuleNotFoundError, nor one raised after a failed import was caught.
- Fail closed: a snippet that gets less confinement than the worker's probe measured (a refusal of the kernel
  that happens once in a while) is not run (`early_exit`, SandboxError).
- The environment: an allow-list (`ENV_ALLOWED`: PATH, locale, HOME...), plus what the harness sets (the
  offline flags, HF_HOME); no DATABASE_URL, token or password under any name.

Not contained:

- Reading files: the snippet keeps the harness's uid, so it reads whatever that user can (source, data,
  ~/.cache, keys on disk), as root everything. Run the harness as a user without secrets on disk if that
  matters. (Dropping to `nobody` would make an interpreter under /root, pyenv's, unreadable.)
- Code that reads the interpreter's own memory (frame walking, gc.get_objects, ctypes) can find the token or the
  miss recorder and forge `ok` or a gap; code compiled under a library's file name can pass for that library in
  the gap checks of `execution.py`. This needs deliberate knowledge of the harness, not a rebinding.
- Disk use inside the snippet's directory is bounded per file, not in total; named pipes (FIFOs) of the host on
  the read-only mounts can still be written.
- Kernel exploits and timing side channels.
- Where the kernel refuses a mechanism (no user namespaces in some containers, no cgroups without root, no
  libseccomp), its guard is missing and `Sandbox.isolation` says so: without a PID namespace the host's
  processes are visible (and readable by the same uid); without seccomp and a network namespace only a Python
  socket guard is left, which ctypes or a subprocess bypass.

An outer layer from a maintained tool (bubblewrap, nsjail) was considered: both start one process per sandbox,
so every snippet would pay a fresh interpreter with torch and transformers imported (seconds), where a fork
from a preloaded worker costs tens of milliseconds; putting the whole worker inside one would not isolate one
snippet from the next, which is the property the tests demand. The mechanisms they use are the ones above.

Preloaded modules resolve some paths at import time (e.g. huggingface_hub reads HF_HOME/HOME then), so they
use the worker's environment, not the per-snippet HOME; point HF_HOME at a shared offline hub via `env`.
"""

from __future__ import annotations

import ast
import contextlib
import errno as errno_mod
import importlib
import importlib.util
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
from types import TracebackType
from typing import Any

from apirl.execution import confine

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

# What a snippet may see of the harness's environment: where programs, libraries and the locale are. Nothing
# else passes (a deny-list of secret-looking names let DATABASE_URL, MYSQL_PWD or JUDGE_BEARER through); what
# the snippets need beyond this (HF_HOME, the offline flags) the harness sets itself.
ENV_ALLOWED = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "PYTHONHASHSEED",
                         "VIRTUAL_ENV", "LD_LIBRARY_PATH", "USER", "LOGNAME"})
_ENV_ALLOWED_PREFIXES = ("LC_",)

# A worker is `python -c _WORKER_BOOT`: a fresh interpreter, so it inherits nothing from the harness process.
_WORKER_BOOT = ("import sys; sys.path.insert(0, {src!r}); "
                "from apirl.execution.sandbox import _worker_main; _worker_main()")


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
    origin: str | None = None  # the file whose code raised the exception ("<snippet>" for the snippet's own)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------------------------------------
# Pure helpers: environment scrubbing and failure classification.


def allowed_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` a snippet may see: the names in ENV_ALLOWED and the locale (LC_*), nothing else."""
    return {name: value for name, value in env.items()
            if name in ENV_ALLOWED or name.startswith(_ENV_ALLOWED_PREFIXES)}


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
                   errno_mod.ECONNRESET, errno_mod.ECONNABORTED,
                   errno_mod.EAFNOSUPPORT}  # what seccomp answers for a socket family the sandbox refuses
_NETWORK_PATTERNS = ("Network is unreachable", "Name or service not known",
                     "Temporary failure in name resolution", "No address associated with hostname",
                     "Failed to establish a new connection")
_RESOURCE_ERRNOS = {errno_mod.EAGAIN, errno_mod.EFBIG, errno_mod.EMFILE, errno_mod.ENFILE, errno_mod.ENOMEM,
                    errno_mod.ENOSPC, errno_mod.EDQUOT}
_RESOURCE_PATTERNS = ("can't start new thread", "Resource temporarily unavailable", "Cannot allocate memory",
                      "Too many open files", "File too large")


def classify(error_type: str, message: str, *, mro: Sequence[str] = (), errno: int | None = None,
             module_name: str | None = None, unsupported: Collection[str] = DEFAULT_UNSUPPORTED,
             missed: Collection[str] = ()) -> str:
    """The status of a snippet that raised `error_type(message)`.

    `mro` is the names of the exception's classes (so library subclasses of OSError or ImportError are
    recognized without importing the library here), `module_name` the `.name` of an ImportError. Order
    matters: the most specific diagnosis that helps the model fix its call wins.

    `unsupported_library` is the harness's gap, so the harness decides it, not the exception: the module must be
    one we know of and do not have (`unsupported`, checked against what is installed) and one that the import
    system really failed to find while the snippet ran (`missed`, top-level names). A snippet that raises
    ModuleNotFoundError(name='tensorflow') itself gets `import_error`.
    """
    names = {error_type, *mro}
    if names & {"SyntaxError", "IndentationError", "TabError"}:
        return "syntax_error"
    if "ModuleNotFoundError" in names:
        top = (module_name or "").split(".")[0]
        return "unsupported_library" if top and top in unsupported and top in missed else "import_error"
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


# The report is one line on fd 3: "<token> <outcome>" then tab-separated fields, each escaped with
# unicode_escape (no tab, newline or non-ASCII byte is left in a field). Only the snippet process writes it, once.
_REPORT_FIELDS = ("type", "mro", "message", "errno", "module_name", "missed", "origin", "code", "line")
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
        report(b"ok")
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
        return {**fields, "status": "ok"}
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


def _worker_main() -> None:
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
        self.cgroups = [Path(p) for p in info.get("cgroups", [])]

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            confine.remove_cgroups(f"apirl-sandbox-{self.proc.pid}")
            remove_tree(self.workdir)
            self.proc = None

    def restart(self) -> None:
        """A fresh worker in place of this one, whatever state the old one is in."""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        self.stop()
        self.start()

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
            self.restart()
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

    Each worker adds `site_dirs` to its sys.path, calls the `prepare` hooks ("module:function"), imports
    `preload`, then calls the `setup` hooks; every snippet it forks starts from that state.

    with Sandbox(workers=2, timeout_s=10) as box:
        results = box.run_many(snippets)
    """

    def __init__(self, workers: int = 2, timeout_s: float = 10.0, *, memory_mb: int = 2048,
                 cpu_s: float | None = None, max_processes: int = 64, max_open_files: int = 256,
                 max_file_mb: int = 64, output_kb: int = 64, preload: Iterable[str] = (),
                 setup: Iterable[str] = (), prepare: Iterable[str] = (), site_dirs: Iterable[str | Path] = (),
                 env: Mapping[str, str] | None = None,
                 unsupported: Collection[str] = DEFAULT_UNSUPPORTED,
                 namespaces: bool = True, start_timeout_s: float = 300.0) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.config: dict[str, Any] = {
            "timeout_s": float(timeout_s), "memory_mb": int(memory_mb),
            "cpu_s": int(cpu_s if cpu_s is not None else max(1, timeout_s)) + 1,
            "max_processes": int(max_processes), "max_open_files": int(max_open_files),
            "max_file_mb": int(max_file_mb), "output_kb": int(output_kb), "preload": list(preload),
            "setup": list(setup), "prepare": list(prepare), "site_dirs": [str(d) for d in site_dirs],
            "unsupported": frozenset(unsupported), "namespaces": bool(namespaces),
            "start_timeout_s": float(start_timeout_s)}
        self.worker_env = {**allowed_env(os.environ), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
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
        """Which guards the kernel allowed (`confine.GUARDS`, then socket_guard, process_limit, memory_cgroup):
        log it with the results, a weaker setup changes what `ok` is worth."""
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
                started = time.monotonic()
                try:
                    results[index] = worker.run(codes[index])
                except Exception as exc:  # the harness failed, not the snippet: a verdict all the same
                    results[index] = ExecResult("early_exit", type(exc).__name__,
                                                f"sandbox harness error: {type(exc).__name__}: {exc}"[:2000],
                                                seconds=time.monotonic() - started)
                    try:
                        worker.restart()
                    except Exception:
                        return  # this worker is gone; the others take the remaining jobs
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
