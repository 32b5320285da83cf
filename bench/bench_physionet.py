"""Time data.physionet's whole MIT-BIH build (48 records, both splits) and compare its class counts with Kaggle's.

    python -m bench.bench_physionet                       # records from ../shared/physionet/mitdb
    python -m bench.bench_physionet --records DIR --keep input/physionet

Writes the `physionet` section of bench/RESULTS.md. The built CSVs (about 0.5 GB a split) go to a temporary
folder unless --keep names one.
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._results import write_section  # noqa: E402
from data import physionet as pn  # noqa: E402
from data.constants import ARRHYTHMIA_CLASSES, MITBIH_TEST, MITBIH_TRAIN  # noqa: E402

LIMIT_S = 120  # acceptance: the whole build under 2 minutes on 2 cores


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=ROOT.parent / "shared" / "physionet" / "mitdb")
    parser.add_argument("--keep", type=Path, default=None, help="build into KEEP/intra and KEEP/inter and keep it")
    return parser


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        runs = {}
        for split in pn.SPLITS:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pn.PhysioNetWarning)  # 102 and 104 have no MLII; expected
                summary = pn.build("mitdb", args.records, base / split, split=split, seed=0)
            runs[split] = (time.perf_counter() - start, summary)
            print(f"{split}: {runs[split][0]:.1f} s")

    counts = runs["intra"][1]["counts"]
    rows = ["| class | built | Kaggle | difference |", "|---|---:|---:|---:|"]
    for name in ARRHYTHMIA_CLASSES:
        want = pn.KAGGLE_COUNTS[name]
        rows.append(f"| {name} | {counts[name]} | {want} | {100 * (counts[name] - want) / want:+.2f}% |")
    rows.append(f"| all | {sum(counts.values())} | {sum(pn.KAGGLE_COUNTS.values())} | |")

    def files(summary):
        return ", ".join(f"{name} {summary['files'][name]['rows']} rows from {len(summary['files'][name]['records'])} "
                         f"records" for name in (MITBIH_TRAIN, MITBIH_TEST))

    inter = runs["inter"][1]["files"]
    shared = set(inter[MITBIH_TRAIN]["records"]) & set(inter[MITBIH_TEST]["records"])
    body = "\n".join([
        f"Full build of the {len(runs['intra'][1]['leads'])} MIT-BIH records in `{args.records}` "
        f"(read, resample, window, cut, write both CSVs and side files); acceptance: under {LIMIT_S} s.",
        "",
        "| split | wall time (s) | files |", "|---|---:|---|",
        *(f"| {split} | {t:.1f} | {files(s)} |" for split, (t, s) in runs.items()),
        "",
        "Class counts against the Kaggle set's (acceptance: within 0.5% per class):",
        "",
        *rows,
        "",
        f"inter split: records in both train and test: {', '.join(sorted(shared)) or 'none'}.",
    ])
    print(body)
    write_section("physionet", body)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
