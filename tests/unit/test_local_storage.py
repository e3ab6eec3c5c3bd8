"""The local storage backend: atomic writes, public URLs, keys confined to its folder."""

import pytest

from shared.storage import LocalFile, image_key
from shared.storage.local import KeyOutsideStorage, LocalStorage


def test_put_writes_atomically_and_overwrites(tmp_path):
    storage = LocalStorage(tmp_path, "http://h/media")
    key = image_key("req", 3, 1, "jpg")
    storage.put(key, b"first", "image/jpeg")
    storage.put(key, b"second", "image/jpeg")
    assert (tmp_path / "req" / "3-1.jpg").read_bytes() == b"second"
    assert [p.name for p in (tmp_path / "req").iterdir()] == ["3-1.jpg"]
    assert storage.public_url(key) == "http://h/media/req/3-1.jpg"
    assert storage.locate(key) == LocalFile(tmp_path / "req" / "3-1.jpg", "image/jpeg")


def test_a_file_still_being_written_or_absent_is_not_found(tmp_path):
    storage = LocalStorage(tmp_path, "http://h/media")
    (tmp_path / "req").mkdir()
    (tmp_path / "req" / ".3-1.jpg.part").write_bytes(b"half")
    assert storage.locate("req/.3-1.jpg.part") is None
    assert storage.locate("req/absent.jpg") is None
    assert storage.locate("a\x00b") is None


@pytest.mark.parametrize("key", ["../x.jpg", "/etc/passwd", "a/../../x", "", "."])
def test_keys_outside_the_folder_are_refused(tmp_path, key):
    storage = LocalStorage(tmp_path / "media", "http://h/media")
    with pytest.raises(KeyOutsideStorage):
        storage.put(key, b"x", "image/jpeg")
    assert storage.locate(key) is None
