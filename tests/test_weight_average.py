"""--ema-decay: the weights a trial validates, selects and saves are the bias-corrected average of its steps' weights."""

import json

import pytest
import torch
from torch import nn

from data import prepare_task
from models import load_checkpoint
from study.cli import main
from study.config import RECIPES, TrialConfig
from study.trial import run_trial
from study.weight_average import WeightAverage


@pytest.fixture(scope="module")
def arrhythmia(demo_dir):
    return prepare_task("arrhythmia", demo_dir, seed=0, limit=600)


def test_the_average_weights_step_k_back_by_decay_to_the_k_and_the_initial_weights_not_at_all():
    model = nn.Linear(2, 1)
    average = WeightAverage(model, 0.5)
    assert average.averaged_model(model) is model  # no step yet: the model itself
    steps = [torch.full_like(model.weight, value) for value in (1.0, 2.0, 4.0)]
    for weight in steps:
        with torch.no_grad():
            model.weight.copy_(weight)
        average.update()
    averaged = average.averaged_model(model)
    # (0.25 w1 + 0.5 w2 + w3) / (0.25 + 0.5 + 1): every step so far, the newest weighted most; no initial weights
    assert torch.allclose(averaged.weight, (steps[0] + 2 * steps[1] + 4 * steps[2]) / 7)
    assert averaged is not model and torch.equal(model.weight, steps[2])  # training goes on from the raw weights


def test_a_trial_validates_and_saves_the_averaged_weights(arrhythmia, tmp_path):
    config = TrialConfig(epochs=1, batch_size=64, ema_decay=0.9)
    final = run_trial(config, arrhythmia, tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    average = state["average"]
    assert average["steps"] == -(-len(arrhythmia.train.y) // 64)  # one update a batch
    best = load_checkpoint(tmp_path / "best.pt")["state_dict"]
    for name, value in best.items():
        assert torch.allclose(value, average["sums"][name] / (1 - 0.9 ** average["steps"]))
        assert not torch.equal(value, state["model"][name])  # not the raw weights of the last step
    assert final["config"]["ema_decay"] == 0.9


def test_an_averaged_trial_stopped_and_continued_ends_like_one_never_stopped(arrhythmia, tmp_path):
    config = TrialConfig(epochs=3, batch_size=128, seed=2, ema_decay=0.95)
    whole = run_trial(config, arrhythmia, tmp_path / "whole")

    class Interrupt(Exception):
        pass

    def stop_after_one(row, out_dir):
        raise Interrupt()

    with pytest.raises(Interrupt):
        run_trial(config, arrhythmia, tmp_path / "resumed", report=stop_after_one)
    resumed = run_trial(config, arrhythmia, tmp_path / "resumed")
    assert resumed["val"] == whole["val"] and resumed["test"] == whole["test"]
    plain = run_trial(config.replace(ema_decay=0.0), arrhythmia, tmp_path / "plain")
    assert plain["val"] != whole["val"]  # the average is what was validated


def test_a_folder_trained_without_averaging_is_not_continued_with_it(arrhythmia, tmp_path):
    config = TrialConfig(epochs=2, batch_size=128)
    run_trial(config, arrhythmia, tmp_path)
    with pytest.raises(ValueError, match=r"another config \(ema_decay 0.0 -> 0.99\)"):
        run_trial(config.replace(ema_decay=0.99), arrhythmia, tmp_path)


def test_a_last_pt_without_its_average_is_refused_as_damaged(arrhythmia, tmp_path):
    config = TrialConfig(epochs=2, batch_size=128, ema_decay=0.9)

    def stop(row, out_dir):
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run_trial(config, arrhythmia, tmp_path, report=stop)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["average"] = None
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="last.pt is damaged: .*weight average is not one of this trial's ema_decay"):
        run_trial(config, arrhythmia, tmp_path)


def test_the_flag_round_trips_through_config_json_and_names_the_recipe(demo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["trial", "--input", str(demo_dir), "--epochs", "2", "--batch-size", "64", "--limit", "300",
                 "--out", str(out), "--ema-decay", "0.999"]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["ema_decay"] == 0.999 and TrialConfig.from_dict(saved).to_dict() == saved
    named = "AdamW (weight decay 0.01), cosine after 2 warm-up epochs, weights averaged (EMA 0.999)"
    assert f"recipe {named} ->" in capsys.readouterr().out


# A default trial's config as final.json held it before --ema-decay existed (written at commit 7be2d07).
BEFORE_AVERAGING = {"batch_size": 256, "data_seed": 0, "device": "cpu", "epochs": 40, "eval_batch_size": 4096,
                    "finetune_lr_scale": 0.1, "init": "scratch", "limit": None, "lr": 0.001, "model": "cnet",
                    "optimizer": "adamw", "oversample": "none", "patience": 0, "precision": "fp32",
                    "schedule": "cosine", "seed": 0, "task": "arrhythmia", "transfer_mode": "frozen",
                    "val_fraction": 0.1, "warmup_epochs": 2, "weight_decay": 0.01}


def test_a_config_from_before_averaging_reads_as_unaveraged_and_compares_the_same():
    config = TrialConfig.from_dict(dict(BEFORE_AVERAGING))
    assert config.ema_decay == 0.0 and config.recipe == "default"
    assert config.to_dict() == BEFORE_AVERAGING  # what finished_final compares: the trial is not trained again
    assert config == TrialConfig(device="cpu", precision="fp32") and RECIPES["original"]["ema_decay"] == 0.0


@pytest.mark.parametrize("value", ["1", "-0.1", "nan", "x"])
def test_an_ema_decay_outside_0_to_1_is_one_sentence(demo_dir, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["trial", "--input", str(demo_dir), "--out", str(tmp_path / "t"), "--ema-decay", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--ema-decay" in error and not (tmp_path / "t").exists()
    with pytest.raises(ValueError, match="ema_decay must be 0 .off. or between 0 and 1"):
        TrialConfig(ema_decay=1.0)


def test_a_frozen_parameter_is_kept_as_it_is_not_averaged():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    average = WeightAverage(model, 0.999)
    for _ in range(2000):
        with torch.no_grad():
            model[1].weight.add_(1.0)
        average.update()
    averaged = average.averaged_model(model)
    assert torch.equal(averaged[0].weight, frozen)  # bit for bit: an averaged constant drifts by about 1e-5
    assert not torch.equal(averaged[1].weight, model[1].weight)
