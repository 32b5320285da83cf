"""Starting or joining Ray for the study, and how many of its trials the cluster runs at once."""

import argparse
import json
import logging
import os
import socket
from pathlib import Path

# Folders never shipped to cluster workers with the code.
WORKING_DIR_EXCLUDES = ["input/", "results/", "runs/", ".git/", ".venv/", "venv/", "bench/_work/", "**/__pycache__/",
                        "*.pt"]


def start_ray(args: argparse.Namespace) -> None:
    """Join the cluster at --address (or $RAY_ADDRESS), else start a Ray instance of this driver's own."""
    import ray

    if ray.is_initialized():
        return
    address = args.address or os.environ.get("RAY_ADDRESS")
    runtime_env = {}
    kwargs = dict(include_dashboard=False, log_to_driver=args.verbose,
                  logging_level=logging.INFO if args.verbose else logging.ERROR)
    if address:
        check_listening(address)
        if "working_dir" not in job_runtime_env():
            # The code reaches the cluster's workers as the runtime environment's working directory. A driver run
            # as a Ray job (`ray job submit --working-dir .`, a KubeRay RayJob) has shipped it already, and Ray
            # refuses a second one ("Failed to merge the Job's runtime env").
            runtime_env.update(working_dir=str(Path(__file__).resolve().parents[2]), excludes=WORKING_DIR_EXCLUDES)
        try:
            ray.init(address=address, runtime_env=runtime_env, **kwargs)
        except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"could not join the Ray cluster at {address}: {first}") from None
    else:
        # "local": a new instance even where `ray start` runs a cluster on this machine (--address auto joins it).
        ray.init(address="local", num_cpus=args.num_cpus, runtime_env=runtime_env, **kwargs)


def own_ray(args: argparse.Namespace) -> bool:
    """Whether the study runs on a Ray instance of its own (one node, started by start_ray), not a cluster."""
    import ray

    return not (args.address or os.environ.get("RAY_ADDRESS")) and len(ray.nodes()) == 1


def job_runtime_env() -> dict:
    """The runtime environment of the Ray job this driver runs as; {} when it is not run as one."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor for the entrypoint
    return (json.loads(raw).get("runtime_env") or {}) if raw else {}


def check_listening(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing answers at a cluster address: ray.init would retry for about 13 minutes
    (20 attempts of some 40 s each) before giving up."""
    if address in ("auto", "local"):
        return  # Ray resolves these itself, and says at once when no cluster runs here
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except ValueError:
        raise ValueError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), auto, or "
                         "ray://HOST:PORT") from None
    except OSError as error:
        raise ValueError(f"nothing answers at Ray address {address} ({error.strerror or error}): start the head "
                         "there with `ray start --head`, or check --address or RAY_ADDRESS") from None


def no_node_fits(cpus: float, gpus: float) -> tuple[str, bool] | None:
    """None where a node of the cluster offers a trial's ``cpus`` and ``gpus``; else the sentence saying what was
    asked and what the largest node has, and whether the cluster's autoscaler may add a node that offers it."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return None
    asked = f"{cpus:g} CPU(s)" + (f" and {gpus:g} GPU(s)" if gpus else "")
    most = f"{max((r.get('CPU', 0) for r in nodes), default=0):g} CPU(s)"
    if gpus:
        most += f" and {max((r.get('GPU', 0) for r in nodes), default=0):g} GPU(s)"
    sentence = (f"a trial asks for {asked} (--cpus-per-trial, --gpus-per-trial), and the largest node of the "
                f"cluster has {most}")
    return sentence, _autoscaler_offers(cpus, gpus)


def _autoscaler_offers(cpus: float, gpus: float) -> bool:
    """Whether the cluster's autoscaler (its configuration in the GCS, where one is set) may add a node with
    ``cpus`` and ``gpus``."""
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception:  # no autoscaler state in this Ray: a fixed cluster
        return False
    groups = getattr(config, "node_group_configs", None) or []
    return any(g.max_count != 0 and g.resources.get("CPU", 0) >= cpus and g.resources.get("GPU", 0) >= gpus
               for g in groups)


def trial_slots(resources: dict, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once: the searcher's cap on trials in flight, and how many Tune may
    keep waiting for resources (with one, trials would start one after another)."""
    slots = resources.get("CPU", 1) // cpus_per_trial
    if gpus_per_trial > 0:
        slots = min(slots, resources.get("GPU", 0) // gpus_per_trial)
    return max(1, int(slots))


def quiet(verbose: bool) -> None:
    """Ray's and Optuna's own reporting off unless -v: the study prints its own lines."""
    if verbose:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new output engine prints boxes even at verbose=0
    # Checkpointing every epoch makes Tune snapshot its state often; that is expected here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.execution.experiment_state").addFilter(vanished_staging_file)
    # A failed trial is one line of the study's (its cell and the error); Tune's traceback stays in the trial's
    # error.txt under tune/, and its closing list of the trials that failed in the study's last line.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).addFilter(told_by_the_study)


def vanished_staging_file(record: logging.LogRecord) -> bool:
    """False for Tune's traceback when a sync of its state found a temporary file gone: Tune renames its searcher
    state into place while its previous sync is still listing the folder. Harmless (the next sync copies the
    renamed file), but printed as an ERROR with a traceback in a run that is fine. -v still shows it."""
    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error))


def told_by_the_study(record: logging.LogRecord) -> bool:
    """False for Tune's messages that the study says in its own words: a trial's failure, the trials that did
    not complete."""
    return not str(record.msg).startswith(("Trial task failed for trial", "Trials did not complete"))
