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
- What a snippet loaded: an audit hook (`sys.addaudithook`, which the code cannot remove), installed before the
  code with its names bound, records the files it opens under `$HF_HOME/hub/models--*`; a snippet that ran is
  credited (`ExecResult.loaded`) with the repositories of those that the worker then finds to be files of a
  repository (no `..`, no missing file). Loaders read configs with Python's `open`, so every library counts.
  Evaluation reads it as "executability with the API" (`apirl.evaluate.stage.uses_api`).
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
- Code that reads the interpreter's own memory (frame walking, gc.get_objects, ctypes) can find the token, the
  miss recorder or the load record and forge `ok`, a gap or a load; code that opens a repository's file by
  its path in the hub, without a loader, is credited with that repository; code compiled under a library's file
  name can pass for that library in the gap checks of `execution.py`. This needs deliberate knowledge of the
  harness, not a rebinding.
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

import contextlib
import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apirl.execution import confine
from apirl.execution.failures import DEFAULT_UNSUPPORTED
from apirl.execution.worker import remove_tree

# What a snippet may see of the harness's environment: where programs, libraries and the locale are. Nothing
# else passes (a deny-list of secret-looking names let DATABASE_URL, MYSQL_PWD or JUDGE_BEARER through); what
# the snippets need beyond this (HF_HOME, the offline flags) the harness sets itself.
ENV_ALLOWED = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "PYTHONHASHSEED",
                         "VIRTUAL_ENV", "LD_LIBRARY_PATH", "USER", "LOGNAME"})
_ENV_ALLOWED_PREFIXES = ("LC_",)

# A worker is `python -c _WORKER_BOOT`: a fresh interpreter, so it inherits nothing from the harness process.
_WORKER_BOOT = ("import sys; sys.path.insert(0, {src!r}); "
                "from apirl.execution.worker import worker_main; worker_main()")


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
    loaded: tuple[str, ...] = ()  # of a snippet that ran: the hub repositories (model ids) it opened files of

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------------------------------------
# Environment scrubbing.



def allowed_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` a snippet may see: the names in ENV_ALLOWED and the locale (LC_*), nothing else."""
    return {name: value for name, value in env.items()
            if name in ENV_ALLOWED or name.startswith(_ENV_ALLOWED_PREFIXES)}


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
        return ExecResult(**{**reply, "loaded": tuple(reply.get("loaded", ()))})

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
