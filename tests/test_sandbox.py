"""The snippet sandbox: classification, and hostile snippets contained without harming the harness.

One shared two-worker sandbox with small limits keeps the file fast; each hostile case also checks that the
harness still runs the next snippet and that a canary directory outside the sandbox is untouched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apirl.execution.failures import DEFAULT_UNSUPPORTED, STATUSES, classify
from apirl.execution.sandbox import ExecResult, Sandbox, allowed_env
from apirl.execution.worker import loaded_repos
from smoke_helpers import host_processes_named

OUTPUT_KB = 64


@pytest.fixture(scope="module")
def box():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", "secret123")
        mp.setenv("MY_SERVICE_PASSWORD", "secret456")
        sandbox = Sandbox(workers=2, timeout_s=2, memory_mb=256, max_processes=16, max_file_mb=1,
                          output_kb=OUTPUT_KB)
    with sandbox:
        yield sandbox


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode)
            for p in sorted(root.rglob("*"))} | {".": (b"", root.stat().st_mode)}


def still_serving(box: Sandbox) -> None:
    results = box.run_many(["print('alive', 1 + 1)"] * 2)
    assert [r.status for r in results] == ["ok", "ok"], results
    assert all(r.stdout_tail == "alive 2\n" for r in results)


# ------------------------------------------------------------------------------------------------------------
# Pure functions.


@pytest.mark.parametrize(("error_type", "message", "extra", "expected"), [
    ("SyntaxError", "invalid syntax", {}, "syntax_error"),
    ("IndentationError", "unexpected indent", {"mro": ["IndentationError", "SyntaxError"]}, "syntax_error"),
    ("ModuleNotFoundError", "No module named 'foo'", {"module_name": "foo"}, "import_error"),
    ("ModuleNotFoundError", "No module named 'tensorflow.keras'",
     {"module_name": "tensorflow.keras", "missed": ["tensorflow"]}, "unsupported_library"),
    ("ModuleNotFoundError", "No module named 'tensorflow.keras'", {"module_name": "tensorflow.keras"},
     "import_error"),  # raised, not missed by the import system
    ("ImportError", "cannot import name 'AutoMagic' from 'transformers'", {}, "unknown_attribute"),
    ("ImportError", "libfoo.so: cannot open shared object file", {}, "import_error"),
    ("AttributeError", "module 'torch' has no attribute 'foo'", {}, "unknown_attribute"),
    ("TypeError", "f() got an unexpected keyword argument 'b'", {}, "bad_arguments"),
    ("TypeError", "f() missing 1 required positional argument: 'a'", {}, "bad_arguments"),
    ("TypeError", "f() takes 1 positional argument but 2 were given", {}, "bad_arguments"),
    ("TypeError", "unsupported operand type(s) for +: 'int' and 'str'", {}, "runtime_error"),
    ("OSError", "bert-bse is not a local folder and is not a valid model identifier listed on "
                "'https://huggingface.co/models'", {}, "unknown_model_id"),
    ("RepositoryNotFoundError", "404 Client Error",
     {"mro": ["RepositoryNotFoundError", "HTTPError", "OSError"]}, "unknown_model_id"),
    ("NetworkBlocked", "network access is disabled",
     {"mro": ["NetworkBlocked", "ConnectionError", "OSError"]}, "network"),
    ("OSError", "[Errno 101] Network is unreachable", {"errno": 101}, "network"),
    ("gaierror", "[Errno -3] Temporary failure in name resolution", {"mro": ["gaierror", "OSError"]},
     "network"),
    ("MemoryError", "", {}, "resource_limit"),
    ("BlockingIOError", "[Errno 11] Resource temporarily unavailable",
     {"mro": ["BlockingIOError", "OSError"], "errno": 11}, "resource_limit"),
    ("RuntimeError", "can't start new thread", {}, "resource_limit"),
    ("OSError", "[Errno 27] File too large", {"errno": 27}, "resource_limit"),
    ("ValueError", "bad value", {}, "runtime_error"),
    ("OSError", "[Errno 2] No such file or directory: 'x.png'", {"errno": 2}, "runtime_error"),
])
def test_classify(error_type, message, extra, expected):
    assert classify(error_type, message, **extra) == expected
    assert expected in STATUSES


def test_classify_unsupported_set_is_configurable():
    assert "tensorflow" in DEFAULT_UNSUPPORTED
    status = classify("ModuleNotFoundError", "", module_name="foo.bar", unsupported={"foo"}, missed={"foo"})
    assert status == "unsupported_library"
    assert classify("ModuleNotFoundError", "", module_name="tensorflow", unsupported=set(),
                    missed={"tensorflow"}) == "import_error"


def test_allowed_env_passes_only_the_allow_list():
    env = {"PATH": "/usr/bin", "HF_TOKEN": "x", "OPENAI_API_KEY": "x", "AWS_ACCESS_KEY_ID": "x",
           "DB_PASSWORD": "x", "DATABASE_URL": "postgres://u:p@h/d", "MYSQL_PWD": "x", "JUDGE_BEARER": "x",
           "SSH_AUTH_SOCK": "/tmp/agent", "LANG": "C.UTF-8", "LC_ALL": "C", "CUDA_VISIBLE_DEVICES": "0"}
    assert allowed_env(env) == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C"}


def test_loaded_repos_credits_only_existing_files_of_a_repository(tmp_path: Path):
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    prefix = str(tmp_path) + "/hub/models--"
    opened = "\n".join(["org--name/snapshots/rev/config.json", "org--name/snapshots/rev/config.json",
                        "org--name/snapshots/rev/missing.bin", "other--x/../org--name/snapshots/rev/config.json",
                        "org--name", "org--name/snapshots"])
    assert loaded_repos(opened, prefix) == ("org/name",)
    assert loaded_repos(None, prefix) == ()
    assert loaded_repos("other--x/../org--name/snapshots/rev/config.json", prefix) == ()


def test_the_sandbox_records_the_hub_repositories_a_snippet_opens(tmp_path: Path):
    """The record is an audit hook installed before the code: rebinding built-ins or `open` does not hide a load,
    and a snippet that fails is credited with nothing."""
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    config = "os.environ['HF_HOME'] + '/hub/models--org--name/snapshots/rev/config.json'"
    with Sandbox(workers=1, timeout_s=5, memory_mb=256, env={"HF_HOME": str(tmp_path)}) as sandbox:
        assert sandbox.run(f"import os\nopen({config}).read()\n").loaded == ("org/name",)
        assert sandbox.run(f"import os, builtins\npath = {config}\nbuiltins.type = builtins.str = None\n"
                           "os.read(os.open(path, os.O_RDONLY), 2)\n").loaded == ("org/name",)
        assert sandbox.run("print('no model')\n").loaded == ()
        failed = sandbox.run(f"import os\nopen({config}).read()\nraise ValueError\n")
        assert failed.status == "runtime_error" and failed.loaded == ()


# ------------------------------------------------------------------------------------------------------------
# Ordinary outcomes.


def test_ok_snippet_captures_output(box):
    result = box.run("import json\nx = json.dumps({'a': 1})\nprint(x)\n")
    assert isinstance(result, ExecResult)
    assert result.ok and result.status == "ok"
    assert result.stdout_tail == '{"a": 1}\n'
    assert 0 < result.seconds < 2


def test_snippet_runs_in_its_own_home_and_cwd(box):
    result = box.run("import os, pathlib, tempfile\n"
                     "assert os.getcwd() == os.environ['HOME'] == tempfile.gettempdir()\n"
                     "pathlib.Path('out.txt').write_text('mine')\n"
                     "assert os.listdir('.') == ['out.txt']\n"
                     "print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'])\n")
    assert result.status == "ok", result
    assert result.stdout_tail == "1 1\n"


@pytest.mark.parametrize(("code", "status", "error_type"), [
    ("x = (1,\n", "syntax_error", "SyntaxError"),
    ("import definitely_not_a_module_xyz\n", "import_error", "ModuleNotFoundError"),
    ("import tensorflow as tf\n", "unsupported_library", "ModuleNotFoundError"),
    ("import os\nos.path.joinn('a')\n", "unknown_attribute", "AttributeError"),
    ("from json import loadz\n", "unknown_attribute", "ImportError"),
    ("import json\njson.dumps({}, colour=True)\n", "bad_arguments", "TypeError"),
    ("def f(a, b): pass\nf(1)\n", "bad_arguments", "TypeError"),
    ("1 / 0\n", "runtime_error", "ZeroDivisionError"),
    ("raise OSError('bert-x is not a local folder and is not a valid model identifier')\n",
     "unknown_model_id", "OSError"),
])
def test_failures_are_classified(box, code, status, error_type):
    result = box.run(code)
    assert (result.status, result.error_type) == (status, error_type), result
    assert error_type in result.stderr_tail  # the traceback is kept for feedback


@pytest.mark.parametrize("code", [
    "import sys\nprint('partial')\nsys.exit(0)\nprint('never')\n",
    "raise SystemExit\n",
    "import os\nos._exit(0)\n",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nimport time\ntime.sleep(5)\n",
    "import sys\ntry:\n    sys.exit(0)\nfinally:\n    pass\n",
])
def test_early_exit_is_not_success(box, code):
    result = box.run(code)
    assert result.status == "early_exit", result


def test_forked_child_cannot_report_for_the_snippet(box):
    # The parent exits early; its child runs to the end. Only the snippet process itself can earn `ok`.
    result = box.run("import os, time\nif os.fork():\n    os._exit(0)\ntime.sleep(0.2)\n")
    assert result.status == "early_exit", result


def test_run_many_preserves_order(box):
    codes = [f"import time\ntime.sleep({(7 - i) % 4} * 0.02)\nprint({i})" for i in range(8)]
    results = box.run_many(codes)
    assert [r.stdout_tail for r in results] == [f"{i}\n" for i in range(8)]
    assert box.run_many([]) == []


def test_worker_killed_from_outside_is_restarted(box):
    os.kill(box._workers[0].proc.pid, signal.SIGKILL)
    box._workers[0].proc.wait()
    still_serving(box)


# ------------------------------------------------------------------------------------------------------------
# Hostile snippets: contained, not ok, harness keeps going, nothing outside the sandbox changes.


def test_infinite_loop_times_out(box, canary):
    before = snapshot(canary)
    start = time.monotonic()
    result = box.run("while True:\n    pass\n")
    assert result.status == "timeout"
    assert time.monotonic() - start < 4
    still_serving(box)
    assert snapshot(canary) == before


def test_background_process_does_not_outlive_the_snippet(box):
    if not box.isolation["pid_namespace"]:
        pytest.skip("without a PID namespace a setsid() grandchild escapes the process group kill")
    name = f"escapee{os.getpid() % 10000}"
    result = box.run("import ctypes, os, time\n"
                     "pid = os.fork()\n"
                     "if pid == 0:\n"
                     "    os.setsid()\n"
                     f"    ctypes.CDLL(None).prctl(15, {name.encode()!r})  # PR_SET_NAME (/proc is read-only)\n"
                     "    while True: time.sleep(0.05)\n"
                     "time.sleep(0.3)\n"
                     "print(open(f'/proc/{pid}/comm').read().strip())\n")
    assert result.status == "ok" and result.stdout_tail == f"{name}\n", result  # it was alive at the end
    time.sleep(0.1)
    assert host_processes_named(name) == []
    still_serving(box)


def test_fork_bomb_is_bounded(box, canary):
    if not box.isolation["process_limit"]:
        pytest.skip("running as root without a writable pids cgroup: RLIMIT_NPROC does not bind uid 0")
    before = snapshot(canary)
    result = box.run("import os\nwhile True:\n    os.fork()\n")
    assert result.status == "resource_limit", result
    assert result.error_type == "BlockingIOError"
    still_serving(box)
    assert snapshot(canary) == before


def test_many_threads_are_bounded(box):
    result = box.run("import threading, time\n"
                     "for _ in range(10_000):\n"
                     "    threading.Thread(target=time.sleep, args=(10,), daemon=True).start()\n")
    assert result.status == "resource_limit", result
    still_serving(box)


def test_memory_bomb_is_bounded(box):
    result = box.run("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n")
    assert result.status == "resource_limit", result
    assert result.error_type == "MemoryError"
    still_serving(box)


def test_file_size_is_bounded(box):
    result = box.run("with open('big.bin', 'wb') as f:\n"
                     "    for _ in range(8):\n"
                     "        f.write(b'x' * 1024 * 1024)\n")
    assert result.status == "resource_limit", result
    still_serving(box)


def test_network_connection_is_blocked(box):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        result = box.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                         "s.sendall(b'hello')\n")
        assert result.status == "network", result
        with pytest.raises(BlockingIOError):
            server.accept()
    still_serving(box)


def test_network_is_blocked_without_namespaces():
    # No network namespace: seccomp refuses every socket (the socket guard is the fallback without seccomp).
    with Sandbox(workers=1, timeout_s=2, namespaces=False) as guarded:
        isolation = guarded.isolation
        assert not isolation["network_namespace"] and (isolation["seccomp"] or isolation["socket_guard"])
        error_type = "OSError" if isolation["seccomp"] else "NetworkBlocked"
        with socket.create_server(("127.0.0.1", 0)) as server:
            server.setblocking(False)
            port = server.getsockname()[1]
            result = guarded.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}))\n")
            assert (result.status, result.error_type) == ("network", error_type), result
            result = guarded.run(f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n")
            assert result.status == "network", result
            with pytest.raises(BlockingIOError):
                server.accept()
        assert guarded.run("print('fine')").ok


def test_socket_guard_blocks_library_connections():
    code = ("import socket\nfrom apirl.execution.worker import NetworkBlocked, _install_socket_guard\n"
            "_install_socket_guard()\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9))\nexcept NetworkBlocked:\n    print('blocked')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert done.stdout == "blocked\n", done.stderr


def test_writes_outside_the_sandbox_fail(box, canary):
    if not box.isolation["readonly_fs"]:
        pytest.skip("no mount namespace: writes outside the sandbox are only limited by file permissions")
    before = snapshot(canary)
    for code in (f"open({str(canary / 'keep.txt')!r}, 'w').write('pwned')\n",
                 f"open({str(canary / 'new.txt')!r}, 'w').write('pwned')\n",
                 f"import os\nos.chmod({str(canary)!r}, 0o700)\n",
                 f"import os\nos.mkdir({str(canary / 'sub')!r})\n",
                 "open('/tmp/apirl-sandbox-escape.txt', 'w').write('pwned')\n"):
        result = box.run(code)
        assert result.status == "runtime_error" and "Read-only file system" in result.message, result
    assert snapshot(canary) == before
    assert not Path("/tmp/apirl-sandbox-escape.txt").exists()
    still_serving(box)


def test_deleting_files_outside_the_sandbox_fails(box, canary):
    if not box.isolation["readonly_fs"]:
        pytest.skip("no mount namespace: deletes outside the sandbox are only limited by file permissions")
    before = snapshot(canary)
    for code in (f"import os\nos.remove({str(canary / 'keep.txt')!r})\n",
                 f"import shutil\nshutil.rmtree({str(canary)!r})\n",
                 f"import os\nos.rename({str(canary / 'keep.txt')!r}, {str(canary / 'moved.txt')!r})\n"):
        result = box.run(code)
        assert result.status == "runtime_error", result
    assert snapshot(canary) == before
    still_serving(box)


def test_killing_the_parent_does_not_harm_the_harness(box, canary):
    before = snapshot(canary)
    worker_pids = [w.proc.pid for w in box._workers]
    result = box.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('after')\n")
    if box.isolation["pid_namespace"]:
        # The parent is the namespace's init, which the kernel protects from SIGKILL sent from inside:
        # the kill is a no-op and the snippet runs on.
        assert result.status == "ok" and result.stdout_tail == "after\n", result
    else:
        assert result.status == "early_exit", result  # it killed its shield process, not the worker
    # Aim straight at the workers (their host pids): invisible from a PID namespace.
    code = "import os, signal\n" + "".join(f"os.kill({pid}, signal.SIGKILL)\n" for pid in worker_pids)
    result = box.run(code)
    assert result.status != "ok", result
    if box.isolation["pid_namespace"]:
        assert result.error_type == "ProcessLookupError", result
        assert [w.proc.pid for w in box._workers] == worker_pids
        assert all(w.proc.poll() is None for w in box._workers)
    still_serving(box)
    assert snapshot(canary) == before


def test_killing_every_visible_process_is_contained(box):
    if not box.isolation["pid_namespace"]:
        pytest.skip("without a PID namespace this snippet would kill the test runner itself")
    worker_pids = [w.proc.pid for w in box._workers]
    result = box.run("import os, signal\n"
                     "for name in os.listdir('/proc'):\n"
                     "    if name.isdigit() and int(name) != os.getpid():\n"
                     "        os.kill(int(name), signal.SIGKILL)\n"
                     "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert result.status == "early_exit", result
    assert [w.proc.pid for w in box._workers] == worker_pids
    still_serving(box)


def test_output_flood_is_bounded(box):
    result = box.run("import sys\nwhile True:\n    sys.stdout.write('x' * 4096 + '\\n')\n")
    assert result.status == "timeout"
    assert OUTPUT_KB * 1024 <= len(result.stdout_tail) < OUTPUT_KB * 1024 + 100
    assert result.stdout_tail.startswith("[... ") and "bytes truncated" in result.stdout_tail
    result = box.run("print('y' * 5_000_000)\nimport sys\nprint('e' * 3_000_000, file=sys.stderr)\n")
    assert result.status == "ok"
    assert len(result.stdout_tail) < OUTPUT_KB * 1024 + 100 and result.stdout_tail.endswith("yyy\n")
    assert len(result.stderr_tail) < OUTPUT_KB * 1024 + 100
    still_serving(box)


def test_environment_secrets_are_not_visible(box):
    assert os.environ.get("HF_TOKEN") != "secret123"  # the fixture set it only while starting the workers
    harness_pid = os.getpid()
    result = box.run("import os\n"
                     "print(dict(os.environ))\n"
                     "for name in os.listdir('/proc'):\n"
                     "    try:\n"
                     "        print(open(f'/proc/{name}/environ', 'rb').read())\n"
                     "    except OSError:\n"
                     "        pass\n"
                     "try:\n"
                     f"    print(open('/proc/{harness_pid}/environ', 'rb').read())\n"
                     "except OSError as e:\n"
                     "    print('harness environ hidden:', type(e).__name__)\n")
    assert result.status == "ok", result
    assert "HF_HUB_OFFLINE" in result.stdout_tail
    assert "secret123" not in result.stdout_tail and "secret456" not in result.stdout_tail
    assert "HF_TOKEN" not in result.stdout_tail and "MY_SERVICE_PASSWORD" not in result.stdout_tail


def test_stdin_is_closed(box):
    result = box.run("import sys\nprint(repr(sys.stdin.read()))\n")
    assert result.status == "ok" and result.stdout_tail == "''\n"
