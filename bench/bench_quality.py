"""How good the trial's recipe is on real beats: the original's plain Adam, the default recipe, the default with
each beat's RR intervals beside it (--rhythm, data/rhythm.py), and that validating an average of its weights
(--ema-decay, study/weight_average.py) or trained on a SMOTE-oversampled training split (data/oversample.py).

    python -m bench.bench_quality [--records ../shared/physionet/mitdb] [--epochs 40] [--seeds 0,1,2]
    python -m bench.bench_quality --seeds 0 --data-seeds 0,1,2 --splits inter   # other validation records
    python -m bench.bench_quality --finished-only      # the section again from the runs finished so far

Builds the MIT-BIH records into the Kaggle format with data.physionet (the `intra` split, a random 80/20 split of
beats like Kaggle's; the `inter` split, de Chazal et al.'s DS1 / DS2, validation by whole DS1 records), then trains
`cnet` at the original's settings (lr 0.001, batch 256, `--epochs` epochs) with each recipe (`--recipes`) and seed.
The epoch is chosen on validation macro F1 and the test split is evaluated once. `--seeds` vary the weights and the
batch order; `--data-seeds` the validation split (inter: which whole DS1 records validate, data/records.py; intra:
which 10% of the training beats), so that a recipe is judged on more than one set of validation patients. Every pair
of the two trains; the tables' means vary one seed with the other at 0 (weight seeds at data seed 0, data seeds at
weight seed 0), and the section holds the runs of the seeds given: `--finished-only` with every seed rewrites it
whole. Every run is a trial folder under bench/_work/quality/, so the same command continues an interrupted
benchmark; the "quality" section of bench/RESULTS.md is rewritten after each run. Stops with one line where the
records are absent (users' clones).
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench._results import write_section
from data import prepare_task
from data.physionet import build
from data.splits import read_split_info
from study.config import RECIPES, SPLITS_FILE, TrialConfig, describe_recipe
from study.metrics import AAMI_REPORTED, inter_patient_figures
from study.trial import run_trial
from study.trial_folder import finished_final

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "quality"
SPLITS = ("intra", "inter")
# Tried beside the named recipes while choosing the default (on validation): does weight decay add anything, and
# does more of it help the inter-patient split?
TRIED = {"adam-cosine": {"optimizer": "adam", "weight_decay": 0.0, "schedule": "cosine", "warmup_epochs": 2},
         "default+rhythm+wd0.1": {**RECIPES["default"], "weight_decay": 0.1, "rhythm": True}}
# The default validating an average of its weights (--ema-decay, study/weight_average.py).
AVERAGED = {"default+ema": {**RECIPES["default"], "ema_decay": 0.999}}
# The same recipes with each beat's RR intervals beside its samples (--rhythm, data/rhythm.py).
WITH_RHYTHM = {f"{name}+rhythm": {**fields, "rhythm": True} for name, fields in {**RECIPES, **AVERAGED}.items()}
# The default with the intervals, its training split oversampled by SMOTE (every class as large as N).
OVERSAMPLED = {"default+rhythm+smote": {**WITH_RHYTHM["default+rhythm"], "oversample": "smote"}}
CANDIDATES = {**RECIPES, **TRIED, **AVERAGED, **WITH_RHYTHM, **OVERSAMPLED}


def folder_name(split: str, fields: dict, epochs: int, seed: int, precision: str, data_seed: int = 0) -> str:
    """A run's folder, named by what it trains (so a recipe renamed or made the default reuses its runs); data seed
    0's runs are named as before data seeds were varied."""
    average = f"-ema{fields['ema_decay']:g}" if fields.get("ema_decay") else ""
    oversample = f"-{fields['oversample']}" if fields.get("oversample", "none") != "none" else ""
    return (f"{split}{'-rhythm' * fields.get('rhythm', False)}{oversample}-{fields['optimizer']}"
            f"-wd{fields['weight_decay']:g}-{fields['schedule']}-w{fields['warmup_epochs']}{average}-e{epochs}-s{seed}"
            f"{f'-d{data_seed}' * bool(data_seed)}-{precision}")


def describe(fields: dict) -> str:
    """A candidate in words: its recipe, and the RR intervals and oversampling where it has them."""
    rhythm = ", each beat's RR intervals beside it (--rhythm)" if fields.get("rhythm") else ""
    oversample = fields.get("oversample", "none")
    return describe_recipe(fields) + rhythm + (f", training split oversampled ({oversample})" * (oversample != "none"))


def mean_std(values: list[float]) -> str:
    """Mean ± sample standard deviation (n - 1, as the report's); one value has no spread."""
    if not values:
        return "–"
    return f"{np.mean(values):.4f}" + (f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else "")


