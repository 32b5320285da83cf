"""A `cnet` trial on beats built from the raw MIT-BIH records: the intra-patient split against the inter-patient one.

    python -m bench.bench_physionet_trial [--records ../shared/physionet/mitdb] [--epochs 20]

Builds both splits with data.physionet into bench/_work/, trains `cnet` (the trial's defaults: lr 0.001,
batch 256) for `--epochs` epochs on each, chooses the epoch on validation (10% of the training records'
beats) and evaluates test once; writes the "physionet-trial" section of bench/RESULTS.md.
"""

import argparse
import time
from pathlib import Path

from bench._results import write_section
from data import prepare_task
from data.physionet import build
from study.config import TrialConfig
from study.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "physionet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=Path, default=ROOT.parent / "shared" / "physionet" / "mitdb")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    lines = [f"`cnet`, {args.epochs} epochs, lr 0.001, batch 256, seed 0, CPU; the epoch is chosen on validation "
             "macro F1 and the test split is evaluated once. Acceptance: intra test macro F1 at least 0.90.", "",
             "| split | train beats | test beats | best epoch | val macro F1 | test macro F1 | test F1 N / S / V / F / Q | "
             "minutes |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for split in ("intra", "inter"):
        folder = WORK / split
        build("mitdb", args.records, folder, split=split, seed=0)
        data = prepare_task("arrhythmia", folder, seed=0)
        print(data.summary(), flush=True)
        started = time.perf_counter()
        final = run_trial(TrialConfig(epochs=args.epochs), data, WORK / f"trial-{split}", log=print)
        minutes = (time.perf_counter() - started) / 60
        per_class = " / ".join(f"{final['test']['per_class'][c]['f1']:.3f}" for c in data.class_names)
        lines.append(f"| {split} | {len(data.train.y):,} | {len(data.test.y):,} | {final['best_epoch']} | "
                     f"{final['val']['macro_f1']:.4f} | {final['test']['macro_f1']:.4f} | {per_class} | {minutes:.1f} |")
        print(lines[-1], flush=True)
    lines += ["", "The inter split's validation beats come from the training records (DS1), so validation is still "
              "intra-patient there and overstates what the test records (DS2, other patients) see."]
    write_section("physionet-trial", "\n".join(lines))


if __name__ == "__main__":
    main()
