"""The training recipe: the learning rate of every epoch, the original's plain Adam, and the flags' round trip."""

import csv
import json
import math

import pytest
import torch

from data import prepare_task
from study.cli import main
from study.config import RECIPES, TrialConfig
from study.trial import make_optimizer, run_trial
from models import build_model


@pytest.fixture(scope="module")
def arrhythmia(demo_dir):
    return prepare_task("arrhythmia", demo_dir, seed=0, limit=600)


def lrs(folder):
    with open(folder / "metrics.csv") as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


def test_cosine_warms_up_then_decays_to_near_zero():
    config = TrialConfig(epochs=6, lr=1.0, warmup_epochs=2)
    factors = [config.lr_factor(e) for e in range(1, 7)]
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]  # epochs 3..6 of 4 after the warm-up
    assert factors == pytest.approx([1 / 3, 2 / 3, *cosine])
    assert factors[2] == 1 and 0 < factors[-1] < 0.15
    assert TrialConfig(epochs=1, warmup_epochs=2).lr_factor(1) == 1  # no epoch left to warm up in
    assert [TrialConfig(epochs=5, **RECIPES["original"]).lr_factor(e) for e in range(1, 6)] == [1] * 5


def test_a_trial_trains_each_epoch_at_the_schedules_rate(arrhythmia, tmp_path):
    config = TrialConfig(epochs=4, lr=2e-3, batch_size=64, warmup_epochs=1)
    run_trial(config, arrhythmia, tmp_path / "cosine")
    assert lrs(tmp_path / "cosine") == pytest.approx([2e-3 * config.lr_factor(e) for e in range(1, 5)])
    original = config.replace(**RECIPES["original"])
    run_trial(original, arrhythmia, tmp_path / "original")
    assert lrs(tmp_path / "original") == [2e-3] * 4


def test_the_original_recipe_is_plain_adam_and_the_default_adamw_with_decay():
    model = build_model("cnet", "arrhythmia")
    original = make_optimizer(model, TrialConfig(**RECIPES["original"]))
    assert type(original) is torch.optim.Adam and original.defaults["weight_decay"] == 0
    assert not original.defaults["amsgrad"] and original.defaults["betas"] == (0.9, 0.999)
    default = make_optimizer(model, TrialConfig())
    assert type(default) is torch.optim.AdamW and default.defaults["weight_decay"] == RECIPES["default"]["weight_decay"]


def test_a_cosine_trial_continues_only_at_its_length_a_constant_one_may_train_longer(arrhythmia, tmp_path):
    run_trial(TrialConfig(epochs=2, batch_size=64), arrhythmia, tmp_path / "cosine")
    with pytest.raises(ValueError, match="another config .*epochs 2 -> 3"):
        run_trial(TrialConfig(epochs=3, batch_size=64), arrhythmia, tmp_path / "cosine")
    constant = TrialConfig(epochs=2, batch_size=64, **RECIPES["original"])
    run_trial(constant, arrhythmia, tmp_path / "constant")
    assert run_trial(constant.replace(epochs=3), arrhythmia, tmp_path / "constant")["epochs_run"] == 3


@pytest.mark.parametrize("flags, fields, named", [
    ([], RECIPES["default"], "default"),
    (["--recipe", "original"], RECIPES["original"], "original"),
    (["--schedule", "constant", "--weight-decay", "0"],
     {**RECIPES["default"], "schedule": "constant", "weight_decay": 0.0}, "AdamW, constant learning rate"),
    (["--recipe", "original", "--warmup-epochs", "3", "--schedule", "cosine"],
     {**RECIPES["original"], "schedule": "cosine", "warmup_epochs": 3}, "Adam, cosine after 3 warm-up epochs"),
])
def test_recipe_flags_round_trip_through_config_json(demo_dir, tmp_path, capsys, flags, fields, named):
    out = tmp_path / "run"
    code = main(["trial", "--input", str(demo_dir), "--epochs", "4", "--batch-size", "64", "--limit", "300",
                 "--out", str(out), *flags])  # 4 epochs: a warm-up of 3 must leave the cosine one
    assert code == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    config = TrialConfig.from_dict(saved)
    assert {name: getattr(config, name) for name in fields} == fields
    assert config.to_dict() == saved and config.recipe == named
    assert f"recipe {named} ->" in capsys.readouterr().out


def test_a_config_from_before_recipes_reads_as_the_original():
    old = {k: v for k, v in TrialConfig().to_dict().items() if k not in RECIPES["default"]}
    assert TrialConfig.from_dict(old).recipe == "original"
