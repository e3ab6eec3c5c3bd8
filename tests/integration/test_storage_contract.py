"""The storage contract, the same for every backend: local files, and a real S3-compatible
server (SeaweedFS) for the S3 one; then what only S3 adds: object headers, signed URLs that
expire, a private bucket, and /media answering with a redirect to a signed URL.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import httpx
import pytest
from fastapi.testclient import TestClient

from api_service.main import create_app
from local_stack.seaweedfs import SeaweedFS
from shared.settings import Settings
from shared.storage import (
    Elsewhere,
    LocalFile,
    MissingObject,
    S3Storage,
    Storage,
    image_key,
    storage_from_settings,
)
from tests.support import images
from tests.support.settings import changed

PUBLIC_BASE_URL = "http://api.example:8000"
NOWHERE = "127.0.0.1:9"  # the discard port: the API test needs no database
JPEG = images.encode(images.photo(64, 48, seed=11), "JPEG", quality=80)


@dataclass(frozen=True)
class Stored:
    data: bytes
    content_type: str


def read_back(storage: Storage, key: str) -> Stored | None:
    """The object as a client gets it: the file /media serves, or what its signed URL answers."""
    match storage.locate(key):
        case LocalFile(path, content_type):
            return Stored(path.read_bytes(), content_type) if path.is_file() else None
        case Elsewhere(url):
            response = httpx.get(url)
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            return Stored(response.content, response.headers["content-type"])
        case None:
            return None


def s3_settings(server: SeaweedFS, tmp_path: Path, **overrides: object) -> Settings:
    return Settings.load(
        **{
            "public_base_url": PUBLIC_BASE_URL,
            "data_dir": tmp_path,
            "storage_backend": "s3",
            "s3_endpoint_url": server.endpoint_url,
            "s3_bucket": server.bucket,
            "s3_region": server.region,
            # Each test its own folder of the one bucket the session shares.
            "s3_prefix": f"tests/{uuid4().hex}/",
            **overrides,
        }
    )


@pytest.fixture
def s3_credentials(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The server's identity in the standard variables, where the S3 client finds it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    return seaweedfs


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "s3":
        return s3_settings(request.getfixturevalue("s3_credentials"), tmp_path)
    return Settings.load(public_base_url=PUBLIC_BASE_URL, data_dir=tmp_path)


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return storage_from_settings(settings)


def test_what_is_put_reads_back_with_its_content_type(storage):
    key = image_key("req", 1, 0, "jpg")
    storage.put(key, JPEG, "image/jpeg")
    assert read_back(storage, key) == Stored(JPEG, "image/jpeg")


def test_a_second_put_replaces_the_first(storage):
    key = image_key("req", 1, 0, "png")
    storage.put(key, b"first", "image/png")
    storage.put(key, b"second", "image/png")
    assert read_back(storage, key) == Stored(b"second", "image/png")


def test_an_absent_object_is_not_found(storage):
    assert read_back(storage, "req/9-9.jpg") is None


def test_a_copy_reads_back_byte_for_byte(storage):
    storage.put(image_key("old", 1, 0, "jpg"), JPEG, "image/jpeg")
    storage.copy(image_key("old", 1, 0, "jpg"), image_key("new", 3, 2, "jpg"))
    assert read_back(storage, image_key("new", 3, 2, "jpg")) == Stored(JPEG, "image/jpeg")
    # A second copy onto the same key replaces it, like a second put.
    storage.put(image_key("other", 1, 0, "jpg"), b"other bytes", "image/jpeg")
    storage.copy(image_key("other", 1, 0, "jpg"), image_key("new", 3, 2, "jpg"))
    assert read_back(storage, image_key("new", 3, 2, "jpg")) == Stored(b"other bytes", "image/jpeg")
    assert read_back(storage, image_key("old", 1, 0, "jpg")) == Stored(JPEG, "image/jpeg")


def test_a_copy_outlives_its_source_and_deleting_twice_is_no_error(storage):
    storage.put(image_key("old", 1, 0, "png"), b"png bytes", "image/png")
    storage.copy(image_key("old", 1, 0, "png"), image_key("new", 1, 0, "png"))
    storage.delete([image_key("old", 1, 0, "png"), image_key("never", 1, 0, "png")])
    storage.delete([image_key("old", 1, 0, "png")])
    assert read_back(storage, image_key("old", 1, 0, "png")) is None
    assert read_back(storage, image_key("new", 1, 0, "png")) == Stored(b"png bytes", "image/png")


def test_copying_an_object_that_is_not_there_says_so(storage):
    with pytest.raises(MissingObject):
        storage.copy(image_key("gone", 1, 0, "jpg"), image_key("new", 1, 0, "jpg"))
    assert read_back(storage, image_key("new", 1, 0, "jpg")) is None


@pytest.mark.parametrize("key", ["../x.jpg", "/etc/passwd", "a/../../x", "", ".", "a\x00b"])
def test_an_invalid_key_is_located_nowhere(storage, key):
    assert storage.locate(key) is None


def test_public_urls_are_under_media_base_url_or_the_api(settings):
    key = image_key("req", 2, 1, "webp")
    assert storage_from_settings(settings).public_url(key) == f"{PUBLIC_BASE_URL}/media/req/2-1.webp"
    cdn = settings.replacing(storage=changed(settings.storage, media_base_url="https://cdn.example/images/"))
    assert storage_from_settings(cdn).public_url(key) == "https://cdn.example/images/req/2-1.webp"


# What only S3 adds.


@pytest.fixture
def s3(s3_credentials: SeaweedFS, tmp_path: Path) -> S3Storage:
    storage = storage_from_settings(s3_settings(s3_credentials, tmp_path))
    assert isinstance(storage, S3Storage)
    return storage


def test_objects_carry_their_content_type_and_cache_control(s3, seaweedfs):
    key = image_key("req", 1, 0, "jpg")
    s3.put(key, JPEG, "image/jpeg")
    head = seaweedfs.client().head_object(Bucket=seaweedfs.bucket, Key=f"{s3.prefix}{key}")
    assert (head["ContentType"], head["CacheControl"]) == ("image/jpeg", "public, max-age=86400")
    location = s3.locate(key)
    assert isinstance(location, Elsewhere)
    response = httpx.get(location.url)
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "public, max-age=86400"


def test_the_prefix_is_a_folder(s3_credentials, seaweedfs, tmp_path):
    folder = f"tests/{uuid4().hex}"
    storage = storage_from_settings(s3_settings(s3_credentials, tmp_path, s3_prefix=folder))
    storage.put("req/1-0.jpg", JPEG, "image/jpeg")
    listed = seaweedfs.client().list_objects_v2(Bucket=seaweedfs.bucket, Prefix=folder)
    assert [item["Key"] for item in listed["Contents"]] == [f"{folder}/req/1-0.jpg"]


def test_a_signed_url_lives_as_long_as_configured(s3_credentials, tmp_path):
    # The signature's time is in whole seconds, so a URL lives between its lifetime less a second
    # and its lifetime: with 1 s, a read right after signing could already find it expired.
    storage = storage_from_settings(s3_settings(s3_credentials, tmp_path, s3_presigned_url_seconds=3))
    key = image_key("req", 1, 0, "jpg")
    storage.put(key, JPEG, "image/jpeg")
    location = storage.locate(key)
    assert isinstance(location, Elsewhere)
    assert parse_qs(urlsplit(location.url).query)["X-Amz-Expires"] == ["3"]
    assert httpx.get(location.url).status_code == 200
    time.sleep(3.2)
    expired = httpx.get(location.url)
    assert expired.status_code == 403
    assert "expired" in expired.text


def test_signed_urls_name_the_address_clients_reach_the_store_at(s3_credentials, tmp_path):
    """The service writes to the store at one address (127.0.0.1) and clients read at another (localhost)."""
    public = s3_credentials.endpoint_url.replace("127.0.0.1", "localhost")
    storage = storage_from_settings(s3_settings(s3_credentials, tmp_path, s3_public_endpoint_url=public))
    key = image_key("req", 1, 0, "jpg")
    storage.put(key, JPEG, "image/jpeg")
    location = storage.locate(key)
    assert isinstance(location, Elsewhere) and location.url.startswith(f"{public}/")
    assert httpx.get(location.url).content == JPEG


def test_the_default_lifetime_is_the_setting(s3):
    location = s3.locate("req/1-0.jpg")
    assert isinstance(location, Elsewhere)
    assert parse_qs(urlsplit(location.url).query)["X-Amz-Expires"] == ["300"]


def test_the_bucket_refuses_unsigned_requests(s3, seaweedfs):
    key = image_key("req", 1, 0, "jpg")
    s3.put(key, JPEG, "image/jpeg")
    object_url = f"{seaweedfs.endpoint_url}/{seaweedfs.bucket}/{s3.prefix}{key}"
    assert httpx.get(object_url).status_code == 403
    assert httpx.put(object_url, content=b"defaced").status_code == 403
    assert httpx.put(f"{seaweedfs.endpoint_url}/{seaweedfs.bucket}/{s3.prefix}new.jpg", content=b"x").status_code == 403
    assert read_back(s3, key) == Stored(JPEG, "image/jpeg")


def test_one_client_per_process(s3, monkeypatch):
    client = s3.store
    assert s3.store is client
    # A forked worker process has another pid: it must make its own client.
    monkeypatch.setattr("shared.storage.s3.os.getpid", lambda: -1)
    assert s3.store is not client


# /media with STORAGE_BACKEND=s3, in process.


@pytest.fixture
def api(s3_credentials: SeaweedFS, tmp_path: Path) -> Iterator[tuple[TestClient, Storage]]:
    settings = s3_settings(
        s3_credentials, tmp_path, mongodb_url=f"mongodb://{NOWHERE}", redis_url=f"redis://{NOWHERE}/0"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, storage_from_settings(settings)


def test_media_redirects_to_a_signed_url_of_the_image(api):
    client, storage = api
    key = image_key("req", 3, 0, "jpg")
    storage.put(key, JPEG, "image/jpeg")
    response = client.get(f"/media/{key}", follow_redirects=False)
    assert response.status_code == 307
    image = httpx.get(response.headers["location"])
    assert image.status_code == 200
    assert (image.content, image.headers["content-type"]) == (JPEG, "image/jpeg")


def test_media_of_an_absent_image_is_the_buckets_404_and_of_an_invalid_key_a_404(api):
    client, _ = api
    absent = client.get("/media/req/9-9.jpg", follow_redirects=False)
    assert absent.status_code == 307
    assert httpx.get(absent.headers["location"]).status_code == 404
    invalid = client.get("/media/..%2f..%2fetc%2fpasswd", follow_redirects=False)
    assert (invalid.status_code, invalid.json()) == (404, {"detail": "not found"})
