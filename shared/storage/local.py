"""Output images on the local disk, served by the API under `/media/`."""

import contextlib
import mimetypes
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from shared.storage.base import LocalFile, MissingObject, StorageUnavailable


class KeyOutsideStorage(ValueError):
    """A key that would name a file outside the storage folder."""


@contextlib.contextmanager
def refusals_as_unavailable(doing: str) -> Iterator[None]:
    """A write the file system refuses (no space, a quota, read-only, an I/O error) is the store
    refusing writes, not a fault of the image."""
    try:
        yield
    except OSError as error:
        raise StorageUnavailable(f"{doing}: {error}") from error


class LocalStorage:
    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root.resolve()
        self.base_url = base_url.rstrip("/")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.writable_path(key)
        with refusals_as_unavailable(f"writing {key}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target and rename over it, so a reader (or a worker killed
            # mid-write, or a disk that fills up mid-write) never leaves a part of an image
            # under the final name.
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                # mkstemp makes the file private; images are public, and a web server may serve the folder.
                os.chmod(temporary, 0o644)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def copy(self, source_key: str, key: str) -> None:
        source, path = self.writable_path(source_key), self.writable_path(key)
        with refusals_as_unavailable(f"writing {key}"):
            # A second name for the same file: no bytes are copied, and deleting either name leaves
            # the other whole. Most copies make a new name in a folder made already: at once, since
            # a link appears whole. Anything else (no folder yet, a name there already, the source
            # gone, another file system) takes the way below, which tells them apart.
            with contextlib.suppress(OSError):
                os.link(source, path)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._link_or_copy(source, source_key, path)

    def _link_or_copy(self, source: Path, source_key: str, path: Path) -> None:
        # Through a name of its own, renamed over the target; where links cannot be made, the bytes.
        temporary = path.parent / f".{uuid.uuid4().hex}.part"
        try:
            try:
                os.link(source, temporary)
            except FileNotFoundError:
                raise MissingObject(source_key) from None
            except OSError:
                shutil.copyfile(source, temporary)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            with refusals_as_unavailable(f"deleting {key}"):
                self.writable_path(key).unlink(missing_ok=True)

    def delete_request(self, request_id: str) -> None:
        # Gone already is done; anything else (a read-only disk) is refused, so that the request's
        # documents are not deleted while its images stay.
        with refusals_as_unavailable(f"deleting {request_id}/"), contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.writable_path(request_id))

    def probe(self) -> None:
        with refusals_as_unavailable("writing a probe"):
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-") as file:
                file.write(b"probe")
                file.flush()
                os.fsync(file.fileno())

    def public_url(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def writable_path(self, key: str) -> Path:
        """The file for a key the service made; checked by its parts, which is enough for
        keys it makes and cheaper than resolving links on every write."""
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):  # "" also where it starts with "/"
            raise KeyOutsideStorage(key)
        return Path(f"{self.root}/{key}")

    def locate(self, key: str) -> LocalFile | None:
        try:
            path = self.path_of(key)
            # Names starting with a dot are files still being written.
            if path.name.startswith(".") or not path.is_file():
                return None
        except (KeyOutsideStorage, OSError):  # OSError: a name longer than the file system allows
            return None
        return LocalFile(path, mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    def path_of(self, key: str) -> Path:
        """The file behind `key`, refusing any key that escapes the storage folder or names no file."""
        try:
            path = (self.root / key).resolve()
        except (ValueError, OSError) as error:  # a NUL byte, a name longer than the file system allows
            raise KeyOutsideStorage(key) from error
        if not path.is_relative_to(self.root) or path == self.root:
            raise KeyOutsideStorage(key)
        return path
