"""Validation by record (data/records.py): the inter-patient protocol never validates on training patients."""

import json

import numpy as np
import pytest

import data.physionet as pn
from data import DataError, prepare_task
from data.constants import MITBIH_TEST, MITBIH_TRAIN
from data.records import read_records, record_split, side_file
from tests.test_physionet import MITDB, write_records


def table(counts: dict[str, list[int]]):
    """Rows of records with the given beats of each class: (rows, y, records)."""
    y, records = [], []
    for name, per_class in counts.items():
        for label, n in enumerate(per_class):
            y += [label] * n
            records += [name] * n
    return np.arange(len(y)), np.array(y), np.array(records)


# classes N, S, V, F: "r9" holds most F beats; S and F are rare
COUNTS = {"r1": [900, 10, 0, 0], "r2": [800, 0, 50, 2], "r3": [1000, 30, 20, 0], "r4": [700, 0, 0, 3],
          "r5": [950, 5, 40, 0], "r6": [850, 0, 10, 0], "r7": [900, 20, 0, 0], "r8": [600, 0, 30, 1],
          "r9": [750, 2, 200, 60]}


def test_validation_is_whole_records_holds_every_class_and_the_share_asked():
    rows, y, records = table(COUNTS)
    train, val, held = record_split(rows, y, records, 0.1, seed=0)
    assert not set(records[train]) & set(records[val]) and sorted(np.concatenate([train, val])) == list(rows)
    assert set(records[val]) == set(held) and len(held) < len(COUNTS)
    assert set(y[val]) == {0, 1, 2, 3}  # F too, though its main holder stays in training
    assert "r9" not in held  # 60 of F's 66 beats: holding it out would leave training almost without F
    assert len(val) >= 0.1 * len(rows)


def test_the_records_drawn_follow_the_seed():
    rows, y, records = table(COUNTS)
    draws = {seed: record_split(rows, y, records, 0.1, seed)[2] for seed in range(6)}
    assert draws[0] == record_split(rows, y, records, 0.1, 0)[2]
    assert len(set(draws.values())) > 1


def test_a_class_only_a_dominant_record_has_still_reaches_validation_and_training_keeps_a_record():
    rows, y, records = table({"a": [500, 0], "b": [500, 9]})
    train, val, held = record_split(rows, y, records, 0.5, seed=0)
    assert held == ("b",) and set(records[train]) == {"a"}
    with pytest.raises(DataError, match="at least two training records"):
        record_split(*table({"a": [50, 5]}), 0.1, seed=0)


@pytest.fixture
def inter_build(tmp_path):
    """A built inter-patient folder: DS1 records 101, 106, 108, 109 and DS2 records 100, 103."""
    folder = write_records(tmp_path / "mitdb", ("100", "101", "103", "106", "108", "109"), "NNNNNNLRAVFQ", seed=1)
    pn.build("mitdb", folder, tmp_path / "inter", split="inter")
    return tmp_path / "inter"


@pytest.mark.filterwarnings("ignore::data.checks.DataWarning")  # the generated records share one waveform
def test_prepare_task_validates_an_inter_build_on_records_it_does_not_train_on(inter_build):
    data = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25)
    records = read_records(inter_build / MITBIH_TRAIN, 49 * 4)
    assert data.val_records and set(data.val_records) <= {"101", "106", "108", "109"}
    assert not set(records[data.train.index]) & set(records[data.val.index])
    assert set(records[data.val.index]) == set(data.val_records)
    assert f"(records {' '.join(data.val_records)})" in data.summary()
    again = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25, cache_dir=inter_build / "c2")
    assert again.val_records == data.val_records and again.fingerprint == data.fingerprint
    build = json.loads((inter_build / "physionet_build.json").read_text())
    (inter_build / "physionet_build.json").write_text(json.dumps({**build, "split": "intra"}))
    beats = prepare_task("arrhythmia", inter_build, seed=0, val_fraction=0.25)
    assert beats.val_records == () and beats.fingerprint != data.fingerprint
    assert set(records[beats.train.index]) & set(records[beats.val.index])  # beats of one record on both sides


def as_built_before_digests(folder):
    """The folder's physionet_build.json as builds before stop 28 wrote it: no sha256 of the CSVs and side files."""
    build = json.loads((folder / "physionet_build.json").read_text())
    for entry in build["files"].values():
        del entry["sha256"], entry["side_sha256"]
    (folder / "physionet_build.json").write_text(json.dumps(build))


