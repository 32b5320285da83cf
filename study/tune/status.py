"""The driver's status line, printed once a minute while the study's Tune experiment runs."""

import threading
import time

STATUS_EVERY_S = 60.0


class StatusLine(threading.Thread):
    """Once a minute: cells done, running and waiting; trials running and finished; slots in use; elapsed time;
    and the time left, once the epochs run so far allow an estimate."""

    def __init__(self, launch, slots: int, cpus: float, gpus: float):
        super().__init__(daemon=True)
        self.launch, self.slots, self.started, self.over = launch, slots, time.monotonic(), threading.Event()
        self.cpus, self.gpus = cpus, gpus

    def run(self) -> None:
        while not self.over.wait(STATUS_EVERY_S):
            searcher = getattr(self.launch, "searcher", None)
            try:
                status = searcher.status() if searcher is not None else None
            except RuntimeError:  # the Tune loop changed a dict while it was read: next minute
                continue
            if status is not None:
                print(f"[{time.strftime('%H:%M:%S')}] {self.line(status, time.monotonic() - self.started)}",
                      flush=True)

    def line(self, status: dict, elapsed: float) -> str:
        """The status line of the searcher's ``status()``, ``elapsed`` seconds after the study began."""
        left = status["work_left"] / status["work_done"] * elapsed if status["work_done"] else None
        return (f"status: cells {status['done']} done, {status['running']} running, {status['waiting']} waiting; "
                f"trials {status['trials_running']} running, "
                + (f"{status['trials_starting']} starting, " if status["trials_starting"] else "")
                + f"{status['trials_finished']} finished; slots {status['trials_running']}/{self.slots} in use; "
                f"{_minutes(elapsed)} elapsed" + (f", about {_minutes(left)} left" if left else "")
                + self._waiting(status))

    def _waiting(self, status: dict) -> str:
        """What a study with free slots but no free resources waits for (a busy cluster, or nodes coming)."""
        import ray

        if (status["trials_running"] + status["trials_starting"] >= self.slots  # the rest: its own trials starting
                or not status["waiting"] + status["running"]):
            return ""
        free = ray.available_resources()
        if free.get("CPU", 0) >= self.cpus and free.get("GPU", 0) >= self.gpus:
            return ""
        need = f"{self.cpus:g} CPU(s)" + (f" and {self.gpus:g} GPU(s)" if self.gpus else "")
        has = f"{free.get('CPU', 0):g} CPU(s)" + (f" and {free.get('GPU', 0):g} GPU(s)" if self.gpus else "")
        return f"; waiting for resources: a trial needs {need}, the cluster has {has} free"

    def stop(self) -> None:
        self.over.set()


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"
