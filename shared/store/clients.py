"""MongoDB clients: the workers' sync one, the API's async one, and the stores that run on them."""

from typing import TypedDict

from pymongo import AsyncMongoClient, MongoClient

from shared.settings import Settings
from shared.store.operations import AsyncStore, RawDocument


class ClientOptions(TypedDict, total=False):
    """The MongoClient keyword options both services set (typed, so `**options` type-checks)."""

    tz_aware: bool
    serverSelectionTimeoutMS: int
    connectTimeoutMS: int
    timeoutMS: int
    socketTimeoutMS: int


CLIENT_OPTIONS: ClientOptions = {"tz_aware": True, "serverSelectionTimeoutMS": 5_000, "connectTimeoutMS": 5_000}
# Every operation of the API ends within 5 s, server selection and a server that stopped
# answering included, so a route answers (503) within the contract's 10 s. PyMongo also
# sends it to the server as maxTimeMS, which SecantusDB accepts on every command the API runs.
API_CLIENT_OPTIONS: ClientOptions = {**CLIENT_OPTIONS, "timeoutMS": 5_000}
# The worker waits longer for one network read (a merge of a large request may take seconds
# on the embedded server), and bounds each read rather than each operation: a timeoutMS
# would bound the lifetime of a whole cursor the sweeper walks.
WORKER_CLIENT_OPTIONS: ClientOptions = {**CLIENT_OPTIONS, "socketTimeoutMS": 30_000}


def mongodb_url(settings: Settings) -> str:
    if not settings.service.mongodb_url:
        raise RuntimeError("MONGODB_URL is not set: start the service with `make run`, which sets it")
    return settings.service.mongodb_url


def sync_client(settings: Settings) -> MongoClient[RawDocument]:
    return MongoClient(mongodb_url(settings), appname="image-worker", **WORKER_CLIENT_OPTIONS)


def async_client(settings: Settings) -> AsyncMongoClient[RawDocument]:
    return AsyncMongoClient(mongodb_url(settings), appname="image-api", **API_CLIENT_OPTIONS)


def async_store(client: AsyncMongoClient[RawDocument], settings: Settings) -> AsyncStore:
    return AsyncStore(client[settings.service.mongodb_database])
