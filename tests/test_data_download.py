"""python -m data.download: fetch, copy and verify; only the network call (kagglehub) is replaced."""

import hashlib
import sys
import types

import pytest

from data import download as dl
from data.constants import KAGGLE_FILES
from data.demo import write_demo


@pytest.fixture
def served(tmp_path):
    """A folder standing for the data set as kagglehub leaves it, and its (size, sha256) table."""
    folder = tmp_path / "kagglehub-cache" / "versions" / "1"
    write_demo(folder, rows=100, seed=0)
    expected = {name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
                for name in KAGGLE_FILES for p in [folder / name]}
    return folder, expected


@pytest.fixture
def kagglehub(monkeypatch):
    """Replace the network boundary: kagglehub.dataset_download returns `module.folder` or raises `module.error`."""
    module = types.SimpleNamespace(folder=None, error=None, calls=[])

    def dataset_download(handle):
        module.calls.append(handle)
        if module.error:
            raise module.error
        return str(module.folder)
    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    return module


def test_downloads_copies_and_verifies(tmp_path, served, kagglehub):
    folder, expected = served
    kagglehub.folder = folder
    report = dl.download(tmp_path / "input", expected=expected)
    assert kagglehub.calls == ["shayanfazeli/heartbeat"]
    for name in expected:
        assert (tmp_path / "input" / name).read_bytes() == (folder / name).read_bytes()
        assert "sha256 verified" in report[name]
    dl.download(tmp_path / "input", expected=expected)  # everything verifies: nothing fetched again
    assert len(kagglehub.calls) == 1
    assert not list((tmp_path / "input").glob(".download-*"))


def test_corrupt_download_is_reported(tmp_path, served, kagglehub):
    folder, expected = served
    kagglehub.folder = folder
    target = folder / "ptbdb_normal.csv"
    target.write_bytes(target.read_bytes()[:-100])  # truncated in transit
    with pytest.raises(dl.DownloadError, match=r"ptbdb_normal\.csv does not match the Kaggle file .* corrupt or incomplete"):
        dl.download(tmp_path / "input", expected=expected)


def test_a_crlf_copy_is_recognised_not_called_corrupt(tmp_path, served, kagglehub):
    folder, expected = served
    kagglehub.folder = folder
    name = "mitbih_test.csv"
    local = tmp_path / "input"
    local.mkdir()
    for other in expected:
        (local / other).write_bytes((folder / other).read_bytes())
    (local / name).write_bytes((folder / name).read_bytes().replace(b"\n", b"\r\n"))
    report = dl.download(local, expected=expected)
    assert "is a CRLF copy of the Kaggle file" in report[name] and "same data" in report[name]
    assert not kagglehub.calls  # a CRLF copy is a good copy


def test_offline_fails_with_a_clear_sentence(tmp_path, kagglehub):
    kagglehub.error = ConnectionError("Failed to resolve 'www.kaggle.com'")
    with pytest.raises(dl.DownloadError) as error:
        dl.download(tmp_path / "input")
    message = str(error.value)
    assert message.startswith("could not download shayanfazeli/heartbeat with kagglehub (ConnectionError")
    assert "network connection and Kaggle credentials" in message and "\n" not in message


def test_no_downloader_installed_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    monkeypatch.setitem(sys.modules, "kaggle", None)
    with pytest.raises(dl.DownloadError, match=r"neither kagglehub nor kaggle is installed: run `pip install kagglehub`"):
        dl.download(tmp_path / "input")
    assert dl.main(dl.get_args_parser().parse_args(["--to", str(tmp_path / "input")])) == 2
    assert "error: neither kagglehub" in capsys.readouterr().err


def test_verify_only_checks_the_real_hashes(tmp_path, served, capsys):
    folder, _ = served
    assert dl.main(dl.get_args_parser().parse_args(["--to", str(folder), "--verify-only"])) == 1
    out = capsys.readouterr().out
    assert "mitbih_train.csv is demo data (data.demo wrote it: demo.json is beside it), not the Kaggle file" in out
    status, sentence = dl.verify_file(tmp_path / "nothing.csv", KAGGLE_FILES["mitbih_test.csv"])
    assert status == "missing"
