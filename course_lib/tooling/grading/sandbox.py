"""The sandbox student code runs in: bubblewrap (``bwrap``) plus resource limits.

What the sandboxed process sees: a read-only view of ``/usr`` (and the ``/bin``, ``/lib``...
links), the Python installation, the virtual environment and ``course_lib`` (nothing else of
the repository), a few public files of ``/etc`` (fonts, ld.so cache, passwd), a fresh ``/proc``
for its own PID namespace, a minimal ``/dev``, a size-limited ``/tmp`` (tmpfs) as its working
folder, and exactly the files the grader binds in for it (its notebook read-only, its output
files writable).  No network (its own, empty network namespace), no other process, no IPC.
As root, the grader builds the namespaces and then drops to ``nobody:nogroup`` (``setpriv``),
with no capabilities and ``no_new_privs``; as a normal user, bwrap runs in a user namespace
under the caller's own uid.  Limits (``setrlimit``, inherited by every process in it): address
space, CPU seconds, file size, number of processes, open files, no core dumps; the grader also
kills the whole sandbox after a wall-clock limit.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
TMP_BYTES = 512 * 2**20
FILE_BYTES = 256 * 2**20
NPROC = 1024
_ETC = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "passwd", "group", "nsswitch.conf",
        "localtime", "mime.types"]


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class Limits:
    cell_timeout: float = 120.0      # wall-clock seconds per cell
    notebook_timeout: float = 600.0  # wall-clock (and CPU) seconds per notebook run
    memory_mb: int = 4096            # address space per process
    max_output_bytes: int = 1 << 20  # outputs kept per notebook


@dataclass
class Result:
    returncode: int | None
    killed: bool          # the wall-clock limit ran out
    stderr: str


def _python_paths() -> list[Path]:
    import course_lib
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent,
             Path(course_lib.__file__).resolve().parent}
    return sorted(p for p in paths if p.exists() and not str(p).startswith("/usr"))


def _parents(path: Path, made: set[str]) -> list[str]:
    out = []
    for parent in reversed(path.parents):
        p = str(parent)
        if p in ("/", "/usr") or p in made:
            continue
        made.add(p)
        out += ["--perms", "0755", "--dir", p]
    return out


def bwrap_command(argv: list[str], *, ro: list[tuple[Path, str]] = (), rw: list[tuple[Path, str]] = (),
                  workdir: str = "/tmp/work") -> list[str]:
    """The full command line that runs ``argv`` in the sandbox."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    cmd = [bwrap, "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib32", "lib64", "sbin"):
        p = Path("/") / link
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    cmd += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC:
        if (Path("/etc") / name).exists():
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    made: set[str] = {"/etc"}
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
            "--perms", "0777", "--dir", workdir]
    # after the private /tmp: a Python environment or repository under /tmp stays visible
    for path in _python_paths():
        cmd += _parents(path, made) + ["--ro-bind", str(path), str(path)]
    for host, inside in ro:
        cmd += _parents(Path(inside), made) + ["--ro-bind", str(host), inside]
    for host, inside in rw:
        cmd += _parents(Path(inside), made) + ["--bind", str(host), inside]
    cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--chdir", workdir, "--hostname", "sandbox"]
    if os.geteuid() == 0:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]
    else:
        cmd += ["--unshare-user", "--disable-userns", "--"]
    return cmd + argv


def environment() -> dict[str, str]:
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp/home",
            "USER": "nobody", "LOGNAME": "nobody", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "MPLCONFIGDIR": "/tmp/home/mpl", "IPYTHONDIR": "/tmp/home/ipython",
            "JUPYTER_RUNTIME_DIR": "/tmp/home/runtime", "JUPYTER_CONFIG_DIR": "/tmp/home/jupyter",
            "JUPYTER_DATA_DIR": "/tmp/home/jupyter-data", "JUPYTER_PLATFORM_DIRS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def _limits(limits: Limits, sandboxed: bool):
    cpu = int(limits.notebook_timeout) + 5
    mem = limits.memory_mb * 2**20

    def apply():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        if sandboxed:
            resource.setrlimit(resource.RLIMIT_NPROC, (NPROC, NPROC))
    return apply


def run(argv: list[str], limits: Limits, *, wall: float, sandboxed: bool = True,
        ro: list[tuple[Path, str]] = (), rw: list[tuple[Path, str]] = (), cwd: Path | None = None) -> Result:
    """Run ``argv`` (in the sandbox unless ``sandboxed`` is False) and wait at most ``wall`` s."""
    cmd = bwrap_command(argv, ro=ro, rw=rw) if sandboxed else argv
    env = environment()
    if not sandboxed:
        env["HOME"] = str(cwd)
        for var in ("MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR",
                    "JUPYTER_DATA_DIR"):
            env[var] = str(cwd / ".home" / var.lower())
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_limits(limits, sandboxed))
    killed = False
    try:
        _, err = proc.communicate(timeout=wall)
    except subprocess.TimeoutExpired:
        killed = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, err = proc.communicate()
    return Result(proc.returncode, killed, (err or b"")[-4000:].decode("utf-8", "replace"))


@functools.lru_cache(maxsize=None)
def check() -> str:
    """Empty when the sandbox works here, otherwise why not."""
    try:
        cmd = bwrap_command([sys.executable, "-c", "import os; print(os.getuid())"])
    except SandboxUnavailable as err:
        return str(err)
    try:
        done = subprocess.run(cmd, env=environment(), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap does not run here: {err}"
    if done.returncode != 0:
        return f"bubblewrap does not work here: {done.stderr.strip()[-500:]}"
    if os.geteuid() == 0 and done.stdout.strip() != str(NOBODY):
        return f"the sandbox did not drop to nobody (uid {done.stdout.strip()})"
    return ""
