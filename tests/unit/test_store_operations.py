"""The store's runners drive a program step by step, no query looks a document up by `_id` beside a
top-level `$or` (which the embedded server answers by scanning the collection), and a long list of
ids goes to the server in chunks (it matches each document found against the whole list again)."""

from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from shared.store.operations import (
    IDS_AT_ONCE,
    AsyncStore,
    FindOne,
    Operation,
    Program,
    SyncStore,
    UnindexedIdQuery,
    UpdateOne,
    id_chunks,
)


@dataclass(frozen=True)
class Answer(Operation[Any]):
    """A test operation that answers with a value (or raises an error) without a database."""

    collection: str
    value: Any

    def run(self, collection: Any) -> Any:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    async def run_async(self, collection: Any) -> Any:
        return self.run(collection)


class Database(dict[str, None]):
    def __missing__(self, name: str) -> None:
        return None


def two_steps() -> Program[int]:
    first = yield from Answer("a", 2)
    second = yield from Answer("b", first * 10)
    return first + second


def lost_race() -> Program[str]:
    try:
        yield from Answer("a", DuplicateKeyError("taken"))
    except DuplicateKeyError:
        return "handled"
    return "not reached"


def test_the_sync_runner_sends_each_answer_back_to_the_program() -> None:
    assert SyncStore(Database()).run(two_steps()) == 22
    assert SyncStore(Database()).run(Answer("a", "one operation")) == "one operation"


async def test_the_async_runner_runs_the_same_program() -> None:
    assert await AsyncStore(Database()).run(two_steps()) == 22


def test_an_error_goes_to_the_program_which_may_handle_it() -> None:
    assert SyncStore(Database()).run(lost_race()) == "handled"
    with pytest.raises(DuplicateKeyError):
        SyncStore(Database()).run(Answer("a", DuplicateKeyError("taken")))


def test_a_filter_on_id_with_a_top_level_or_is_refused() -> None:
    with pytest.raises(UnindexedIdQuery):
        FindOne("requests", {"_id": "r", "$or": [{"a": 1}, {"b": 2}]})
    with pytest.raises(UnindexedIdQuery):
        UpdateOne("product_claims", {"_id": "r:0", "$or": [{"a": None}]}, {"$set": {"a": 1}})
    FindOne("requests", {"$or": [{"a": 1}, {"b": 2}]})  # without _id, an $or is the server's business


def test_a_long_list_of_ids_is_sent_a_chunk_at_a_time() -> None:
    ids = [f"id{i}" for i in range(IDS_AT_ONCE * 2 + 1)]
    chunks = id_chunks({"_id": {"$in": ids}, "done": True})
    assert [len(chunk["_id"]["$in"]) for chunk in chunks] == [IDS_AT_ONCE, IDS_AT_ONCE, 1]
    assert all(chunk["done"] is True for chunk in chunks)
    assert [i for chunk in chunks for i in chunk["_id"]["$in"]] == ids
    short = {"_id": {"$in": ids[:IDS_AT_ONCE]}}
    assert id_chunks(short) == [short]
    assert id_chunks({"_id": "one"}) == [{"_id": "one"}]
