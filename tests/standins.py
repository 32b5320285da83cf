"""Trainables that stand in for the study's own (study/tune/trainable.py) in tests: `run_launch(args, trainable=...)`;
the one that sleeps instead of training is study/tune/standin.py (the benchmarks run it too)."""

import sys
import time
from pathlib import Path


def crashing_once(marker: Path, epoch: int):
    """The study's trainable, but a search trial raises once right after reporting ``epoch`` (until ``marker``
    exists): a worker that dies mid-trial, which Tune retries from the trial's last checkpoint."""
    from study.tune.trainable import study_trainable

    def trainable(config: dict, datasets: dict) -> None:
        from ray import tune

        report = tune.report

        def report_then_crash(metrics, checkpoint=None):
            report(metrics, checkpoint=checkpoint)
            if config["phase"] == "search" and metrics.get("epoch") == epoch:
                try:
                    with open(marker, "x") as handle:  # one trial wins, of two that reach the epoch at once
                        handle.write(f"crashed after epoch {epoch}\n")
                except FileExistsError:
                    return
                raise RuntimeError(f"injected crash after epoch {epoch}")

        tune.report = report_then_crash
        try:
            study_trainable(config, datasets)
        finally:
            tune.report = report
    return trainable


def file_size_limited(max_bytes: int):
    """The study's trainable, run with the worker's file size limit (RLIMIT_FSIZE) at ``max_bytes``: a write past
    it fails in the kernel (EFBIG), as on a full disk. The worker's own limit comes back when the trial ends, so a
    reused worker runs later trials as before."""
    from study.tune.trainable import study_trainable

    def trainable(config: dict, datasets: dict) -> None:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
        try:
            study_trainable(config, datasets)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return trainable


def still_waiting(mark: Path, ready: bool, limit_s: float = 60) -> bool:
    """For a stand-in's ``hold``: whether a trial waits on, until ``ready`` or ``limit_s`` after its first wait
    (which ``mark``, a file of the trial's own, records), so a test of an order of events that a loaded machine could
    reverse forces that order and still ends where the driver never brings it about."""
    if not mark.exists():
        mark.write_text(str(time.time()))
    return not ready and time.time() - float(mark.read_text()) < limit_s


def launch_args(*flags: str):
    """The parsed flags of `python -m study launch FLAGS`, for run_launch."""
    from study.cli import get_args_parser

    args = get_args_parser().parse_args(["launch", *map(str, flags)])
    args.argv = ["launch", *map(str, flags)]
    return args


def sleeping(seconds: dict[str, float]):
    """A trainable whose epochs sleep ``seconds[model]``."""
    from study.tune.standin import standin

    return standin(lambda config: seconds[config["trial"]["model"]])


def standin_driver(seconds: dict[str, float]) -> list[str]:
    """What stands for `python -m study` in a command line (``launch FLAGS`` follow it): the real driver with a
    ``sleeping(seconds)`` trainable, for tests that run the driver as a user does (a process to interrupt or
    kill) without training. Run it with the repository on PYTHONPATH."""
    code = ("import sys; from study.launch import run_launch; from tests.standins import launch_args, sleeping; "
            f"sys.exit(run_launch(launch_args(*sys.argv[2:]), trainable=sleeping({seconds!r})))")
    return [sys.executable, "-c", code]