def intra_table(runs: dict, recipes: list[str], classes: tuple[str, ...]) -> list[str]:
    lines = ["| recipe | seeds (weights/data) | val macro F1 | test macro F1 (mean ± std) | test F1 "
             + " / ".join(classes) + " | training minutes a run |", "|---|---|---:|---:|---|---:|"]
    for recipe in recipes:
        done = [r for (split, name, *_), r in sorted(runs.items()) if split == "intra" and name == recipe]
        for _, group in summaries(done) or ([("", done)] if done else []):  # one row a varied seed, else one
            per_class = " / ".join(f"{np.mean([r['test']['per_class'][c]['f1'] for r in group]):.3f}"
                                   for c in classes)
            lines.append(f"| {recipe} | {', '.join(seeds(r) for r in group)} | "
                         f"{mean_std([r['val']['macro_f1'] for r in group])} | "
                         f"{mean_std([r['test']['macro_f1'] for r in group])} | {per_class} | "
                         f"{np.mean([r['minutes'] for r in group]):.1f} |")
    return lines


def inter_table(runs: dict, recipes: list[str]) -> list[str]:
    header = " | ".join(f"Se {c} | +P {c}" for c in AAMI_REPORTED)
    lines = [f"| recipe | seed (weights/data) | val records | val macro F1 | {header} | macro F1 N,S,V,F "
             "| macro F1 (5 classes) |",
             "|---|---|---|---:|" + "---:|" * (2 * len(AAMI_REPORTED) + 2)]
    for recipe in recipes:
        done = [r for (split, name, *_), r in sorted(runs.items()) if split == "inter" and name == recipe]
        for r in done:
            figures = inter_patient_figures(r["test"])
            cells = " | ".join(f"{figures['sensitivity'][c]:.3f} | {figures['ppv'][c]:.3f}" for c in AAMI_REPORTED)
            lines.append(f"| {recipe} | {seeds(r)} | {' '.join(r['val_records'])} | "
                         f"{r['val']['macro_f1']:.4f} | {cells} | "
                         f"{figures['macro_f1_nsvf']:.4f} | {r['test']['macro_f1']:.4f} |")
        for what, group in summaries(done):
            nsvf = [inter_patient_figures(r["test"])["macro_f1_nsvf"] for r in group]
            lines.append(f"| {recipe} | mean ± std, {what} | | {mean_std([r['val']['macro_f1'] for r in group])} | "
                         f"{' | ' * (2 * len(AAMI_REPORTED) - 1)} | {mean_std(nsvf)} | "
                         f"{mean_std([r['test']['macro_f1'] for r in group])} |")
    return lines


def seeds(run: dict) -> str:
    """A run's weight seed, and its data seed where it is not 0: "1", "0/2"."""
    config = run["config"]
    return f"{config['seed']}" + (f"/{config['data_seed']}" if config["data_seed"] else "")


def summaries(done: list[dict]) -> list[tuple[str, list[dict]]]:
    """The groups of a recipe's runs that vary one seed: the weight seeds at data seed 0, and the data seeds at
    weight seed 0, where each has more than one run."""
    by_weights = [r for r in done if not r["config"]["data_seed"]]
    by_data = [r for r in done if not r["config"]["seed"]]
    groups = [("weight seeds", by_weights)] if len(by_weights) > 1 else []
    if len({r["config"]["data_seed"] for r in by_data}) > 1:
        groups.append(("data seeds", by_data))
    return groups


def other_runs(runs: dict) -> list[str]:
    """Finished runs under bench/_work/quality/ that this invocation did not make (another precision, a recipe tried
    while choosing the default): listed as measured, so that what was tried stays on record."""
    made = {Path(r["checkpoint"]).parent.name for r in runs.values()}
    lines = []
    for final_path in sorted(WORK.glob("*/final.json")):
        if final_path.parent.name in made:
            continue
        final = json.loads(final_path.read_text())
        config = TrialConfig.from_dict(final["config"])
        autocast = json.loads((final_path.parent / "config.json").read_text())["runtime"]["autocast"]
        split = final_path.parent.name.split("-")[0]
        named = [name for name, fields in CANDIDATES.items()
                 if folder_name(split, fields, config.epochs, config.seed, config.precision,
                                config.data_seed) == final_path.parent.name]
        oversample = f" + {config.oversample}" * (config.oversample != "none")
        described = config.recipe + " + rhythm" * config.rhythm + oversample
        recipe = described
        if named:
            precision = f" --precision {config.precision}" * (config.precision != "fp32")
            recipe = f"{named[0]} (`--recipes {named[0]}{precision}`)"
        nsvf = f"{inter_patient_figures(final['test'])['macro_f1_nsvf']:.4f}" if split == "inter" else ""
        val_records = " ".join(read_split_info(final_path.parent / SPLITS_FILE).get("val_records", []))
        lines.append(f"| {final_path.parent.name} | {recipe} | {autocast} | {seeds(final)} | {val_records} | "
                     f"{final['best_epoch']} | {final['val']['macro_f1']:.4f} | {final['test']['macro_f1']:.4f} | "
                     f"{nsvf} |")
    if not lines:
        return []
    return ["", "### other runs found in bench/_work/quality/", "",
            "| run | recipe | autocast | seed (weights/data) | val records (inter) | best epoch | val macro F1 "
            "| test macro F1 | test macro F1 N,S,V,F (inter) |",
            "|---|---|---|---|---|---:|---:|---:|---:|", *lines]


