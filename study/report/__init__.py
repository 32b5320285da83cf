"""The study report: tables, plots and findings rebuilt from the files a study wrote.

    python -m study report results/smoke                  # writes results/smoke/report/report.md
    python -m study report results/full --out docs/full   # somewhere else
    python -m study report                                # the most recently changed study under results/
    python -m study report results/smoke --no-plots       # tables and findings only

Reads only ``study.json`` and ``cells/*.json``, through study/results.py (their schema and one reader): no Ray,
no GPU, no retraining. A finished, partial or still-running study all work: a planned cell without a result file
is marked "no result yet" in every table, never dropped. A result file that cannot be read gets one sentence in
the report's Problems section and on stderr, and the rest is built.

Every figure is a test-set percentage, the mean over the cell's seeds of that figure computed on each
seed's test predictions (std: sample standard deviation over seeds). Every table is written as Markdown
and CSV and gathered, with the plots and the findings, in ``report.md``.

In a notebook: ``study_frames(folder)`` gives pandas frames of its cells, seed runs and search trials (frames.py).

The package: reading.py (a study folder as ReportedStudy), frames.py, tables.py, findings.py, plots.py, and build.py
(report.md, the files, the command line).
"""

from study.report.frames import StudyFrames
from study.report.build import (ReportResult, add_report_arguments, build_report, default_out_dir, latest_study,
                                run_report)
from study.report.reading import NO_RESULT, UNREADABLE, ReportedCell, ReportedStudy, Stat, load_study, study_frames
from study.report.tables import NOT_RUN, summary_table

__all__ = ["NO_RESULT", "NOT_RUN", "UNREADABLE", "ReportResult", "ReportedCell", "ReportedStudy", "Stat", "StudyFrames",
           "add_report_arguments", "build_report", "default_out_dir", "latest_study", "load_study", "run_report",
           "study_frames", "summary_table"]
