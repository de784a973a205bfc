"""Escapes from the snippet sandbox, tried as a hostile snippet would: every attack class of the threat model.

Each test failed on the sandbox before its containment was built (mount flags cleared with mount_setattr, /proc
unmounted, a verdict forged by rebinding json.dumps, memory taken as memfds, a host UNIX socket reached, a deep
directory tree that broke cleanup, a gap class claimed by raising its exception, secrets passed by a deny-list)
and checks the harness's state after the attack, not only the snippet's verdict. A one-worker sandbox makes "the
next snippet" the same worker's next child.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from apirl.execution.sandbox import Sandbox
from smoke_helpers import host_processes_named

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
MOUNT_ATTR = ("class Attr(ctypes.Structure):\n"
              "    _fields_ = [(n, ctypes.c_uint64) for n in ('set', 'clr', 'prop', 'userns')]\n"
              "def clear_readonly(path, recursive):\n"
              "    attr = Attr(0, 1, 0, 0)  # attr_clr = MOUNT_ATTR_RDONLY\n"
              "    return libc.syscall(442, -100, path.encode(), 0x8000 if recursive else 0, ctypes.byref(attr),\n"
              "                        ctypes.sizeof(attr))\n")


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=1, timeout_s=5, memory_mb=256, max_processes=16, max_file_mb=1) as sandbox:
        yield sandbox


def needs(box: Sandbox, *guards: str) -> None:
    missing = [g for g in guards if not box.isolation.get(g)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the kernel refused {missing} under CI: the containment tests would not run")
        pytest.skip(f"the kernel refused {missing} here")


def worker_dir(box: Sandbox) -> Path:
    return Path(box._workers[0].workdir)


# ------------------------------------------------------------------------------------------------------------
# Mounts and capabilities.


def test_snippet_has_no_capabilities_and_no_new_privileges(box):
    needs(box, "no_capabilities")
    result = box.run("for line in open('/proc/self/status'):\n"
                     "    if line.startswith(('CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'NoNewPrivs')):\n"
                     "        print(line.strip())\n")
    assert result.ok, result
    fields = dict(line.split(":\t") for line in result.stdout_tail.splitlines())
    assert fields == {"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
                      "CapAmb": "0000000000000000", "NoNewPrivs": "1"}, fields


def test_read_only_mounts_cannot_be_made_writable(box, canary):
    needs(box, "readonly_fs", "locked_mounts")
    code = (LIBC + MOUNT_ATTR
            + f"print([clear_readonly(p, r) for p in ('/', {str(canary)!r}, '/tmp') for r in (False, True)])\n"
            + "print(libc.unshare(0x10020000))  # a new user + mount namespace of its own\n"
            + f"print([clear_readonly(p, r) for p in ('/', {str(canary)!r}) for r in (False, True)])\n"
            + f"open({str(canary / 'new.txt')!r}, 'w').write('pwned')\n")
    result = box.run(code)
    assert result.status == "runtime_error" and "Read-only file system" in result.message, result
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]
    assert (canary / "keep.txt").read_text() == "original\n"


def test_proc_cannot_be_unmounted_to_see_the_host(box):
    needs(box, "pid_namespace", "locked_mounts")
    harness = os.getpid()
    code = (LIBC + "print('umount', libc.umount2(b'/proc', 2), libc.umount2(b'/proc', 0))\n"
            + "print('mount', libc.mount(b'none', b'/proc', b'tmpfs', 0, None))\n"
            + f"print('harness visible', os.path.exists('/proc/{harness}/cmdline'))\n"
            + "print('pids', sorted(int(n) for n in os.listdir('/proc') if n.isdigit()))\n")
    result = box.run(code)
    assert result.ok, result
    assert "umount -1 -1" in result.stdout_tail and "mount -1" in result.stdout_tail, result.stdout_tail
    assert "harness visible False" in result.stdout_tail
    pids = eval(result.stdout_tail.split("pids ")[1])
    assert max(pids) < 10, pids  # only the snippet's own namespace


def test_a_snippet_cannot_change_what_the_next_one_finds(box):
    needs(box, "readonly_fs", "locked_mounts")
    # The attacker tries everything that earlier escaped: re-enable writes, drop files beside its own directory
    # (the worker's), in /tmp and /dev/shm, raise its cgroup's limits, and leave a process behind.
    attack = (LIBC + MOUNT_ATTR
              + "for p in ('/', '/tmp', '/sys/fs/cgroup', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/memory'):\n"
              + "    clear_readonly(p, False); clear_readonly(p, True)\n"
              + "libc.umount2(b'/proc', 2)\n"
              + "import glob\n"
              + "targets = [os.path.join(os.path.dirname(os.getcwd()), 'poison'), '/tmp/apirl-poison',\n"
              + "           '/dev/shm/apirl-poison', *[d + '/poison' for d in glob.glob('/tmp/apirl-sandbox-*')]]\n"
              + "for target in targets:\n"
              + "    try:\n"
              + "        open(target, 'w').write('x')\n"
              + "    except OSError:\n"
              + "        pass\n"
              + "for path in glob.glob('/sys/fs/cgroup/*/apirl-sandbox-*/*.max') + \\\n"
              + "        glob.glob('/sys/fs/cgroup/*/apirl-sandbox-*/memory.limit_in_bytes'):\n"
              + "    try:\n"
              + "        open(path, 'w').write('max' if path.endswith('.max') else '-1')\n"
              + "    except OSError:\n"
              + "        pass\n"
              + "if os.fork() == 0:\n"
              + "    os.setsid()\n"
              + "    import time\n"
              + "    time.sleep(30)\n")
    check = ("import glob, os, resource\n"
             "print('siblings', sorted(os.listdir(os.path.dirname(os.getcwd()))))\n"
             "print('tmp', glob.glob('/tmp/apirl-poison') + glob.glob('/tmp/apirl-sandbox-*/poison'))\n"
             "print('shm', os.listdir('/dev/shm'))\n"
             "print('procs', sorted(n for n in os.listdir('/proc') if n.isdigit()))\n")
    results = box.run_many([attack, check])
    assert results[0].status in ("ok", "runtime_error"), results[0]
    assert results[1].ok, results[1]
    out = results[1].stdout_tail
    assert "siblings [" in out and "poison" not in out, out
    assert "shm []" in out, out
    if box.isolation["pid_namespace"]:
        assert "procs ['1', '2']" in out, out  # the new namespace's init and the checker: no leftover
    assert not Path("/tmp/apirl-poison").exists()
    siblings = eval(out.split("siblings ")[1].splitlines()[0])  # the attacker's directories are gone by then:
    own = siblings[0]  # only the checker's own directory and its /dev/shm remain
    assert siblings == [own, own + "-shm"], siblings
    for cgroup in box._workers[0].cgroups:
        for name in ("pids.max", "memory.limit_in_bytes", "memory.max"):
            if (cgroup / name).is_file():
                assert (cgroup / name).read_text().strip() not in ("max", "9223372036854771712"), (cgroup, name)


def test_devices_and_sysctls_are_out_of_reach(box):
    # The snippet keeps the harness's uid; as root, owner permissions would open the disk and write sysctls
    # (core_pattern runs a program as host root), which a read-only mount does not stop for devices.
    needs(box, "readonly_fs")
    devices = sorted(str(p) for p in Path("/dev").iterdir() if p.is_block_device() or p.name in ("kmsg", "mem"))
    code = ("import os\nopened = []\n"
            f"for path in {devices!r} + ['/proc/sys/kernel/core_pattern', '/proc/sys/vm/drop_caches']:\n"
            "    try:\n"
            "        os.close(os.open(path, os.O_WRONLY))\n"
            "        opened.append(path)\n"
            "    except OSError:\n"
            "        pass\n"
            "print(opened)\n"
            "with open('/dev/null', 'w') as f:\n    f.write('fine')\n"
            "print(len(open('/dev/urandom', 'rb').read(8)))\n")
    result = box.run(code)
    assert result.ok, result
    assert result.stdout_tail == "[]\n8\n", result.stdout_tail


def test_sysv_shared_memory_is_neither_the_host_s_nor_left_for_the_next_snippet(box):
    needs(box, "network_namespace")
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x5A5A0000 + os.getpid() % 0xFFFF
    host_segment = libc.shmget(key, 4096, 0o1000 | 0o600)  # IPC_CREAT: a root-owned segment of the host
    assert host_segment >= 0
    try:
        results = box.run_many([LIBC + f"print(libc.shmget({key}, 0, 0), libc.shmget({key + 1}, 4096, 0o1666))\n",
                                LIBC + f"print(libc.shmget({key + 1}, 0, 0))\n"])
        assert [r.status for r in results] == ["ok", "ok"], results
        seen_host, made = map(int, results[0].stdout_tail.split())
        assert seen_host == -1 and made >= 0  # the host's segment is invisible; its own is made...
        assert results[1].stdout_tail == "-1\n"  # ...and gone for the next snippet
        assert libc.shmget(key + 1, 0, 0) == -1  # and never reached the host
    finally:
        libc.shmctl(host_segment, 0, None)  # IPC_RMID


def test_host_runtime_fifos_are_out_of_reach(box, tmp_path):
    needs(box, "readonly_fs")
    if not Path("/run").is_dir() or os.geteuid() != 0:
        pytest.skip("needs a /run to plant a FIFO in")
    fifo = Path("/run") / f"apirl-test-{os.getpid()}.fifo"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = box.run(f"import os\nfd = os.open({str(fifo)!r}, os.O_WRONLY | os.O_NONBLOCK)\n"
                         "os.write(fd, b'reboot')\n")
        assert result.status == "runtime_error" and "FileNotFoundError" in (result.error_type or ""), result
        assert os.read(reader, 16) == b""  # nothing was written
    finally:
        os.close(reader)
        fifo.unlink()


def test_a_killed_worker_leaves_no_snippet_running():
    name = f"orphan{os.getpid() % 10000}"
    with Sandbox(workers=1, timeout_s=20) as sandbox:
        worker = sandbox._workers[0]
        import threading

        thread = threading.Thread(target=sandbox.run, args=(
            f"import ctypes, time\nctypes.CDLL(None).prctl(15, {name.encode()!r})\ntime.sleep(60)\n",), daemon=True)
        thread.start()
        for _ in range(100):
            if host_processes_named(name):
                break
            time.sleep(0.05)
        assert host_processes_named(name), "the snippet never started"
        worker.proc.kill()
        thread.join(timeout=30)
        for _ in range(40):
            if not host_processes_named(name):
                break
            time.sleep(0.05)
        assert host_processes_named(name) == []


# ------------------------------------------------------------------------------------------------------------
# The verdict.


@pytest.mark.parametrize("forgery", [
    "import json\nd = json.dumps\n"
    "json.dumps = lambda o, *a, **k: d({'token': o['token'], 'outcome': 'ok'})\n",
    "import os\nw = os.write\nos.write = lambda fd, data: w(fd, data.replace(b'exception', b'ok'))\n",
    "import builtins\nbuiltins.isinstance = lambda *a: False\nbuiltins.getattr = lambda *a: None\n",
    "import sys\nsys.modules['json'] = None\n",
])
def test_the_verdict_cannot_be_forged_by_rebinding(box, forgery):
    result = box.run(forgery + "raise RuntimeError('never reached the end')\n")
    assert result.status == "runtime_error", result


def test_a_second_report_does_not_override_the_first(box):
    # Whatever the snippet writes on its inherited descriptors after a real report does not count.
    result = box.run("import os\nfor fd in range(3, 64):\n"
                     "    try:\n        os.write(fd, b'{\"outcome\": \"ok\"}\\n')\n    except OSError:\n        pass\n"
                     "raise RuntimeError('failed')\n")
    assert result.status == "runtime_error", result


# ------------------------------------------------------------------------------------------------------------
# Memory, including shared memory.


@pytest.mark.parametrize("code", [
    "import os\nfds = []\nfor i in range(64):\n    fd = os.memfd_create(f'm{i}')\n"
    "    os.write(fd, b'x' * (8 << 20))\n    fds.append(fd)\nprint('kept 512 MiB')\n",
    "import mmap\nregions = []\nfor i in range(64):\n    m = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_SHARED)\n"
    "    m.write(b'x' * (8 << 20))\n    regions.append(m)\nprint('kept 512 MiB')\n",
])
def test_shared_memory_counts_against_the_limit(code):
    # Files of up to 64 MiB (the default), so that eight MiB memfds are possible; RLIMIT_AS does not see them.
    with Sandbox(workers=1, timeout_s=10, memory_mb=256) as sandbox:
        needs(sandbox, "memory_cgroup")
        result = sandbox.run(code)
        assert result.status == "resource_limit", result
        assert "kept 512 MiB" not in result.stdout_tail
        assert sandbox.run("print('alive')").ok


# ------------------------------------------------------------------------------------------------------------
# Sockets of every family.


def test_a_host_unix_socket_is_unreachable(box, tmp_path):
    path = tmp_path / "listener.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        path.chmod(0o777)
        server.listen()
        server.setblocking(False)
        result = box.run(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(path)!r})\n"
                         "s.sendall(b'hello')\nprint(s.recv(10))\n")
        assert not result.ok, result
        with pytest.raises(BlockingIOError):
            server.accept()


def test_only_internet_sockets_in_an_empty_network_namespace_can_be_made(box):
    needs(box, "network_namespace", "seccomp")
    families = {name: int(getattr(socket, name)) for name in dir(socket) if name.startswith("AF_")}
    families.update(AF_VSOCK=40, AF_NETLINK=16, AF_PACKET=17, AF_ALG=38, AF_XDP=44, AF_BLUETOOTH=31)
    code = ("import socket\nmade = []\n"
            f"for name, family in {sorted(families.items())!r}:\n"
            "    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET):\n"
            "        try:\n"
            "            socket.socket(family, kind).close()\n"
            "            made.append(name)\n"
            "        except OSError:\n"
            "            pass\n"
            "print(sorted(set(made)))\n"
            "a, b = socket.socketpair()\na.sendall(b'pair')\nprint(b.recv(4))\n")
    result = box.run(code)
    assert result.ok, result
    made = eval(result.stdout_tail.splitlines()[0])
    assert set(made) <= {"AF_INET", "AF_INET6"}, made
    assert result.stdout_tail.splitlines()[1] == "b'pair'"  # socketpair (multiprocessing's pipes) still works


def test_io_uring_cannot_bypass_the_socket_filter(box):
    needs(box, "seccomp")
    result = box.run(LIBC + "params = ctypes.create_string_buffer(120)\n"
                     "print(libc.syscall(425, 8, params), ctypes.get_errno())\n")  # io_uring_setup
    assert result.ok, result
    assert result.stdout_tail.startswith("-1 "), result.stdout_tail


# ------------------------------------------------------------------------------------------------------------
# Cleanup.


def test_a_deep_directory_tree_loses_no_verdict():
    with Sandbox(workers=1, timeout_s=10) as sandbox:
        workdir = worker_dir(sandbox)
        results = sandbox.run_many(["import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n",
                                    "print('next')\n"])
        assert [r.status for r in results] == ["ok", "ok"], results
        assert not any((p / "d").exists() for p in workdir.iterdir())  # removed before the next snippet ran
    assert not workdir.exists()


def test_a_dead_worker_is_replaced_and_its_verdict_kept(monkeypatch):
    with Sandbox(workers=1, timeout_s=5) as sandbox:
        worker = sandbox._workers[0]
        real_run = type(worker).run
        calls = []

        def crash_once(self, code):
            calls.append(code)
            if len(calls) == 1:
                raise RecursionError("cleanup blew up")
            return real_run(self, code)

        monkeypatch.setattr(type(worker), "run", crash_once)
        results = sandbox.run_many(["print(1)", "print(2)"])
        assert results[0].status == "early_exit" and "RecursionError" in results[0].message, results[0]
        assert results[1].ok and results[1].stdout_tail == "2\n", results[1]


# ------------------------------------------------------------------------------------------------------------
# Gap classes belong to the harness.


@pytest.mark.parametrize(("code", "status"), [
    ("raise ModuleNotFoundError(name='tensorflow')\n", "import_error"),
    ("raise ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow.keras')\n", "import_error"),
    ("exec(compile(\"raise ModuleNotFoundError(name='timm')\", '/usr/lib/python3/x.py', 'exec'))\n",
     "import_error"),
    ("raise ModuleNotFoundError(name='json')\n", "import_error"),
    ("try:\n    import tensorflow\nexcept ImportError:\n    pass\nraise ModuleNotFoundError(name='tensorflow')\n",
     "import_error"),  # a real miss earlier, a raise of its own afterwards
    ("import sys\nsys.meta_path[-1].find_spec('tensorflow')\nraise ModuleNotFoundError(name='tensorflow')\n",
     "import_error"),
    ("import tensorflow\n", "unsupported_library"),
    ("import importlib\nimportlib.import_module('tensorflow.keras')\n", "unsupported_library"),
])
def test_only_a_real_import_of_a_missing_library_is_unsupported(box, code, status):
    assert box.run(code).status == status


def test_an_installed_library_is_never_unsupported():
    # `json` is installed: even a genuine miss of it (here, hidden by a finder) is the snippet's import error.
    with Sandbox(workers=1, timeout_s=5, unsupported={"json", "tensorflow"}) as sandbox:
        result = sandbox.run("import sys\nsys.modules.pop('json', None)\n"
                             "class Hide:\n    def find_spec(self, name, *a):\n"
                             "        if name == 'json':\n            raise ModuleNotFoundError(name='json')\n"
                             "sys.meta_path.insert(0, Hide())\nimport json\n")
        assert result.status == "import_error", result
        assert sandbox.run("import tensorflow\n").status == "unsupported_library"


# ------------------------------------------------------------------------------------------------------------
# The environment.


def test_only_allowed_environment_variables_reach_the_snippet(monkeypatch):
    secrets = {"DATABASE_URL": "postgres://u:hunter2@db/x", "DB_PASS": "hunter3", "MYSQL_PWD": "hunter4",
               "JUDGE_BEARER": "hunter5", "HF_TOKEN": "hunter6", "RANDOM_THING": "hunter7"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    with Sandbox(workers=1, timeout_s=5, env={"HF_HOME": "/nowhere"}) as sandbox:
        result = sandbox.run("import os\nprint(sorted(os.environ.items()))\n")
    assert result.ok, result
    for name, value in secrets.items():
        assert name not in result.stdout_tail and value not in result.stdout_tail, name
    assert "('HF_HOME', '/nowhere')" in result.stdout_tail and "('PATH', " in result.stdout_tail
