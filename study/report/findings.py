"""Findings: sentences computed from the numbers, never typed in."""

from data.constants import ARRHYTHMIA_CLASSES, TASKS
from study.metrics import SELECTION_NAME
from study.report.reading import NO_RESULT, ReportedStudy
from study.report.tables import _pm

RARE_CLASSES = ("S", "F")  # the two rarest AAMI classes in MIT-BIH (about 2.5 % and 0.7 % of beats)


def _pts(value: float) -> str:
    return f"{value:+.2f}"


def _best_findings(study: ReportedStudy, task: str) -> list[str]:
    name = SELECTION_NAME[task]
    ok = [c for c in study.cells if c.task == task and c.ok]
    title = "Arrhythmia" if task == "arrhythmia" else "MI"
    if not ok:
        return [f"**{title}**: no cell has a result yet."]
    best = max(ok, key=lambda c: c.main.mean)  # ties: the first cell in table order
    text = (f"**{title}**: the highest mean test {name} is {best.label} at {_pm(best.main)} % "
            f"({best.main.n} seed{'s' if best.main.n != 1 else ''}).")
    others = [c for c in ok if c is not best]
    if others:
        second = max(others, key=lambda c: c.main.mean)
        margin = best.main.mean - second.main.mean
        spreads = [s for s in (best.main.std, second.main.std) if s is not None]
        text += f" The runner-up is {second.label} at {_pm(second.main)} %, {margin:.2f} points behind"
        if spreads:
            relation = "more" if margin > max(spreads) else "less" if margin < max(spreads) else "no more"
            text += f", {relation} than the larger seed-to-seed standard deviation of the two ({max(spreads):.2f})."
        else:
            text += "; with one seed there is no spread to compare that margin with."
    chosen = max(ok, key=lambda c: c.val.mean)
    if chosen is best:
        text += (f" It also has the highest validation {name} ({_pm(chosen.val)} %), so choosing on validation "
                 "would name the same cell.")
    else:
        text += (f" Choosing on validation {name}, the only choice a selection may make, would name "
                 f"{chosen.label} instead (validation {_pm(chosen.val)} %, test {_pm(chosen.main)} %).")
    ranking = []
    for model in dict.fromkeys(c.model for c in ok):
        mine = [c for c in ok if c.model == model]
        pick = max(mine, key=lambda c: c.val.mean)
        ranking.append((pick.main.mean, model, pick))
    ranking.sort(key=lambda item: -item[0])
    if len(ranking) > 1:
        text += (" Models ranked by the test figure of their cell with the best validation figure: "
                 + ", ".join(f"{model} {mean:.2f} ({pick.method}/{pick.init_label})"
                             for mean, model, pick in ranking) + ".")
    return [text]


def _oversampling_findings(study: ReportedStudy) -> list[str]:
    lines = []
    classes = ARRHYTHMIA_CLASSES
    rare = [c for c in RARE_CLASSES if c in classes]
    common = [c for c in classes if c not in rare]
    models = list(dict.fromkeys(c.model for c in study.cells if c.task == "arrhythmia"))
    for model in models:
        base = study.cell("arrhythmia", model, "none", "scratch")
        over = study.cell("arrhythmia", model, "smote", "scratch")
        if base is None or over is None:
            continue
        if not (base.ok and over.ok):
            missing = " and ".join(c.label for c in (base, over) if not c.ok)
            lines.append(f"{model}: no comparison yet ({missing}: {NO_RESULT}).")
            continue

        def d(key: str) -> float:
            return over.test[key].mean - base.test[key].mean

        rare_text = "; ".join(f"{c} {_pts(d('f1/' + c))} (precision {_pts(d('precision/' + c))}, "
                              f"recall {_pts(d('recall/' + c))})" for c in rare)
        common_text = ", ".join(f"{c} {_pts(d('f1/' + c))}" for c in common)
        helped = [c for c in rare if d("f1/" + c) > 0]
        if len(helped) == len(rare):
            verdict = f"it helped {' and '.join(rare)}"
        elif helped:
            verdict = f"it helped {', '.join(helped)} but not {', '.join(c for c in rare if c not in helped)}"
        else:
            verdict = f"it helped neither {' nor '.join(rare)}"
        losers = [c for c in common if d("f1/" + c) < 0]
        lost = ", ".join(f"{c} ({_pts(d('f1/' + c))})" for c in losers)
        cost = f"the other classes that lost F1: {lost}" if losers else "no other class lost F1"
        lines.append(f"{model}: {over.method} against none changed test F1 of the rare classes by {rare_text}; "
                     f"of the others by {common_text}; macro F1 by {_pts(d('macro_f1'))} points. "
                     f"So {verdict}; {cost}.")
    return lines


def _transfer_findings(study: ReportedStudy) -> list[str]:
    lines = []
    for c in study.cells:
        if c.task != "mi" or c.init != "scratch":
            continue
        transfer = study.cell("mi", c.model, c.oversample, "transfer")
        if transfer is None:
            continue
        if not (c.ok and transfer.ok):
            missing = " and ".join(x.init_label for x in (transfer, c) if not x.ok)
            lines.append(f"{c.model} ({c.method}): no comparison yet ({missing}: {NO_RESULT}).")
            continue
        gap = transfer.main.mean - c.main.mean
        if gap > 0:
            verdict = f"transfer ahead by {gap:.2f} points"
        elif gap < 0:
            verdict = f"scratch ahead by {-gap:.2f} points"
        else:
            verdict = "no difference"
        lines.append(f"{c.model} ({c.method}): {transfer.init_label} {_pm(transfer.main)} % against scratch "
                     f"{_pm(c.main)} % test F1 of MI: {verdict}.")
    return lines


def findings(study: ReportedStudy) -> list[str]:
    """Markdown bullets, every number in them computed from the study's files."""
    seeds = sorted({c.main.n for c in study.cells if c.ok})
    out = ["Naming the best cell from test figures describes the finished results; it selects nothing. "
           "Inside every cell, epochs, learning rate and batch size were chosen on validation only."]
    for task in TASKS:
        if any(c.task == task for c in study.cells):
            out += _best_findings(study, task)
    oversampling = _oversampling_findings(study)
    if oversampling:
        out.append("**Oversampling on arrhythmia** (test F1 differences in percentage points, oversampled minus "
                   "none, mean over seeds):\n" + "\n".join(f"  - {line}" for line in oversampling))
    transfer = _transfer_findings(study)
    if transfer:
        out.append("**Transfer against scratch on MI**, per model:\n" + "\n".join(f"  - {line}" for line in transfer))
    if seeds:
        count = " or ".join(map(str, seeds))
        out.append(f"With {count} seed(s) per cell, a difference smaller than the seed-to-seed standard deviation "
                   "(table 2) is not evidence of an effect.")
    return out
