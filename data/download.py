"""Download the Kaggle "heartbeat" CSVs (shayanfazeli/heartbeat) and verify them by size and sha256.

    python -m data.download --to input/
    python -m data.download --to input/ --verify-only

Uses kagglehub if installed (`pip install kagglehub`; public data sets need no account), otherwise
the Kaggle API package (`pip install kaggle`, with credentials in ~/.kaggle/kaggle.json or
KAGGLE_USERNAME / KAGGLE_KEY). Files already present and verified are not fetched again.
A copy of a file with CRLF line endings differs from Kaggle's in size and sha256 but holds the same
data: it is reported as a CRLF copy, not as corruption, and loads as it is.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from data import entry
from data.beats import content_sha256
from data.constants import DEMO_MANIFEST, KAGGLE_DATASET, KAGGLE_FILES, PHYSIONET_BUILD
from data.files import atomic_write

MANUAL = (f"or download the four CSVs by hand from https://www.kaggle.com/datasets/{KAGGLE_DATASET} "
          "into the input folder")


class DownloadError(RuntimeError):
    """The data set could not be fetched or a file failed verification; one sentence says why."""


def verify_file(path, expected: tuple[int, str]) -> tuple[str, str]:
    """(status, sentence) for one file: status "ok", "crlf" (a CRLF copy of the same data), "missing", "corrupt",
    "demo" (data.demo's, which a download must not write over: ensure_demo would restore its own files later)."""
    path = Path(path)
    if path.is_dir():
        return "corrupt", f"{path} is a folder, not the CSV: move it away"
    if not path.is_file():
        return "missing", f"{path} is missing"
    size, sha = expected
    actual_size = path.stat().st_size
    actual_sha, crlf = content_sha256(path)  # with CRLF read as LF, so a CRLF copy hashes like the original
    if actual_sha == sha and actual_size == size:
        return "ok", f"{path}: {size:,} bytes, sha256 verified"
    if actual_sha == sha and crlf:
        return "crlf", (f"{path} is a CRLF copy of the Kaggle file (Windows line endings, {actual_size:,} bytes "
                        f"instead of {size:,}; same data, which loads as it is)")
    if (path.parent / DEMO_MANIFEST).exists():
        return "demo", (f"{path} is demo data (data.demo wrote it: {DEMO_MANIFEST} is beside it), not the Kaggle "
                           "file: download into another folder, or move the demo files away first")
    return "corrupt", (f"{path} does not match the Kaggle file ({actual_size:,} bytes, sha256 {actual_sha[:12]}..., "
                       f"expected {size:,} bytes, sha256 {sha[:12]}...): it is corrupt or incomplete, delete it "
                       "and download again")


def fetch_dataset(workdir: Path) -> Path:
    """Download the data set (the network boundary) and return the folder holding its files."""
    try:
        import kagglehub
    except ImportError:
        kagglehub = None
    if kagglehub is not None:
        try:
            return Path(kagglehub.dataset_download(KAGGLE_DATASET))
        except Exception as exc:  # kagglehub raises requests' and its own errors
            raise DownloadError(f"could not download {KAGGLE_DATASET} with kagglehub ({type(exc).__name__}: {exc}): "
                                f"check the network connection and Kaggle credentials, {MANUAL}") from None
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise DownloadError(f"neither kagglehub nor kaggle is installed: run `pip install kagglehub`, {MANUAL}") from None
    except Exception as exc:  # importing `kaggle` authenticates, and fails without credentials
        raise DownloadError(f"the Kaggle API has no credentials ({exc}): put kaggle.json in ~/.kaggle/ or set "
                            f"KAGGLE_USERNAME and KAGGLE_KEY, {MANUAL}") from None
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(KAGGLE_DATASET, path=str(workdir), unzip=True, quiet=False)
    except Exception as exc:
        raise DownloadError(f"could not download {KAGGLE_DATASET} with the Kaggle API ({type(exc).__name__}: {exc}): "
                            f"check the network connection and Kaggle credentials, {MANUAL}") from None
    return workdir


def download(to="input", *, expected: dict[str, tuple[int, str]] = KAGGLE_FILES, force: bool = False) -> dict[str, str]:
    """Fetch what is missing or corrupt into `to`, verify every file; returns {name: sentence}.

    Raises DownloadError when the download fails or a file does not verify.
    """
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    if (to / DEMO_MANIFEST).exists():  # ensure_demo would restore its own files over what is downloaded here
        raise DownloadError(f"{to} holds demo data (data.demo wrote its {DEMO_MANIFEST} there): download into another "
                            "folder, or move the demo files away first")
    if (to / PHYSIONET_BUILD).exists():  # the build's mitbih CSVs would be replaced by Kaggle's
        raise DownloadError(f"{to} holds a build of data.physionet (its {PHYSIONET_BUILD} is there): download into "
                            "another folder, or move the build away first")
    report = {name: verify_file(to / name, sizes) for name, sizes in expected.items()}
    todo = [name for name, (status, _) in report.items() if force or status not in ("ok", "crlf")]
    if todo:
        with tempfile.TemporaryDirectory(dir=to, prefix=".download-") as work:
            folder = fetch_dataset(Path(work))
            for name in todo:
                found = sorted(folder.rglob(name))
                if not found:
                    raise DownloadError(f"the downloaded data set in {folder} has no {name}")
                atomic_write(to / name, lambda tmp, src=found[0]: shutil.copyfile(src, tmp))
                report[name] = verify_file(to / name, expected[name])
    bad = [sentence for status, sentence in report.values() if status not in ("ok", "crlf")]
    if bad:
        raise DownloadError(bad[0])
    return {name: sentence for name, (_, sentence) in report.items()}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"Download and verify the Kaggle data set {KAGGLE_DATASET}.")
    parser.add_argument("--to", type=entry.path, default=Path("input"),
                        help="folder for the four CSVs (default: input)")
    parser.add_argument("--force", action="store_true", help="download again even if the files verify")
    parser.add_argument("--verify-only", action="store_true", help="only check the files already there")
    entry.add_verbose(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    if Path(args.to).exists() and not Path(args.to).is_dir():
        raise ValueError(f"--to {args.to} is a file; the CSVs go into a folder: give a folder's path")
    try:
        if args.verify_only:
            report = {name: verify_file(Path(args.to) / name, sizes) for name, sizes in KAGGLE_FILES.items()}
            for _, sentence in report.values():
                print(sentence)
            return 0 if all(status in ("ok", "crlf") for status, _ in report.values()) else 1
        for sentence in download(args.to, force=args.force).values():
            print(sentence)
    except DownloadError as exc:  # expected, as every entry point's (data/entry.py): status 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(entry.run(get_args_parser(), main))
