"""Loading one CSV: every validation error with its message, CRLF input, and the cache."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from data import DataError, load_beat_file, load_beats
from data.beats import content_sha256
from data.cache import SUFFIX
from data.constants import BEAT_LEN
from data.demo import format_rows, make_beats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def beats():
    return make_beats("mitbih", 120, np.random.default_rng(0))


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(format_rows(x, y))
    return path


def edit_line(path: Path, row: int, edit) -> None:
    """Replace row `row` (1-based) of the file by edit(list of cells) joined with commas."""
    lines = path.read_text().splitlines()
    lines[row - 1] = ",".join(edit(lines[row - 1].split(",")))
    path.write_text("\n".join(lines) + "\n")


def set_cell(row: int, column: int, text: str):
    def edit(cells):
        cells[column - 1] = text
        return cells
    return lambda path: edit_line(path, row, edit)


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*" + SUFFIX)) if cache_dir.exists() else []


def test_loads_arrays_with_the_right_types(tmp_path, beats):
    x, y = beats
    path = write_csv(tmp_path / "mitbih_train.csv", x, y)
    got_x, got_y = load_beats(path)
    assert got_x.dtype == np.float32 and got_x.shape == (len(y), BEAT_LEN)
    assert got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_missing_file_says_where_to_get_the_data(tmp_path):
    with pytest.raises(DataError) as error:
        load_beats(tmp_path / "mitbih_train.csv")
    message = str(error.value)
    assert "mitbih_train.csv does not exist" in message
    assert "shayanfazeli/heartbeat" in message and "python -m data.download" in message


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "mitbih_test.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"mitbih_test\.csv is empty"):
        load_beats(path)


@pytest.mark.parametrize("name, edit, message", [
    ("header", lambda p: p.write_text(",".join(f"c{i}" for i in range(188)) + "\n" + p.read_text()),
     r"row 1 is a header line \('c0,c1,c2"),
    ("numbered header", lambda p: p.write_text(",".join(str(i) for i in range(188)) + "\n" + p.read_text()),
     r"row 1 is a header line \('0,1,2"),
    ("short row", lambda p: edit_line(p, 3, lambda c: c[:-1]), r"row 3 has 187 values, expected 188"),
    ("long row", lambda p: edit_line(p, 5, lambda c: c + ["0"]), r"row 5 has 189 values, expected 188"),
    ("non-numeric", set_cell(2, 5, "abc"), r"row 2, column 5 holds 'abc', which is not a number"),
    ("empty cell", set_cell(7, 100, ""), r"row 7, column 100 is empty"),
    ("nan", set_cell(4, 10, "nan"), r"row 4, column 10 is NaN"),
    ("infinity", set_cell(9, 1, "inf"), r"row 9, column 1 is infinite"),
    ("minus infinity", set_cell(9, 187, "-inf"), r"row 9, column 187 is infinite"),
    ("fractional label", set_cell(6, 188, "2.5"), r"row 6, column 188 \(the label\) is 2\.5, expected an integer in 0\.\.4"),
    ("label too big", set_cell(8, 188, "5.0"), r"row 8, column 188 \(the label\) is 5, expected an integer in 0\.\.4"),
    ("negative label", set_cell(8, 188, "-1"), r"row 8, column 188 \(the label\) is -1, expected an integer in 0\.\.4"),
])
def test_each_validation_error_names_file_row_and_column(tmp_path, beats, name, edit, message):
    path = write_csv(tmp_path / "mitbih_train.csv", *beats)
    edit(path)
    with pytest.raises(DataError, match=message) as error:
        load_beats(path)
    text = str(error.value)
    assert text.startswith(str(path)) and "\n" not in text
    assert not entries(tmp_path / ".cache")  # nothing cached for a bad file


def test_first_offending_row_is_reported(tmp_path, beats):
    path = write_csv(tmp_path / "mitbih_train.csv", *beats)
    set_cell(50, 3, "x")(path)
    set_cell(20, 188, "7")(path)
    with pytest.raises(DataError, match="row 20, column 188"):
        load_beats(path)


def test_labels_are_checked_against_the_file(tmp_path):
    rng = np.random.default_rng(1)
    x, _ = make_beats("ptb_normal", 20, rng)
    path = write_csv(tmp_path / "ptbdb_normal.csv", x, np.zeros(20, np.int64))
    load_beats(path)
    set_cell(4, 188, "1")(path)
    with pytest.raises(DataError, match=r"ptbdb_normal\.csv row 4, column 188 \(the label\) is 1, expected 0"):
        load_beats(path)
    path = write_csv(tmp_path / "ptbdb_abnormal.csv", x, np.ones(20, np.int64))
    load_beats(path)
    set_cell(2, 188, "0")(path)
    with pytest.raises(DataError, match=r"ptbdb_abnormal\.csv row 2, column 188 \(the label\) is 0, expected 1"):
        load_beats(path)
    # A file name the project does not know may hold any label 0..4.
    path = write_csv(tmp_path / "other.csv", x, np.arange(20) % 5)
    assert set(load_beats(path)[1]) == set(range(5))


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "mitbih_train.csv").mkdir()
    with pytest.raises(DataError, match="is not a file"):
        load_beats(tmp_path / "mitbih_train.csv")


def test_crlf_file_loads_like_the_lf_file(tmp_path, beats):
    lf = write_csv(tmp_path / "lf" / "mitbih_train.csv", *beats)
    crlf = tmp_path / "crlf" / "mitbih_train.csv"
    crlf.parent.mkdir()
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    a, b = load_beat_file(lf), load_beat_file(crlf)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not a.crlf and b.crlf
    assert a.sha256 == b.sha256  # same data, same fingerprint
    set_cell(3, 2, "oops")(crlf)  # errors in a CRLF file name the row too (the edit keeps LF: mixed endings)
    with pytest.raises(DataError, match="row 3, column 2"):
        load_beats(crlf)


def test_content_sha256_reads_crlf_split_across_chunks(tmp_path):
    data = b"a" * ((1 << 22) - 1) + b"\r\n" + b"b\r\n"
    (tmp_path / "f").write_bytes(data)
    import hashlib
    assert content_sha256(tmp_path / "f") == (hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest(), True)


def test_samples_outside_unit_interval_warn_once(tmp_path, beats):
    x, y = beats
    x = x.copy()
    x[3, 10], x[5, 0] = 1.5, 2.0
    path = tmp_path / "mitbih_train.csv"
    lines = format_rows(x.clip(0, 1), y).decode().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[10], "1.5", 1)
    lines[5] = "-0.25" + lines[5][lines[5].index(","):]
    path.write_text("\n".join(lines) + "\n")
    for _ in range(2):  # the parse and the cached load both warn, once
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got_x, _ = load_beats(path)
        assert len(caught) == 1
        assert "2 samples in 2 rows lie outside [0, 1] (first: row 4, column 11, 1.5)" in str(caught[0].message)
    assert got_x[5, 0] == -0.25


def test_cache_hit_then_invalidation_on_any_change(tmp_path, beats):
    x, y = beats
    path = write_csv(tmp_path / "mitbih_train.csv", x, y)
    first = load_beat_file(path)
    assert not first.from_cache and len(entries(tmp_path / ".cache")) == 1
    second = load_beat_file(path)
    assert second.from_cache and second.sha256 == first.sha256
    np.testing.assert_array_equal(second.x, first.x)

    # Same size, same mtime, different content: still noticed (ctime and sampled blocks change).
    stat = path.stat()
    x2 = x.copy()
    x2[60, 50] = 0.123456789
    path.write_bytes(format_rows(x2, y))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    third = load_beat_file(path)
    assert not third.from_cache and third.sha256 != first.sha256
    assert third.x[60, 50] == np.float32(0.123456789)
    assert len(entries(tmp_path / ".cache")) == 1  # the stale entry was replaced

    # A changed size (one more row) is a new entry too.
    write_csv(path, np.vstack([x2, x2[:1]]), np.r_[y, y[:1]])
    fourth = load_beat_file(path)
    assert not fourth.from_cache and len(fourth.y) == len(y) + 1
    assert load_beat_file(path).from_cache


def test_cache_dir_can_be_elsewhere(tmp_path, beats):
    path = write_csv(tmp_path / "in" / "mitbih_train.csv", *beats)
    load_beats(path, cache_dir=tmp_path / "elsewhere")
    assert len(entries(tmp_path / "elsewhere")) == 1 and not (tmp_path / "in" / ".cache").exists()
    assert load_beat_file(path, cache_dir=tmp_path / "elsewhere").from_cache


def test_unwritable_cache_dir_warns_and_loads(tmp_path, beats):
    path = write_csv(tmp_path / "mitbih_train.csv", *beats)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    for _ in range(2):
        with pytest.warns(UserWarning, match="cannot be written"):
            loaded = load_beat_file(path, cache_dir=blocker)
        assert not loaded.from_cache and len(loaded.y) == len(beats[1])


def test_unreadable_entry_is_rebuilt_not_trusted(tmp_path, beats):
    path = write_csv(tmp_path / "mitbih_train.csv", *beats)
    load_beats(path)
    (entry,) = entries(tmp_path / ".cache")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # as a non-atomic copy might leave it
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
        loaded = load_beat_file(path)
    assert not loaded.from_cache
    np.testing.assert_array_equal(loaded.x, beats[0])
    assert load_beat_file(path).from_cache


CRASH = """
import os, sys
import numpy as np
import data.cache
from data import load_beats
where = sys.argv[2]
if where == "before-rename":
    data.cache.os.replace = lambda *a: os._exit(9)
else:  # die halfway through writing the arrays
    real_save = np.save
    def save(f, array, **kw):
        if array.ndim == 2:
            f.write(b"\\x93NUMPY partial")
            f.flush()
            os._exit(9)
        real_save(f, array, **kw)
    data.cache.np.save = save
load_beats(sys.argv[1])
"""


@pytest.mark.parametrize("where", ["before-rename", "mid-write"])
def test_crash_mid_write_leaves_no_trusted_entry(tmp_path, beats, where):
    path = write_csv(tmp_path / "mitbih_train.csv", *beats)
    result = subprocess.run([sys.executable, "-c", CRASH, str(path), where], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    assert not entries(tmp_path / ".cache")  # only the temporary file is left
    assert list((tmp_path / ".cache").glob(".*.tmp"))
    loaded = load_beat_file(path)
    assert not loaded.from_cache
    np.testing.assert_array_equal(loaded.x, beats[0])
    assert load_beat_file(path).from_cache
