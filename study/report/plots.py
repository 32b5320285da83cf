"""The report's plots: matplotlib Figure objects on the Agg canvas (no pyplot state, no display needed)."""

from pathlib import Path

from data.constants import ARRHYTHMIA_CLASSES, TASKS
from data.files import atomic_write
from study.metrics import SELECTION_NAME
from study.report.reading import NO_RESULT, NOT_PLANNED, ReportedStudy

PLOT_FILES = {
    "confusion": ("confusion_arrhythmia.png", "Normalised test confusion matrix of each model's best arrhythmia "
                                              "cell (best by validation macro F1; summed over seeds)"),
    "per_class_f1": ("per_class_f1.png", "Test F1 per class, by model and oversampling (mean ± std over seeds)"),
    "val_curves": ("val_curves.png", "Validation curve of each cell's best search trial"),
    "trials_arrhythmia": ("trials_arrhythmia.png", "Search trials on arrhythmia: learning rate x batch size, "
                                                   "coloured by validation macro F1 (ring: chosen)"),
    "trials_mi": ("trials_mi.png", "Search trials on MI: learning rate x batch size, coloured by validation "
                                   "F1 of MI (ring: chosen)"),
}


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    # No "Software" text chunk: two runs of the same matplotlib give byte-identical files.
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _models(study: ReportedStudy, task: str | None = None) -> list[str]:
    return list(dict.fromkeys(c.model for c in study.cells if task is None or c.task == task))


def plot_confusion(study: ReportedStudy, path: Path) -> Path:
    models = _models(study, "arrhythmia") or ["(none)"]
    fig = _new_figure(3.2 * len(models), 3.8)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        cells = [c for c in study.cells if c.task == "arrhythmia" and c.model == model and c.ok]
        if not cells:
            ax.set_title(model, fontsize=10)
            ax.set_box_aspect(1)
            _empty(ax, NO_RESULT)
            continue
        best = max(cells, key=lambda c: c.val.mean)
        counts = best.confusion
        normalised = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in counts]
        ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
        for i, row in enumerate(normalised):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 else "black")
        ticks = range(len(ARRHYTHMIA_CLASSES))
        ax.set_xticks(ticks, ARRHYTHMIA_CLASSES)
        ax.set_yticks(ticks, ARRHYTHMIA_CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{model}, {best.method}\nval macro F1 {best.val.mean:.1f} %", fontsize=9)
    return _save(fig, path)


def plot_per_class_f1(study: ReportedStudy, path: Path) -> Path:
    fig = _new_figure(12, 4)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    colours = "tab10"
    from matplotlib import colormaps

    cmap = colormaps[colours]

    def bars(ax, groups, series, value, title):
        ax.set_title(title, fontsize=10)
        if not any(v is not None for _, values in series for v in values):
            _empty(ax, NO_RESULT)
            return
        # Every planned series keeps its slot and colour, so bars do not move as more cells finish.
        width = 0.8 / len(series)
        for k, (label, values) in enumerate(series):
            present = [(g, v) for g, v in enumerate(values) if v is not None]
            if present:
                ax.bar([g + (k - (len(series) - 1) / 2) * width for g, _ in present], [v.mean for _, v in present],
                       width, yerr=[v.std or 0.0 for _, v in present], label=label, color=cmap(k % cmap.N),
                       capsize=2)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel(value)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))

    arrhythmia = [c for c in study.cells if c.task == "arrhythmia"]
    bars(left, list(ARRHYTHMIA_CLASSES),
         [(f"{c.model} / {c.method}", [c.test[f"f1/{k}"] if c.ok else None for k in ARRHYTHMIA_CLASSES])
          for c in arrhythmia],
         "test F1 (%)", "Arrhythmia: F1 per class")
    mi_models = _models(study, "mi")
    variants = list(dict.fromkeys((c.oversample, c.init) for c in study.cells if c.task == "mi"))
    series = []
    for oversample, init in variants:
        values = []
        for model in mi_models:
            cell = study.cell("mi", model, oversample, init)
            values.append(cell.test["f1"] if cell is not None and cell.ok else None)
        series.append((f"{oversample} / {init}", values))
    bars(right, mi_models, series, "test F1 of MI (%)", "MI: F1 of the MI class")
    return _save(fig, path)