def test_a_side_file_that_does_not_fit_its_csv_is_one_sentence(inter_build):
    side = side_file(inter_build / MITBIH_TRAIN)
    side.write_text("\n".join(side.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(DataError, match=r"mitbih_train.beats.csv is not the side file data.physionet built there "
                                        r"\(sha256 \w+\.\.\., its physionet_build.json says \w+\.\.\.\)"):
        prepare_task("arrhythmia", inter_build, seed=0)
    as_built_before_digests(inter_build)
    with pytest.raises(DataError, match=r"mitbih_train.beats.csv: it describes \d+ rows, the CSV holds \d+; build"):
        prepare_task("arrhythmia", inter_build, seed=0)
    side.unlink()
    with pytest.raises(DataError, match="mitbih_train.beats.csv: cannot be read .*side file"):
        prepare_task("arrhythmia", inter_build, seed=0)


@pytest.mark.parametrize("rhythm", [False, True])
def test_a_side_file_of_another_csv_with_as_many_rows_is_refused_by_its_labels(inter_build, rhythm):
    as_built_before_digests(inter_build)  # with them, the digest tells first (the test below)
    side = side_file(inter_build / MITBIH_TRAIN)
    lines = side.read_text().splitlines()
    first = lines[1].split(",")
    other = next(label for label in "NSVFQ" if label != first[4])
    side.write_text("\n".join([lines[0], ",".join(first[:4] + [other]), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=rf"mitbih_train.beats.csv: row 2 gives label {other}, but row 1 of "
                                        rf"\S+mitbih_train.csv is {first[4]}: the side file is not this CSV's; build"):
        prepare_task("arrhythmia", inter_build, seed=0, rhythm=rhythm)


@pytest.mark.filterwarnings("ignore::data.checks.DataWarning")  # the generated records share one waveform
def test_a_side_file_or_csv_of_another_build_of_the_same_records_is_refused_by_its_digest(tmp_path):
    folder = write_records(tmp_path / "mitdb", ("100", "101", "103"), "NNNNNNLRAVFQ", seed=1)
    for seed in (0, 1):
        pn.build("mitdb", folder, tmp_path / f"intra{seed}", split="intra", seed=seed)
    mine, other = side_file(tmp_path / "intra0" / MITBIH_TRAIN), side_file(tmp_path / "intra1" / MITBIH_TRAIN)
    assert mine.read_text() != other.read_text()
    labels = [line.split(",")[4] for line in mine.read_text().splitlines()]
    assert labels == [line.split(",")[4] for line in other.read_text().splitlines()]  # rows ordered by class
    prepare_task("arrhythmia", tmp_path / "intra0", seed=0, rhythm=True)  # the pair as built
    built = mine.read_bytes()
    mine.write_bytes(other.read_bytes())
    with pytest.raises(DataError, match=r"intra0/mitbih_train.beats.csv is not the side file data.physionet built "
                                        r"there .*build the folder again"):
        prepare_task("arrhythmia", tmp_path / "intra0", seed=0, rhythm=True)
    mine.write_bytes(built)
    (tmp_path / "intra0" / MITBIH_TEST).write_bytes((tmp_path / "intra1" / MITBIH_TEST).read_bytes())
    with pytest.raises(DataError, match=r"intra0/mitbih_test.csv is not the CSV data.physionet built there"):
        prepare_task("arrhythmia", tmp_path / "intra0", seed=0, rhythm=True, cache_dir=tmp_path / "c")


@pytest.mark.skipif(not (MITDB / "RECORDS").is_file(), reason=f"no MIT-BIH records at {MITDB}")
def test_real_ds1_validation_records_hold_n_s_v_and_f_and_leave_record_208_to_training():
    with pytest.warns(pn.PhysioNetWarning):
        beats, _ = pn.read_database(MITDB, "mitdb")
    train, _ = pn.split_inter(beats.record)
    for seed in (0, 1, 2):
        rest, val, held = record_split(train, beats.y, beats.record, 0.1, seed)
        assert not set(beats.record[rest]) & set(held) and "208" not in held
        assert {0, 1, 2, 3} <= set(beats.y[val])  # N, S, V, F
