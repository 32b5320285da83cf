"""Where a study's files live: a local folder, or a URI that pyarrow's file systems reach (s3://, gs://, ...).

    store = Storage.at("results/smoke")                      # a local folder
    store = Storage.at("s3://bucket/results/smoke")          # S3; credentials and endpoint as the AWS SDK finds them
    store.write_json("cells/x.json", {...}); store.read_text("cells/x.json"); store.ref("checkpoints/a/best.pt")

A reader never sees half a file: local writes go through data.files.atomic_write (temporary file, fsync,
rename); an object store's PUT is atomic by itself, so remote writes hand the store the whole content in one
request. A file named by a reference (``ref``) on another node is fetched with ``fetch``.
"""

import json
import re
import shutil
from pathlib import Path, PurePosixPath

import pyarrow
import pyarrow.fs

from data.files import WriteError, atomic_write, write_text

# "s3://", "gs://", "hdfs://" ...; two letters at least, so a Windows drive ("C:\\") is not taken for a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
OBJECT_STORES = ("s3", "gcs")  # pyarrow type names of stores whose PUT replaces an object atomically


def is_uri(location) -> bool:
    """True for a location with a scheme other than file:// (those are plain local paths)."""
    match = _SCHEME.match(str(location))
    return bool(match) and match.group(1).lower() != "file"


def _local_path(location) -> Path:
    text = str(location)
    return Path(text[len("file://"):] if text.lower().startswith("file://") else text)