def write(runs: dict, recipes: list[str], args: argparse.Namespace, classes: tuple[str, ...], seconds: float) -> None:
    lines = [f"`cnet`, {args.epochs} epoch{'s' * (args.epochs != 1)}, lr 0.001, batch 256, {args.precision}, on the 48 "
             "MIT-BIH records built by data.physionet; "
             "the epoch is chosen on validation macro F1, test is evaluated once. Recipes: "
             + "; ".join(f"**{name}**: {describe(CANDIDATES[name])}" for name in recipes)
             + f". Training time of the {len(runs)} runs: {sum(r['minutes'] for r in runs.values()):.0f} min (this "
             f"invocation: {seconds / 60:.0f} min; a run already finished is read, not trained again). The machine "
             "ran other work beside them, so the minutes are not a speed figure.", "",
             "### intra (random 80/20 split of beats; validation 10% of the training beats)", "",
             *intra_table(runs, recipes, classes), "",
             "### inter (DS1 trains, DS2 tests; validation: whole DS1 records, data/records.py)", "",
             "Se: sensitivity, +P: positive predictive value, of the DS2 (test) beats, de Chazal et al.'s way.", "",
             *inter_table(runs, recipes), *other_runs(runs)]
    write_section("quality", "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=Path, default=ROOT.parent / "shared" / "physionet" / "mitdb")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", default="0,1,2", help="weight seeds")
    parser.add_argument("--data-seeds", default="0",
                        help="validation split seeds (study trial's --data-seed); every pair with --seeds trains")
    parser.add_argument("--recipes", default="original,default,default+rhythm,default+ema+rhythm",
                        help=f"of {', '.join(CANDIDATES)}")
    parser.add_argument("--splits", default="intra,inter")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: rewrite the section from the runs already finished under bench/_work")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="fp32 (default): the figures compare across machines; bf16: autocast, as --precision auto "
                             "trains where the CPU computes bf16 natively")
    args = parser.parse_args()
    if not (args.records / "100.hea").is_file():
        print(f"bench_quality: no MIT-BIH records in {args.records} (the shared PhysioNet copy); nothing measured.")
        return 0
    weight_seeds, data_seeds = [int(s) for s in args.seeds.split(",")], [int(s) for s in args.data_seeds.split(",")]
    recipes, splits = args.recipes.split(","), args.splits.split(",")
    for split in splits:
        if not (WORK / split / "physionet_build.json").is_file():
            build("mitdb", args.records, WORK / split, split=split, seed=0)
    data = {}

    def prepared(split: str, rhythm: bool, oversample: str, data_seed: int):
        """A run's data, prepared when a run first needs it (--finished-only: only where one finished)."""
        key = split, rhythm, oversample, data_seed
        if key not in data:
            data[key] = prepare_task("arrhythmia", WORK / split, seed=data_seed, rhythm=rhythm, oversample=oversample)
            print(data[key].summary(), flush=True)
        return data[key]

    runs, started = {}, time.perf_counter()
    # seed by seed, so that a partial benchmark already compares the recipes
    for data_seed, seed, split, recipe in itertools.product(data_seeds, weight_seeds, splits, recipes):
        fields = CANDIDATES[recipe]
        config = TrialConfig(epochs=args.epochs, seed=seed, data_seed=data_seed, device="cpu",
                             precision=args.precision, **fields)
        folder = WORK / folder_name(split, fields, args.epochs, seed, args.precision, data_seed)
        if args.finished_only and finished_final(folder, config)[0] is None:
            continue
        split_data = prepared(split, config.rhythm, config.oversample, data_seed)
        final = run_trial(config, split_data, folder, log=print)
        runs[(split, recipe, seed, data_seed)] = {**final, "minutes": final["train_seconds"] / 60,
                                                  "val_records": split_data.val_records}
        print(f"{split} {recipe} seed {seeds(final)}: test macro F1 {final['test']['macro_f1']:.4f}", flush=True)
        write(runs, recipes, args, split_data.class_names, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
