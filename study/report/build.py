"""Building the report: the header, report.md, each table's files and the plots; the command line."""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from data import entry
from data.files import write_text
from study.config import RECIPES, describe_recipe
from study.report.findings import findings
from study.report.plots import PLOT_FILES, write_plots
from study.report.reading import NO_RESULT, UNREADABLE, ReportedStudy, load_study
from study.report.tables import (Table, cells_table, inter_patient_table, load_published, original_layout_table,
                                 published_table, summary_table)
from study.results import CELLS_FOLDER, STUDY_FILE
from study.storage import Storage, is_uri

@dataclass
class ReportResult:
    study_dir: str  # the folder or URI read
    out_dir: Path
    report_path: Path
    tables: dict[str, Table]
    table_paths: dict[str, tuple[Path, Path]]  # name -> (Markdown, CSV)
    plots: dict[str, Path]
    findings: list[str]
    problems: list[str]
    study: ReportedStudy  # as read, so a caller need not read it again


def _header(study: ReportedStudy) -> list[str]:
    record = study.record
    data = record.data if record is not None else {}
    done = sum(c.ok for c in study.cells)
    waiting = sum(c.status == NO_RESULT for c in study.cells)
    bad = sum(c.status == UNREADABLE for c in study.cells)
    lines = [f"# Study report: {study.name}", "",
             f"Rebuilt by `python -m study report` from the files in `{study.directory}`; "
             "nothing was retrained. Every figure is a test-set percentage unless marked val.", ""]
    facts = []
    if record is not None:
        facts.append(f"profile `{record.profile}`, base seed {record.seed}, created {record.created}")
    source = data.get("source", "not recorded")
    where = f" (input `{data['input']}`)" if data.get("input") else ""
    limit = f", at most {data['limit']} beats of each CSV" if data.get("limit") else ""
    own = data.get("model_limits") if isinstance(data.get("model_limits"), dict) else {}
    if limit and own:
        limit += " (" + ", ".join(f"{m}: {f'at most {n}' if n else 'every beat'}" for m, n in sorted(own.items())) + ")"
    facts.append(f"data: {source}{where}{limit}")
    fingerprints = data.get("fingerprints")
    if isinstance(fingerprints, dict) and fingerprints:
        facts.append("data fingerprints: " + ", ".join(f"{k} `{str(v)[:12]}`" for k, v in sorted(fingerprints.items())))
    facts.append(f"oversampling `smote` means: {study.smote_method}")
    if record is not None:
        recipe = str(record.plan.get("recipe", "original"))  # a study from before recipes: the original's
        how = f" ({describe_recipe(RECIPES[recipe])})" if recipe in RECIPES else ""
        facts.append(f"training recipe of every trial: {recipe}{how}")
        if record.plan.get("rhythm") is True:
            facts.append("arrhythmia models see each beat's RR intervals beside its samples (`--rhythm`, "
                         "data/rhythm.py)")
    facts.append(f"{done} of {len(study.cells)} cells have results; {waiting} {NO_RESULT}"
                 + (f"; {bad} unreadable" if bad else ""))
    failed = [c for c in study.cells if c.ok and c.trials_failed]
    if failed:
        facts.append("search trials that failed before their first validation (counted in trials, not plotted "
                     "in colour): " + ", ".join(f"{c.cell_id} {c.trials_failed}" for c in failed))
    sources = {f"{c.model}-{c.oversample}": c.transfer_source for c in study.cells if c.ok and c.transfer_source}
    if sources:
        facts.append("transfer sources: " + ", ".join(f"{k} `{v}`" for k, v in sorted(sources.items())))
    lines += [f"- {fact}" for fact in facts] + [f"- {note}" for note in study.notes]
    return lines