class Storage:
    """A folder on some file system; every path given to its methods is relative to it, '/'-separated."""

    @staticmethod
    def at(location) -> "Storage":
        return RemoteStorage.open(str(location)) if is_uri(location) else LocalStorage(_local_path(location))

    location: str  # what users see, and what other processes open with Storage.at

    def child(self, name: str) -> "Storage":
        raise NotImplementedError

    def ref(self, rel: str = "") -> str:
        """The location of a file in this folder, for a record read by other processes or nodes."""
        raise NotImplementedError

    def read_json(self, rel: str) -> dict | None:
        """The parsed file, or None when it does not exist; invalid JSON fails with a sentence naming it."""
        text = self.read_text(rel)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.ref(rel)} is not valid JSON ({error}); move it away to run again.") from None

    def write_json(self, rel: str, obj) -> None:
        """JSON with sorted keys and no NaN (which is not JSON), so files diff cleanly and parse anywhere."""
        self.write_text(rel, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")

    def __str__(self) -> str:
        return self.location


class LocalStorage(Storage):
    def __init__(self, root: Path):
        self.root = Path(root)  # as given: callers that record references pass an absolute path
        self.location = str(self.root)

    def child(self, name: str) -> "LocalStorage":
        return LocalStorage(self.root / name)

    def path(self, rel: str = "") -> Path:
        return self.root / rel if rel else self.root

    def ref(self, rel: str = "") -> str:
        return str(self.path(rel))

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def _file(self, rel: str) -> Path | None:
        """The file's path, or None when nothing is there; a folder in its place fails with a sentence."""
        path = self.path(rel)
        if path.is_dir():
            raise ValueError(f"{path} is a folder where a file belongs; move it away.")
        return path if path.exists() else None

    def read_bytes(self, rel: str) -> bytes | None:
        path = self._file(rel)
        return None if path is None else path.read_bytes()

    def read_text(self, rel: str) -> str | None:
        path = self._file(rel)
        return None if path is None else path.read_text()

    def write_text(self, rel: str, text: str) -> None:
        write_text(self.path(rel), text)

    def delete(self, rel: str) -> None:
        """Remove a file if it is there."""
        self.path(rel).unlink(missing_ok=True)

    def delete_folder(self, rel: str) -> None:
        """Remove a folder and everything in it, if it is there."""
        if self.path(rel).is_dir():
            shutil.rmtree(self.path(rel))

    def put_file(self, local: Path, rel: str) -> None:
        atomic_write(self.path(rel), lambda tmp: shutil.copyfile(local, tmp))

    def list(self, rel: str, suffix: str = "") -> list[str]:
        """Names of the files directly in folder ``rel`` ending with ``suffix``, sorted; a folder with such a name is
        listed too, so that reading it says what is wrong instead of passing over it."""
        folder = self.path(rel)
        return sorted(p.name for p in folder.iterdir() if p.name.endswith(suffix)) if folder.is_dir() else []

    def makedirs(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WriteError(error.errno, error.strerror or str(error), str(self.root)) from None


class RemoteStorage(Storage):
    def __init__(self, fs, base: str, scheme: str, query: str = ""):
        self.fs, self.base, self.scheme, self.query = fs, base.rstrip("/"), scheme, query
        self.location = self.ref()

    @classmethod
    def open(cls, location: str) -> "RemoteStorage":
        scheme = _SCHEME.match(location).group(1)
        query = location.partition("?")[2]
        try:
            fs, base = pyarrow.fs.FileSystem.from_uri(location)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... by scheme
            raise ValueError(f"cannot open {location}: {_first_line(error)}; give a local folder or a URI such "
                             "as s3://bucket/prefix") from None
        return cls(fs, base, scheme, query)

    def child(self, name: str) -> "RemoteStorage":
        return RemoteStorage(self.fs, self._key(name), self.scheme, self.query)

    def _key(self, rel: str) -> str:
        return str(PurePosixPath(self.base, rel)) if rel else self.base

    def ref(self, rel: str = "") -> str:
        return f"{self.scheme}://{self._key(rel)}" + (f"?{self.query}" if self.query else "")

    def exists(self, rel: str) -> bool:
        return self._call("read", rel, lambda: self.fs.get_file_info(self._key(rel)).type != pyarrow.fs.FileType.NotFound)

    def read_bytes(self, rel: str) -> bytes | None:
        if not self.exists(rel):
            return None

        def read():
            with self.fs.open_input_stream(self._key(rel)) as stream:
                return stream.read()

        return self._call("read", rel, read)

    def read_text(self, rel: str) -> str | None:
        data = self.read_bytes(rel)
        return None if data is None else data.decode()

    def write_bytes(self, rel: str, data: bytes) -> None:
        def write():
            # The whole content, then close: pyarrow completes an upload on close even after an exception in
            # a `with` block, which would publish half a file.
            stream = self.fs.open_output_stream(self._key(rel))
            stream.write(data)
            stream.close()

        if self.fs.type_name in OBJECT_STORES:
            self._call("write", rel, write)
        else:  # a file system with real folders: write beside, then move over the target
            final, rel = rel, f"{rel}.tmp"
            self._call("write", rel, write)
            self._call("write", final, lambda: self.fs.move(self._key(rel), self._key(final)))

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def delete(self, rel: str) -> None:
        """Remove a file if it is there."""
        if self.exists(rel):
            self._call("delete", rel, lambda: self.fs.delete_file(self._key(rel)))

    def delete_folder(self, rel: str) -> None:
        """Remove a folder and everything in it (every object under its prefix), if it is there."""
        if self.exists(rel):
            self._call("delete", rel, lambda: self.fs.delete_dir(self._key(rel)))

    def put_file(self, local: Path, rel: str) -> None:
        self.write_bytes(rel, Path(local).read_bytes())

    def list(self, rel: str, suffix: str = "") -> list[str]:
        selector = pyarrow.fs.FileSelector(self._key(rel), allow_not_found=True)
        infos = self._call("read", rel, lambda: self.fs.get_file_info(selector))
        return sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.File and i.base_name.endswith(suffix))

    def makedirs(self) -> None:
        self._call("write", "", lambda: self.fs.create_dir(self.base, recursive=True))

    def _call(self, what: str, rel: str, action):
        try:
            return action()
        except OSError as error:
            raise OSError(f"could not {what} {self.ref(rel)}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def fetch(ref: str, folder: Path) -> Path:
    """A local path holding the file a reference names: the path itself, or a download into ``folder``."""
    if not is_uri(ref):
        return _local_path(ref)
    parent, _, name = ref.partition("?")[0].rpartition("/")
    query = ref.partition("?")[2]
    store = RemoteStorage.open(parent + (f"?{query}" if query else ""))
    data = store.read_bytes(name)
    if data is None:
        raise FileNotFoundError(f"{ref} does not exist")
    local = Path(folder) / name
    atomic_write(local, lambda tmp: tmp.write_bytes(data))
    return local
