"""The store's queries as data, and the two runners that send them to MongoDB.

A store module (one per collection) writes each query once, as an `Operation`: which collection,
which filter, projection or update, and the type its answer has. The workers run it with the sync
runner (PyMongo's `MongoClient`), the API with the async one (`AsyncMongoClient`); neither knows
what the query means. A query that needs another's answer first (a merge retried after a race) is a
generator of operations, a *program*, which either runner drives step by step:

    def merge(...) -> Program[int]:
        document = yield from requests.find_one(...)   # typed: the operation's answer
        ...

So a store's logic is written once, for both services, and its queries can be read (and tested)
without a database.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from pymongo import IndexModel, ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

# A document as PyMongo reads and writes it: the store modules give it its type.
RawDocument = dict[str, Any]
# A filter, a projection or an update: MongoDB's own query language, free-form by nature.
Query = Mapping[str, Any]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
D = TypeVar("D")

# A store's logic of several steps: it yields operations and gets each one's answer back.
Program = Generator["Operation[Any]", Any, T]


class UnindexedIdQuery(ValueError):
    """A filter on `_id` with a top-level `$or` beside it."""


def checked(query: Query) -> Query:
    """`query`, if it looks documents up by `_id` the way every server can use the index for.

    The embedded MongoDB-compatible server uses the `_id` index only when no top-level `$or` sits
    beside `_id`, and otherwise decodes every document of the collection (measured: 20 ms per
    product claim among 2,000 claims, growing with them, against 1 ms). So no store filters that
    way: a condition that needs an $or is written as one condition on its field (`leases`), or
    decided in Python on what the `_id` lookup returns.
    """
    if "_id" in query and "$or" in query:
        raise UnindexedIdQuery(f"a filter on _id with a top-level $or scans the collection: {dict(query)}")
    return query


# The embedded server finds each id of an `$in` on `_id` by the index, then matches every document
# found against the whole list again: n ids cost it n² (measured: 100 ids 12 ms, 1,000 ids 0.77 s).
# So a longer list is sent a chunk at a time, whatever the server.
IDS_AT_ONCE = 100


def id_chunks(query: Query) -> list[Query]:
    """`query` as queries of at most IDS_AT_ONCE ids each, when it selects a list of ids."""
    ids = query.get("_id")
    if not isinstance(ids, Mapping) or list(ids) != ["$in"] or len(ids["$in"]) <= IDS_AT_ONCE:
        return [query]
    listed = list(ids["$in"])
    return [{**query, "_id": {"$in": listed[i : i + IDS_AT_ONCE]}} for i in range(0, len(listed), IDS_AT_ONCE)]


class Operation(Generic[T]):
    """One command on one collection; its answer, parsed, is a `T`."""

    collection: str

    def run(self, collection: Collection[RawDocument]) -> Any:
        raise NotImplementedError

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        raise NotImplementedError

    def parse(self, answer: Any) -> T:
        """The answer as the store's type; documents are typed dictionaries, so no copy is made."""
        return cast(T, answer)

    def __iter__(self) -> Generator[Operation[Any], Any, T]:
        answer = yield self
        return self.parse(answer)


@dataclass(frozen=True)
class Filtered(Operation[T]):
    """An operation on the documents a filter selects; the filter is checked when it is made."""

    collection: str
    filter: Query

    def __post_init__(self) -> None:
        checked(self.filter)


@dataclass(frozen=True)
class Updated:
    matched: int
    modified: int
    upserted: bool = False


@dataclass(frozen=True)
class FindOne(Filtered[D | None]):
    projection: Query | None = None

    def run(self, collection: Collection[RawDocument]) -> Any:
        return collection.find_one(self.filter, self.projection)

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        return await collection.find_one(self.filter, self.projection)


@dataclass(frozen=True)
class Find(Filtered[list[D]]):
    projection: Query | None = None
    sort: Sequence[tuple[str, int]] | None = None
    limit: int = 0

    def _queries(self) -> list[Query]:
        # A sorted or limited answer is one query's.
        return [self.filter] if self.sort or self.limit else id_chunks(self.filter)

    def run(self, collection: Collection[RawDocument]) -> Any:
        return [
            document
            for query in self._queries()
            for document in collection.find(query, self.projection, sort=self.sort, limit=self.limit)
        ]

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        found = []
        for query in self._queries():
            found += await collection.find(query, self.projection, sort=self.sort, limit=self.limit).to_list()
        return found


@dataclass(frozen=True)
class FindOneAndUpdate(Filtered[D | None]):
    """The document after the update (or before it, with `after=False`); None when none matched."""

    update: Query
    projection: Query | None = None
    upsert: bool = False
    after: bool = True

    def _options(self) -> dict[str, Any]:
        returned = ReturnDocument.AFTER if self.after else ReturnDocument.BEFORE
        return {"projection": self.projection, "upsert": self.upsert, "return_document": returned}

    def run(self, collection: Collection[RawDocument]) -> Any:
        return collection.find_one_and_update(self.filter, self.update, **self._options())

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        return await collection.find_one_and_update(self.filter, self.update, **self._options())


