"""The suite's Ray instances: one local Ray of 2 CPUs that the tests asking for it share (`shared_ray`, the
`ray_2cpu` fixture), a Ray of a test's own for tests that need other resources or settings (`own_ray`), and the
end of a cluster a test started with `ray start` (`stop_cluster`).

Starting and stopping a Ray takes 3 to 4 s on 2 cores; most in-process studies run on the same 2-CPU instance."""

import contextlib
import os
import signal
import time
from pathlib import Path

SETTINGS = dict(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)


def shared_ray():
    """The shared 2-CPU, GPU-less Ray: the one running if it is that, else a new one (ending any other)."""
    import ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
        if resources.get("CPU") == 2 and not resources.get("GPU") and len(ray.nodes()) == 1:
            return ray
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, **SETTINGS)
    return ray


@contextlib.contextmanager
def own_ray(**settings):
    """A Ray of the test's own (``settings`` as ray.init takes them), in place of the shared one while it runs."""
    import ray

    ray.shutdown()
    ray.init(**{**SETTINGS, **settings})
    try:
        yield ray
    finally:
        ray.shutdown()


def end_ray() -> None:
    """Shut down whatever Ray this process runs (at the end of the session)."""
    import sys

    ray = sys.modules.get("ray")  # not imported: nothing to shut down, and no reason to import it
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def stop_cluster(temp_dir: str, grace_s: float = 10.0) -> None:
    """Stop the Ray cluster started on this machine with `ray start --head --temp-dir TEMP_DIR` (its nodes, and the
    workers and agents they started), and nothing else: `ray stop` would end every Ray on the machine, a user's own
    and the suite's other instances among them."""
    pids = _cluster_processes(temp_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = {pid for pid in pids if _running(pid)}  # one gone may have its number reused
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.1)


def _cluster_processes(temp_dir: str) -> set[int]:
    """The processes whose command line names ``temp_dir`` (every node's GCS, raylet, monitors: a worker node takes
    the head's temporary folder), and their descendants (workers and agents rename themselves ray::...)."""
    parents, found = {}, set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if temp_dir.encode() in cmdline:
            found.add(int(proc.name))
    while more := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= more
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return False
