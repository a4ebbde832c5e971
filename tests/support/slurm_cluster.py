"""A one-node SLURM cluster on this machine, for the workflow's cluster test.

:func:`one_node_slurm` starts munge, ``slurmctld`` and ``slurmd`` as background processes
(the Debian packages ``munge``, ``slurmctld``, ``slurmd``, ``slurm-client``; ``.ci/run``
installs them) with every file of theirs in a scratch folder — the munge key, socket and
seed, SLURM's state, spool, logs and PID files — except the configuration, which SLURM's
commands and the job steps of the executor plugin read from ``/etc/slurm/slurm.conf``
(``srun`` inside a job does not see a ``SLURM_CONF`` set by the caller). The teardown is
registered before anything starts: jobs are cancelled, every daemon is stopped by its PID
(SIGTERM, then SIGKILL), and the configuration file is removed, so no daemon keeps
running and nothing is left behind, whatever the test did.

:func:`why_not` says why a cluster cannot be started here (the test is then skipped with
that reason): not root, a package missing, or a SLURM already configured or running on
this machine, which the test must not touch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
#: First line of the configuration this module writes: only such a file may be replaced.
MARK = "# one-node SLURM of immunoprofile's test suite (tests/support/slurm_cluster.py)"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "sinfo", "scancel")
PORTS = (6817, 6818)


def _command(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None)


def _port_in_use(port: int) -> bool:
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 here
                continue
            return True
    return False


def _running_slurm() -> list[str]:
    """SLURM daemons already running on this machine (by their process names)."""
    names = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name in ("slurmctld", "slurmd", "slurmdbd", "slurmstepd"):
            names.append(name)
    return sorted(set(names))


def why_not() -> str | None:
    """Why a one-node SLURM cannot be started on this machine (None: it can)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "SLURM runs on Linux only"
    missing = [name for name in COMMANDS if _command(name) is None]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} not found; Debian: apt-get "
                "install munge slurmctld slurmd slurm-client)")
    if os.geteuid() != 0:
        return "starting slurmd and writing /etc/slurm/slurm.conf needs root"
    if CONF.exists() and not CONF.read_text(errors="replace").startswith(MARK):
        return f"{CONF} exists: this machine has a SLURM of its own, which the test leaves alone"
    running = _running_slurm()
    if running:
        return f"{', '.join(running)} already running here: the test leaves that SLURM alone"
    if os.environ.get("SLURM_CONF") or Path("/run/slurm/conf").exists():
        return "this machine is configured for a SLURM of its own (SLURM_CONF or configless)"
    busy = [str(p) for p in PORTS if _port_in_use(p)]
    if busy:
        return f"SLURM's ports ({', '.join(busy)}) are in use: a SLURM already runs here"
    return None


def _config(folder: Path, host: str, cpus: int, memory_mb: int) -> str:
    return "\n".join([
        MARK,
        "ClusterName=immunoprofile-test",
        f"SlurmctldHost={host}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge.socket'}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"SlurmctldPort={PORTS[0]}",
        f"SlurmdPort={PORTS[1]}",
        # no cgroups, no accounting database (slurmdbd): a plain cluster, as in issue 15
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        f"NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _memory_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 2000


def _stop(process: subprocess.Popen) -> None:
    """Stop a daemon by its PID: SIGTERM, then SIGKILL after 15 s (never raises)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)


def _cancel_jobs(env: dict[str, str]) -> None:
    """Cancel every job and wait (30 s at most) until the queue is empty (never raises:
    the daemons are stopped after it whatever happens here)."""
    try:
        subprocess.run([_command("scancel"), "--full", "--user=root"], env=env,
                       capture_output=True, timeout=30, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = subprocess.run([_command("squeue"), "-h"], env=env,
                                   capture_output=True, text=True, timeout=30)
            if queue.returncode != 0 or not queue.stdout.strip():
                return
            time.sleep(0.5)
    except (subprocess.SubprocessError, OSError):
        return


def _wait_for(check, what: str, folder: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted(folder.glob("*.log")))
    raise RuntimeError(f"the test cluster did not come up: {what}\n{logs}")


@contextlib.contextmanager
def one_node_slurm(folder: Path) -> Iterator[dict[str, str]]:
    """Run a one-node SLURM while the block runs; yields the environment for its commands.

    Parameters
    ----------
    folder : Path
        Scratch folder for every file of the cluster but ``/etc/slurm/slurm.conf``.

    Raises
    ------
    RuntimeError
        A daemon did not start or the node did not become idle within a minute (the
        daemons' logs are in the message).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    host = socket.gethostname().split(".")[0]
    daemons: list[subprocess.Popen] = []
    outputs: list = []
    wrote_conf: list[bool] = []

    def teardown() -> None:
        try:
            if len(daemons) == 3 and daemons[1].poll() is None:
                _cancel_jobs(env)
        finally:
            try:
                for process in reversed(daemons):  # slurmd, slurmctld, then munged
                    _stop(process)
                for handle in outputs:
                    handle.close()
            finally:
                if wrote_conf:
                    with contextlib.suppress(FileNotFoundError):
                        CONF.unlink()

    with contextlib.ExitStack() as stack:
        stack.callback(teardown)  # before anything starts
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        daemons.append(subprocess.Popen(
            [_command("munged"), "--foreground", "--force",
             f"--socket={folder / 'munge.socket'}", f"--key-file={key}",
             f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
             f"--seed-file={folder / 'munged.seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        _wait_for(lambda: (folder / "munge.socket").exists(), "munged", folder, 30)
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(_config(folder, host, os.cpu_count() or 1, _memory_mb()))
        wrote_conf.append(True)
        for name in ("slurmctld", "slurmd"):
            outputs.append((folder / f"{name}.out").open("wb"))
            daemons.append(subprocess.Popen([_command(name), "-D"], stdout=outputs[-1],
                                            stderr=subprocess.STDOUT, env=env))

        def idle() -> bool:
            if any(p.poll() is not None for p in daemons):
                raise RuntimeError("a SLURM daemon exited: " + ", ".join(
                    f"{p.args[0]} {p.returncode}" for p in daemons if p.poll() is not None)
                    + "\n" + "\n".join((folder / f"{n}.out").read_text(errors="replace")
                                       for n in ("slurmctld", "slurmd")))
            state = subprocess.run([_command("sinfo"), "-h", "-o", "%T"], env=env,
                                   capture_output=True, text=True, timeout=30)
            return state.returncode == 0 and state.stdout.strip() == "idle"

        _wait_for(idle, "node not idle", folder)
        yield env