def render_report(study: ReportedStudy, tables: list[Table], found: list[str], plots: dict[str, Path]) -> str:
    lines = _header(study)
    lines += ["", "## Findings", ""] + [f"- {f}" for f in found]
    lines += ["", "## Problems", ""]
    lines += [f"- {p}" for p in study.problems] if study.problems else ["None: every result file could be read."]
    for table in tables:
        lines += ["", f"## {table.title}", "", table.notes, "",
                  f"Files: [`{table.name}.md`]({table.name}.md), [`{table.name}.csv`]({table.name}.csv)", "",
                  table.markdown().rstrip("\n")]
    if plots:
        lines += ["", "## Plots", ""]
        for name, path in plots.items():
            lines += [f"**{PLOT_FILES[name][1]}**", "", f"![{name}]({path.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def build_report(study_dir: Path | str | Storage, out_dir: Path | str | None = None, *, plots: bool = True,
                 quiet: bool = False) -> ReportResult:
    """Write report.md, each table as .md and .csv, and the plots; return what was written and found.

    ``out_dir`` defaults to ``<study_dir>/report`` for a local study and to ``results/<name>-report`` (a
    local folder) for one read from a URI. Problems (unreadable files) are listed in the report and, unless
    ``quiet``, printed on stderr; they do not stop the rest of the report.
    """
    study = load_study(study_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(study_dir, study.name)
    out.mkdir(parents=True, exist_ok=True)
    for problem in study.problems if not quiet else ():
        print(f"report: {problem}", file=sys.stderr)
    tables = [original_layout_table(study), cells_table(study), published_table(study, load_published())]
    if study.record is not None and study.record.plan.get("split") == "inter":
        tables.append(inter_patient_table(study))
    table_paths = {}
    for table in tables:
        md, csv_path = out / f"{table.name}.md", out / f"{table.name}.csv"
        # Each file whole or as it was: a report rebuilt over an older one never leaves a file half-written.
        write_text(md, f"## {table.title}\n\n{table.notes}\n\n{table.markdown()}")
        write_text(csv_path, table.csv_text())
        table_paths[table.name] = (md, csv_path)
    plot_paths = write_plots(study, out) if plots else {}
    found = findings(study)
    report_path = out / "report.md"
    write_text(report_path, render_report(study, tables, found, plot_paths))
    return ReportResult(study.directory, out, report_path, {t.name: t for t in tables}, table_paths,
                        plot_paths, found, list(study.problems), study)


def default_out_dir(study_dir: Path | str | Storage, name: str) -> Path:
    """STUDY/report for a local study; results/NAME-report here for a study read from a URI."""
    if isinstance(study_dir, Storage):
        study_dir = study_dir.location
    return Path("results") / f"{name}-report" if is_uri(study_dir) else Path(study_dir) / "report"


def latest_study(root: Path | str = "results") -> Path:
    """The most recently changed study folder under ``root`` (one with study.json or cells/)."""
    root = Path(root)
    children = sorted(root.iterdir()) if root.is_dir() else []
    candidates = [p for p in children if (p / STUDY_FILE).exists() or (p / CELLS_FOLDER).is_dir()]
    if not candidates:
        raise FileNotFoundError(f"no study folder found under {root}/; pass one, "
                                "e.g. python -m study report results/smoke.")

    def changed(p: Path) -> float:
        files = [p / STUDY_FILE, *(p / CELLS_FOLDER).glob("*.json")]
        return max((f.stat().st_mtime for f in files if f.exists()), default=p.stat().st_mtime)

    return max(candidates, key=lambda p: (changed(p), p.name))


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", nargs="?", type=entry.location, default=None,
                        help="study folder, e.g. results/smoke, or a URI such as s3://bucket/results/smoke "
                             "(default: the most recently changed folder under results/)")
    parser.add_argument("--out", type=entry.path, default=None,
                        help="output folder (default: STUDY_DIR/report; results/NAME-report for a URI)")
    parser.add_argument("--no-plots", action="store_true", help="tables and findings only")


def run_report(args: argparse.Namespace) -> int:
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; the report is written into a folder: give a folder's path")
    study_dir = Storage.at(args.study_dir if args.study_dir is not None else latest_study())
    result = build_report(study_dir, args.out, plots=not args.no_plots)
    print(summary_table(result.study, problems=False), end="")  # build_report printed them on stderr
    written = len(result.table_paths) * 2 + len(result.plots)
    print(f"report: {result.report_path} ({written} more files in {result.out_dir})")
    return 0