def plot_val_curves(study: ReportedStudy, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    tasks = [t for t in TASKS if any(c.task == t for c in study.cells)] or ["arrhythmia"]
    models = _models(study) or ["(none)"]
    fig = _new_figure(3.2 * len(models), 2.8 * len(tasks))
    axes = fig.subplots(len(tasks), len(models), squeeze=False)
    for r, task in enumerate(tasks):
        for k, model in enumerate(models):
            ax = axes[r][k]
            ax.set_title(f"{task} / {model}", fontsize=9)
            cells = [c for c in study.cells if c.task == task and c.model == model and c.curve]
            if not cells:
                _empty(ax, NO_RESULT)
                continue
            for cell in cells:
                ax.plot([p["epoch"] for p in cell.curve], [100 * p["val_metric"] for p in cell.curve],
                        marker=".", label=f"{cell.method} / {cell.init}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"val {SELECTION_NAME[task]} (%)")
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_trials(study: ReportedStudy, task: str, path: Path) -> Path:
    models = _models(study, task) or ["(none)"]
    variants = list(dict.fromkeys((c.oversample, c.init) for c in study.cells if c.task == task)) or [("", "")]
    fig = _new_figure(3.0 * len(models) + 1, 2.6 * len(variants))
    axes = fig.subplots(len(variants), len(models), squeeze=False)
    scores = [100 * t["val_metric"] for c in study.cells if c.task == task for t in c.trials
              if t["val_metric"] is not None]
    low, high = (min(scores), max(scores)) if scores else (0.0, 100.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    mappable, handles = None, {}
    for r, (oversample, init) in enumerate(variants):
        for k, model in enumerate(models):
            ax = axes[r][k]
            ax.set_title(f"{model} / {oversample} / {init}", fontsize=9)
            cell = study.cell(task, model, oversample, init)
            if cell is None or not cell.trials:
                _empty(ax, NO_RESULT if cell is not None else NOT_PLANNED)
                continue
            failed = [t for t in cell.trials if t["val_metric"] is None]
            if failed:
                handles.setdefault("failed", ax.scatter([t["lr"] for t in failed], [t["batch_size"] for t in failed],
                                                        marker="x", color="0.5", s=30, label="failed"))
            for early, marker in ((False, "o"), (True, "v")):
                chosen = [t for t in cell.trials if t["stopped_early"] == early and t["val_metric"] is not None]
                if chosen:
                    mappable = ax.scatter([t["lr"] for t in chosen], [t["batch_size"] for t in chosen],
                                          c=[100 * t["val_metric"] for t in chosen], cmap="viridis",
                                          vmin=low, vmax=high, marker=marker, s=30,
                                          label="stopped early" if early else "completed")
                    handles.setdefault(mappable.get_label(), mappable)
            if cell.lr is not None:
                ax.scatter([cell.lr], [cell.batch_size], s=140, facecolors="none", edgecolors="red", linewidths=1.5)
            ax.set_xscale("log")
            ax.set_yscale("log", base=2)
            sizes = sorted({t["batch_size"] for t in cell.trials})
            ax.set_yticks(sizes, [str(s) for s in sizes])
            ax.minorticks_off()
            ax.set_xlabel("learning rate")
            ax.set_ylabel("batch size")
    if mappable is not None:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3, fontsize=8)
        fig.colorbar(mappable, ax=axes, label=f"val {SELECTION_NAME[task]} (%)", shrink=0.8)
    return _save(fig, path)


def write_plots(study: ReportedStudy, out_dir: Path) -> dict[str, Path]:
    import matplotlib.style

    paths = {name: out_dir / file for name, (file, _) in PLOT_FILES.items()}
    # Defaults, not the user's matplotlibrc: the same files on every machine with this matplotlib.
    with matplotlib.style.context("default"):
        plot_confusion(study, paths["confusion"])
        plot_per_class_f1(study, paths["per_class_f1"])
        plot_val_curves(study, paths["val_curves"])
        plot_trials(study, "arrhythmia", paths["trials_arrhythmia"])
        plot_trials(study, "mi", paths["trials_mi"])
    return paths
