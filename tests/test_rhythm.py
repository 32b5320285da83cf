"""RR intervals beside each beat (--rhythm): the features (data/rhythm.py), their way into the splits, the models'
heads and checkpoints, and a trial that trains with them."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data.physionet as pn
from data import DataError, prepare_task
from data.constants import BEAT_LEN, MITBIH_TEST, MITBIH_TRAIN
from data.rhythm import FEATURES, SCALE, record_features, rhythm_features
from models import (MODEL_NAMES, CheckpointError, build_from_checkpoint, build_model, build_transfer_model,
                    save_checkpoint)
from study.cli import main
from study.config import TrialConfig
from study.trial import build_trial_model, run_trial
from tests.test_physionet import STEP, regular, write_record, write_records

pytestmark = pytest.mark.filterwarnings("ignore::data.checks.DataWarning")  # generated records share one waveform
K = len(FEATURES)


# ------------------------------------------------------------------------------------------------ the features

def test_a_steady_rhythm_gives_zeros_and_a_premature_beat_is_early_then_followed_by_a_pause():
    steady = record_features(np.arange(0, 4000, 100))
    assert steady.shape == (40, K) and steady.dtype == np.float32 and np.abs(steady).max() < 1e-5
    samples = np.arange(0, 4000, 100)
    samples[20] -= 40  # premature: 60 after the previous R peak, 140 before the next
    features = dict(zip(FEATURES, record_features(samples)[20]))
    # the 11 intervals around it sum to 1100 whatever the one beat's place: local is 100
    assert features["pre/local"] == pytest.approx(SCALE * math.log(0.6), rel=1e-5)
    assert features["post/local"] == pytest.approx(SCALE * math.log(1.4), rel=1e-5)
    assert features["pre/mean"] < -2 and features["post/mean"] > 1.5 and abs(features["local/mean"]) < 1e-4
    assert abs(record_features(samples)[10]).max() < 1e-4  # beats far from it: a steady rhythm


def test_a_record_split_over_both_files_gets_the_intervals_of_its_whole_sequence(tmp_path):
    # intra: a record's beats land in both files; each file alone would show gaps where the other's beats are
    records = write_records(tmp_path / "mitdb", ("100", "101"), "NNNNNNAV", seed=3)  # a beat every 0.8 s
    pn.build("mitdb", records, tmp_path / "intra", split="intra")
    paths = [tmp_path / "intra" / MITBIH_TRAIN, tmp_path / "intra" / MITBIH_TEST]
    rows = [len(path.read_text().splitlines()) for path in paths]
    train, test = rhythm_features(paths, rows)
    assert train.shape == (rows[0], K) and test.shape == (rows[1], K)
    assert np.abs(np.concatenate([train, test])).max() < 1e-4
    alone = rhythm_features(paths[:1], rows[:1])[0]
    assert np.abs(alone).max() > 1  # what computing each file on its own would have given


def test_a_record_of_one_beat_reads_as_steady_and_two_beats_at_one_peak_are_refused(tmp_path):
    side = tmp_path / "x.beats.csv"
    side.write_text("row,record,sample,symbol,label\n0,r1,100,N,N\n1,r2,50,N,N\n2,r2,150,A,S\n3,r2,230,N,N\n")
    (features,) = rhythm_features([tmp_path / "x.csv"], [4])
    assert not features[0].any() and np.array_equal(features[1:], record_features(np.array([50, 150, 230])))
    side.write_text("row,record,sample,symbol,label\n0,r2,50,N,N\n1,r2,50,N,N\n")
    with pytest.raises(DataError, match=r"^record r2 has two beats at one R-peak sample in \S+x.beats.csv; RR "):
        rhythm_features([tmp_path / "x.csv"], [2])


@pytest.fixture(scope="module")
def inter_build(tmp_path_factory):
    """An inter-patient build (DS1 101 106 108 109, DS2 100 103) whose S beats come 0.4 s early, every 7th beat."""
    tmp = tmp_path_factory.mktemp("rhythm")
    rng = np.random.default_rng(1)
    for name in ("100", "101", "103", "106", "108", "109"):
        peaks = regular(0.8, seconds=40)
        symbols = list(rng.choice(list("NNNNNNVFQ"), size=len(peaks)))
        for k in range(3, len(peaks) - 1, 7):
            peaks[k] -= 2 * STEP
            symbols[k] = "A"
        write_record(tmp / "mitdb", name, peaks, symbols, seconds=40)
    pn.build("mitdb", tmp / "mitdb", tmp / "inter", split="inter")
    return tmp / "inter"


def pools(folder):
    """The features of the build's two files' rows, as rhythm_features computes them for prepare_task."""
    paths = [folder / MITBIH_TRAIN, folder / MITBIH_TEST]
    return rhythm_features(paths, [len(path.read_text().splitlines()) for path in paths])


def test_prepare_task_puts_each_beats_features_after_its_samples_and_in_the_fingerprint(inter_build):
    plain = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25)
    data = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25, rhythm=True)
    features = pools(inter_build)
    for split, pool in ((data.train, 0), (data.val, 0), (data.test, 1)):
        assert split.x.shape[1] == BEAT_LEN + K
        assert np.array_equal(split.x[:, BEAT_LEN:], features[pool][split.index])
        early = split.x[split.y == 1, BEAT_LEN]  # pre/local of the S beats: 0.4 s early against 0.8 s
        assert len(early) and (early < SCALE * math.log(0.6)).all() and (split.x[split.y == 0, BEAT_LEN] > -1).all()
    assert np.array_equal(data.train.x[:, :BEAT_LEN], plain.train.x) and data.val_records == plain.val_records
    assert data.rhythm and not plain.rhythm and data.fingerprint != plain.fingerprint
    assert "RR features" in data.summary() and "RR features" not in plain.summary()


@pytest.mark.parametrize("options", [{"limit": 40}, {"oversample": "smote"}])
def test_features_stay_with_their_beats_when_subsampled_or_oversampled(inter_build, options):
    data = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25, rhythm=True, **options)
    features = pools(inter_build)
    kept = data.train.index >= 0  # oversampling adds synthetic beats (index -1), interpolated from real ones
    assert np.array_equal(data.train.x[kept, BEAT_LEN:], features[0][data.train.index[kept]])
    assert np.array_equal(data.test.x[:, BEAT_LEN:], features[1][data.test.index])
    assert (~kept).any() == ("oversample" in options) and data.train.x.shape[1] == BEAT_LEN + K


def test_a_folder_without_side_files_is_one_sentence_naming_the_file(demo_dir):
    with pytest.raises(DataError, match=r"^--rhythm needs each beat's R-peak position, .* "
                                        r"\S+mitbih_train.beats.csv does not exist \(the Kaggle CSVs carry no RR"):
        prepare_task("arrhythmia", demo_dir, seed=0, rhythm=True)


# ---------------------------------------------------------------------------------------------------- models

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_takes_the_features_into_its_head(name):
    torch.manual_seed(0)
    model = build_model(name, "arrhythmia", K).eval()
    x = torch.rand(3, BEAT_LEN + K)
    moved = x.clone()
    moved[:, BEAT_LEN:] += 1
    with torch.no_grad():
        assert model(x).shape == (3, 5) and not torch.allclose(model(x), model(moved))
    assert model.fc1.in_features == build_model(name, "arrhythmia").fc1.in_features + K
    with pytest.raises(ValueError, match="rhythm_inputs is a number of features .* got True"):
        build_model(name, "arrhythmia", True)
    with pytest.raises(ValueError, match=rf"expected beats with {K} RR-interval features, shaped \(batch, "
                                         rf"{BEAT_LEN + K}\), got \(3, {BEAT_LEN}\)"):
        model(x[:, :BEAT_LEN])


def test_cnet_learns_a_class_only_the_rhythm_tells():
    # every beat has one shape; only pre/local says which beat is premature
    g = torch.Generator().manual_seed(0)
    n, n_train = 192, 64
    y = torch.randint(0, 2, (n,), generator=g)
    rhythm = torch.randn(n, K, generator=g) * 0.3
    rhythm[:, 0] += torch.where(y == 1, -2.0, 0.5)
    x = torch.cat([torch.rand(1, BEAT_LEN, generator=g).expand(n, -1), rhythm], 1)
    torch.manual_seed(0)
    model = build_model("cnet", "arrhythmia", K)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = F.cross_entropy(model(x[:n_train]), y[:n_train])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(x[n_train:]).argmax(1) == y[n_train:]).float().mean()
    assert accuracy > 0.9  # 0.95 on the 128 beats it did not train on; chance is about 0.5


def test_checkpoints_rebuild_their_inputs_and_transfer_takes_the_body_only(tmp_path):
    model = build_model("cnet", "arrhythmia", K)
    path = save_checkpoint(tmp_path / "best.pt", model, model_name="cnet", task="arrhythmia",
                           config=TrialConfig(rhythm=True), fingerprint="f", epoch=1, metrics={})
    again = build_from_checkpoint(path)
    assert again.fc1.in_features == model.fc1.in_features
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="not a 'cnet' model for task 'arrhythmia'"):
        save_checkpoint(tmp_path / "other.pt", model, model_name="cnet", task="arrhythmia",
                        config=TrialConfig(), fingerprint="f", epoch=1, metrics={})
    for rhythm in (0, K):  # the MI head is fresh: it takes the features or not, as the MI trial asks
        mi = build_transfer_model("cnet", path, rhythm_inputs=rhythm)
        assert mi.fc1.in_features == 64 + rhythm and torch.equal(mi.c1.weight, model.c1.weight)
    plain = TrialConfig(init=str(path))
    with pytest.raises(CheckpointError, match=r"was trained with --rhythm, and a warm start of the same task needs "
                                              r"the same inputs: add --rhythm"):
        build_trial_model(plain)
    assert build_trial_model(plain.replace(rhythm=True)).fc1.in_features == 64 + K


# ------------------------------------------------------------------------------------------ config and trials

def test_rhythm_is_written_only_where_it_is_on_and_reads_back():
    assert "rhythm" not in TrialConfig().to_dict()  # configs written before --rhythm compare the same
    on = TrialConfig(rhythm=True)
    assert on.to_dict()["rhythm"] is True and TrialConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    with pytest.raises(ValueError, match="rhythm must be true or false; got 'yes'"):
        TrialConfig(rhythm="yes")


def test_a_trial_with_rhythm_records_it_and_refuses_data_without(inter_build, tmp_path):
    config = TrialConfig(epochs=2, batch_size=32, device="cpu", precision="fp32", val_fraction=0.25, rhythm=True)
    data = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25, rhythm=True)
    final = run_trial(config, data, tmp_path / "t")
    assert final["config"]["rhythm"] is True
    assert json.loads((tmp_path / "t" / "config.json").read_text())["config"]["rhythm"] is True
    assert build_from_checkpoint(tmp_path / "t" / "best.pt").fc1.in_features == 64 + K
    plain = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25)
    with pytest.raises(ValueError, match="The data was prepared with rhythm=False but the trial config says True"):
        run_trial(config, plain, tmp_path / "u")
    # a folder trained with the intervals is not continued without them, nor the other way round
    with pytest.raises(ValueError, match=r"holds a trial with another config \(rhythm True -> False\)"):
        run_trial(config.replace(rhythm=False), plain, tmp_path / "t")
    run_trial(config.replace(rhythm=False, epochs=1), plain, tmp_path / "u")
    with pytest.raises(ValueError, match=r"holds a trial with another config \(epochs 1 -> 2; rhythm False -> True\)"):
        run_trial(config, data, tmp_path / "u")


def test_the_trial_command_names_what_is_missing(demo_dir, tmp_path, capsys):
    code = main(["trial", "--input", str(demo_dir), "--rhythm", "--epochs", "1", "--out", str(tmp_path / "t")])
    assert code == 2
    assert "mitbih_train.beats.csv does not exist (the Kaggle CSVs carry no RR intervals)" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_a_study_gives_the_intervals_to_its_arrhythmia_cells_only(inter_build, demo_dir, tmp_path, capsys):
    import shutil

    from study.grid import Cell
    from study.launch import StudyData, cell_spec
    from study.plan import resolve_plan
    from tests.standins import launch_args

    (tmp_path / "input").mkdir()
    shutil.copytree(inter_build, tmp_path / "input" / "physionet-inter")
    for name in ("ptbdb_normal.csv", "ptbdb_abnormal.csv"):
        shutil.copy(demo_dir / name, tmp_path / "input" / name)
    flags = ["--profile", "smoke", "--input", tmp_path / "input", "--results", tmp_path / "results"]
    assert main(["launch", *map(str, flags), "--rhythm"]) == 2
    assert "--rhythm gives the arrhythmia models each beat's RR intervals, which the Kaggle CSVs do not hold: add " \
           "--split intra or --split inter" in capsys.readouterr().err
    assert main(["launch", *map(str, flags), "--split", "inter", "--rhythm", "--tasks", "mi"]) == 2
    assert "this study has no arrhythmia cells (--tasks): drop --rhythm" in capsys.readouterr().err
    plan = resolve_plan(launch_args(*flags, "--split", "inter", "--rhythm", "--models", "cnet"))
    data = StudyData(plan)
    arrhythmia = cell_spec(Cell.from_id("arrhythmia-cnet-none-scratch"), plan, data)
    mi = cell_spec(Cell.from_id("mi-cnet-none-transfer"), plan, data)
    assert arrhythmia.trial["rhythm"] is True and "rhythm" not in mi.trial
    assert data.of(Cell.from_id("arrhythmia-cnet-none-scratch")).train.x.shape[1] == BEAT_LEN + K
    assert data.of(Cell.from_id("mi-cnet-none-scratch")).train.x.shape[1] == BEAT_LEN


def test_a_study_whose_csvs_are_the_same_but_not_its_data_is_told_what_else_may_have_changed():
    from types import SimpleNamespace

    from study.grid import Cell
    from study.launch import _same_files_changed

    def study_data(rhythm: bool, val_records=()):
        plan = SimpleNamespace(rhythm_of=lambda cell: rhythm and cell.task == "arrhythmia")
        return SimpleNamespace(plan=plan, of=lambda cell: SimpleNamespace(
            val_records=val_records if cell.task == "arrhythmia" else ()))

    data = study_data(rhythm=True, val_records=("108",))
    rhythm = _same_files_changed([Cell("arrhythmia", "cnet", "none")], data)
    assert "side files (*.beats.csv) or the version of the RR-interval features" in rhythm
    assert "scikit-learn" not in rhythm and "validation holds out" not in rhythm
    both = _same_files_changed([Cell("arrhythmia", "cnet", "smote")], data)
    assert "RR-interval" in both and "another version of scikit-learn or imbalanced-learn" in both
    assert "RR-interval" not in _same_files_changed([Cell("mi", "cnet", "smote")], data)
    assert "the way this version splits them" in _same_files_changed([Cell("mi", "cnet", "none")], data)
    by_record = _same_files_changed([Cell("arrhythmia", "cnet", "none")], study_data(False, ("108",)))
    assert "the side file of mitbih_train.csv, whose records validation holds out whole" in by_record