@dataclass(frozen=True)
class UpdateOne(Filtered[Updated]):
    update: Query
    upsert: bool = False

    def run(self, collection: Collection[RawDocument]) -> Any:
        result = collection.update_one(self.filter, self.update, upsert=self.upsert)
        return Updated(result.matched_count, result.modified_count, result.upserted_id is not None)

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        result = await collection.update_one(self.filter, self.update, upsert=self.upsert)
        return Updated(result.matched_count, result.modified_count, result.upserted_id is not None)


@dataclass(frozen=True)
class UpdateMany(Filtered[Updated]):
    update: Query

    def run(self, collection: Collection[RawDocument]) -> Any:
        results = [collection.update_many(query, self.update) for query in id_chunks(self.filter)]
        return Updated(sum(r.matched_count for r in results), sum(r.modified_count for r in results))

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        results = [await collection.update_many(query, self.update) for query in id_chunks(self.filter)]
        return Updated(sum(r.matched_count for r in results), sum(r.modified_count for r in results))


@dataclass(frozen=True)
class InsertOne(Operation[None]):
    """Raises PyMongo's DuplicateKeyError when a unique index already holds its key."""

    collection: str
    document: Mapping[str, Any]

    def run(self, collection: Collection[RawDocument]) -> Any:
        collection.insert_one(dict(self.document))

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        await collection.insert_one(dict(self.document))


# The server's code for a write refused by a unique index.
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class InsertAbsent(Operation[set[Any]]):
    """Every document whose `_id` no document has yet, in one round trip; the `_id`s inserted (an
    `_id` given twice counts as taken)."""

    collection: str
    documents: Sequence[Mapping[str, Any]]

    def _inserted(self, refused: BulkWriteError | None) -> set[Any]:
        errors = refused.details["writeErrors"] if refused else []
        if any(error["code"] != DUPLICATE_KEY for error in errors):
            assert refused is not None
            raise refused
        taken = {self.documents[error["index"]]["_id"] for error in errors}
        return {document["_id"] for document in self.documents} - taken

    def run(self, collection: Collection[RawDocument]) -> Any:
        if not self.documents:
            return set()
        try:
            collection.insert_many([dict(document) for document in self.documents], ordered=False)
        except BulkWriteError as refused:
            return self._inserted(refused)
        return self._inserted(None)

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        if not self.documents:
            return set()
        try:
            await collection.insert_many([dict(document) for document in self.documents], ordered=False)
        except BulkWriteError as refused:
            return self._inserted(refused)
        return self._inserted(None)


@dataclass(frozen=True)
class UpsertAll(Operation[None]):
    """Every document written whole under its `_id`, new or not, in one round trip."""

    collection: str
    documents: Sequence[Mapping[str, Any]]

    def _writes(self) -> list[ReplaceOne[RawDocument]]:
        return [ReplaceOne({"_id": document["_id"]}, dict(document), upsert=True) for document in self.documents]

    def run(self, collection: Collection[RawDocument]) -> Any:
        if self.documents:
            collection.bulk_write(self._writes(), ordered=False)

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        if self.documents:
            await collection.bulk_write(self._writes(), ordered=False)


@dataclass(frozen=True)
class DeleteMany(Filtered[int]):
    """The number of documents deleted."""

    def run(self, collection: Collection[RawDocument]) -> Any:
        return sum(collection.delete_many(query).deleted_count for query in id_chunks(self.filter))

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        return sum([(await collection.delete_many(query)).deleted_count for query in id_chunks(self.filter)])


@dataclass(frozen=True)
class CreateIndexes(Operation[None]):
    collection: str
    indexes: Sequence[IndexModel] = field(default_factory=list)

    def run(self, collection: Collection[RawDocument]) -> Any:
        collection.create_indexes(list(self.indexes))

    async def run_async(self, collection: AsyncCollection[RawDocument]) -> Any:
        await collection.create_indexes(list(self.indexes))


class Runnable(Protocol[T_co]):
    """An operation, or a program of them, answering a `T`."""

    def __iter__(self) -> Generator[Operation[Any], Any, T_co]: ...


class SyncStore:
    """Runs operations and programs on a database with PyMongo's sync client (the workers)."""

    def __init__(self, database: Database[RawDocument]) -> None:
        self._database = database

    def run(self, program: Runnable[T]) -> T:
        steps = iter(program)
        try:
            operation = next(steps)
            while True:
                try:
                    answer = operation.run(self._database[operation.collection])
                except Exception as error:  # noqa: BLE001 - handed to the program, which may handle it
                    operation = steps.throw(error)
                else:
                    operation = steps.send(answer)
        except StopIteration as finished:
            result: T = finished.value
            return result


class AsyncStore:
    """Runs operations and programs on a database with PyMongo's async client (the API)."""

    def __init__(self, database: AsyncDatabase[RawDocument]) -> None:
        self._database = database

    async def run(self, program: Runnable[T]) -> T:
        steps = iter(program)
        try:
            operation = next(steps)
            while True:
                try:
                    answer = await operation.run_async(self._database[operation.collection])
                except Exception as error:  # noqa: BLE001 - handed to the program, which may handle it
                    operation = steps.throw(error)
                else:
                    operation = steps.send(answer)
        except StopIteration as finished:
            result: T = finished.value
            return result
