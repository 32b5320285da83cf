"""A trainable that stands in for the study's own (study/tune/trainable.py) and trains nothing: for tests of the
driver's scheduling and for bench/bench_cluster.py. It needs no torch, so a Ray of 64 logical CPUs on a small
machine can run 64 of them at once.

    run_launch(args, trainable=standin(lambda config: 0.5))   # every epoch half a second
"""


def default_value(trial: dict) -> float:
    """A validation metric that is a fixed function of the learning rate and batch size (best at 1e-3, 128)."""
    import math

    return 1 / (1 + abs(math.log10(trial["lr"]) + 3) + abs(math.log2(trial["batch_size"] / 128)) / 4)


def standin(epoch_seconds, value=default_value, failing: tuple[str, ...] = (), hold=None, reports=None):
    """A trainable that trains nothing: each epoch sleeps ``epoch_seconds(config)`` (then waits while
    ``hold(config, epoch)`` is true) and reports ``value(trial config) * epoch / epochs`` as its validation
    metric, through the study's own Reporter, so its checkpoints, curves and seed-run files look like a real
    trial's. Every trial of a cell in ``failing`` raises at its start.

    ``reports(config, epoch)``: whether an epoch is reported to Tune (default: every one; the last always is).
    Each row also says how long the trial's previous report kept it waiting (``report_wait_s``): Tune's driver
    takes a function trainable's next result only once it has handled the last, so that is the driver's share
    of the trial's time."""

    def trainable(config: dict, datasets: dict) -> None:
        import csv
        import io
        import json
        import time

        import numpy as np

        from data.constants import TASK_CLASSES
        from study.metrics import classification_metrics
        from study.tune.trainable import FINAL_FILES, SEARCH_FILES, Reporter, restore_work_dir

        trial = config["trial"]
        if config["cell"] in failing:
            raise RuntimeError(f"{config['cell']} cannot train (a stand-in's failure)")
        work = restore_work_dir(config)
        report = Reporter(work, SEARCH_FILES if config["phase"] == "search" else FINAL_FILES)
        rows = list(csv.DictReader(io.StringIO((work / "metrics.csv").read_text()))) \
            if (work / "metrics.csv").exists() else []
        final, waited_s = value(trial), 0.0
        for epoch in range(len(rows) + 1, trial["epochs"] + 1):
            time.sleep(epoch_seconds(config))
            waited = 0
            while hold is not None and hold(config, epoch) and waited < 6000:  # a guard, not a measurement
                time.sleep(0.1)
                waited += 1
            metric = final * epoch / trial["epochs"]
            rows.append({"epoch": epoch, "train_loss": 1 - metric, "val_metric": metric, "best_val_metric": metric,
                         "report_wait_s": waited_s})
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            (work / "metrics.csv").write_text(buffer.getvalue())
            if reports is None or reports(config, epoch) or epoch == trial["epochs"]:
                started = time.perf_counter()
                report(rows[-1])
                waited_s = time.perf_counter() - started
        if config["phase"] == "final":
            classes = TASK_CLASSES[trial["task"]]
            truth = np.arange(20) % len(classes)
            metrics = classification_metrics(truth, np.where(np.arange(20) < 20 * final, truth, 0), classes)
            (work / "best.pt").write_bytes(b"a stand-in's weights")
            (work / "final.json").write_text(json.dumps({"epochs_run": trial["epochs"], "best_epoch": trial["epochs"],
                                                         "val": metrics, "test": metrics}))
            report({"final": 1})
    return trainable
