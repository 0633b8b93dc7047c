"""A real single-node SLURM cluster on localhost for the launcher tests: munged, slurmctld and slurmd from Debian's
packages (slurm-wlm, munge), each with its own config, key, sockets, ports and state under a temporary folder.

``.ci/run`` installs the packages when it runs as root with apt; without them (or without root, which slurmd needs
to start jobs) the tests that need the cluster skip with that reason. Nothing here touches /etc or the system's
munge/slurm services.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


def missing_reason() -> str:
    """Why a cluster cannot start here ('' when it can)."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge "
                f"(.ci/run does this as root)")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs; these tests run only as root (as CI does)"
    return ""


def _free_ports(n: int) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class SlurmCluster:
    """A running cluster: ``env`` points SLURM's clients at it (SLURM_CONF)."""

    root: Path
    env: Dict[str, str]
    node: str

    def run(self, *argv: str) -> str:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=True).stdout

    def stop(self) -> None:
        """Cancel what is still queued, stop the daemons, and end any job step they left behind."""
        subprocess.run([_bin("scancel"), "--full", "--me"], env=self.env, capture_output=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            queue = subprocess.run([_bin("squeue"), "-h", "-o", "%i"], env=self.env, capture_output=True, text=True)
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(0.3)
        subprocess.run([_bin("scontrol"), "shutdown"], env=self.env, capture_output=True)
        for pid in os.listdir("/proc"):  # slurmstepd of this cluster: its working folder is under ours
            try:
                if pid.isdigit() and os.readlink(f"/proc/{pid}/cwd").startswith(str(self.root)):
                    os.kill(int(pid), 9)
            except OSError:
                pass
        for pid_file in ("slurmctld.pid", "slurmd.pid", "munge/munged.pid"):
            try:
                pid = int((self.root / pid_file).read_text().strip())
            except (OSError, ValueError):
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 15 if _ == 0 else 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


def start_cluster(root: Path, cpus: int = 2) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under ``root``; returns once the node is idle (or raises with the logs)."""
    root = Path(root)
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = root / "munge" / "munge.sock"
    subprocess.run([_bin("munged"), "--force", f"--socket={sock}", f"--key-file={key}",
                    f"--log-file={root / 'log' / 'munged.log'}", f"--pid-file={root / 'munge' / 'munged.pid'}",
                    f"--seed-file={root / 'munge' / 'seed'}"], check=True, capture_output=True)
    node = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = _free_ports(2)
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=dasslitetest", f"SlurmctldHost={node}(127.0.0.1)", f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        f"AuthInfo=socket={sock}", "CredType=cred/munge", f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}", f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}", f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "MpiDefault=none", "ReturnToService=2",
        "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=1,bf_interval=1",
        "MinJobAge=600", "JobRequeue=1", "KillWait=5", "InactiveLimit=0", "SlurmctldTimeout=30",
        "SlurmdTimeout=30", f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP", ""]))
    env = dict(os.environ, SLURM_CONF=str(conf))
    for var in [v for v in env if v.startswith(("SBATCH_", "SLURM_")) and v != "SLURM_CONF"]:
        env.pop(var)  # a cluster of the machine's own must not leak into this one
    cluster = SlurmCluster(root, env, node)
    try:
        subprocess.run([_bin("slurmctld"), "-f", str(conf), "-i"], env=env, check=True, capture_output=True)
        subprocess.run([_bin("slurmd"), "-f", str(conf)], env=env, check=True, capture_output=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run([_bin("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.returncode == 0 and state.stdout.strip() == "idle":
                return cluster
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n" + p.read_text()[-2000:] for p in (root / "log").glob("*.log"))
        raise RuntimeError(f"the test SLURM cluster did not come up within 60 s:\n{logs}")
    except BaseException:
        cluster.stop()
        raise
