"""The store's programs against the real embedded server: safe to run twice, each race won once."""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from shared.models import utcnow
from shared.settings import Settings
from shared.store import product_claims, requests, sources
from shared.store.operations import (
    IDS_AT_ONCE,
    DeleteMany,
    Find,
    FindOne,
    InsertAbsent,
    Operation,
    Program,
    Runnable,
    SyncStore,
    UpdateMany,
)
from shared.store.product_claims import ImageDetails, ProductWork
from shared.store.requests import new_request, new_request_id
from shared.store.sources import SourceDocument
from worker_service import product_processing, request_life
from worker_service.context import WorkerContext
from worker_service.image_work import ImageOutcome
from worker_service.lease_keeper import LeaseKeeper
from worker_service.product_processing import product_result
from worker_service.revalidation import batches_and_rest
from worker_service.sweeper import forget_unused_sources, stalled_products

T = TypeVar("T")


@dataclass
class Row:
    serial_number: int
    product_name: str
    input_image_urls: tuple[str, ...]


DATABASE = "store_tests"


@pytest.fixture()
def store(stack):
    with stack.mongo() as client:
        yield SyncStore(client[DATABASE])


@pytest.fixture()
def context(stack, tmp_path) -> WorkerContext:
    """A worker's context on the stack's servers, its documents in a database of the tests' own."""
    environment = stack.environment()
    settings = Settings.load(
        mongodb_url=environment["MONGODB_URL"], redis_url=environment["REDIS_URL"], data_dir=tmp_path,
        mongodb_database=DATABASE,
    )  # fmt: skip
    return WorkerContext(settings)


def interrupted(program: Runnable[T], before: Callable[[Operation[Any]], bool]) -> Program[None]:
    """The program as far as the first operation `before` picks out: its process lost there."""
    steps = iter(program)
    operation = next(steps)
    while not before(operation):
        operation = steps.send((yield operation))


def started_request(store: SyncStore, products: int = 3) -> tuple[str, list[ProductWork]]:
    request_id = new_request_id()
    rows = [
        Row(i, f"P{i}", (f"https://img.test/{i}.jpg", f"https://img.test/{i}b.jpg")) for i in range(1, products + 1)
    ]
    document = new_request(request_id, rows, now=utcnow(), webhook_url=None, idempotency_key=None, file_sha256="0")
    store.run(requests.insert(document))
    return request_id, store.run(requests.start(request_id, utcnow()))


def claim(store: SyncStore, work: ProductWork, lease_seconds: float = 60) -> int | None:
    claimed = store.run(product_claims.claim(work, utcnow(), lease_seconds))
    return None if claimed is None else claimed.attempt


def record(store: SyncStore, work: ProductWork, attempt: int | None, outcomes: list[ImageOutcome]) -> bool:
    details = [outcome.details for outcome in outcomes]
    return store.run(product_claims.record(work, attempt, product_result(outcomes), details, [], utcnow()))


def finish(store: SyncStore, work: ProductWork, outcomes: list[ImageOutcome]) -> None:
    assert record(store, work, claim(store, work), outcomes)


def merge_all(store: SyncStore, request_id: str) -> list:
    return store.run(requests.merge(request_id, store.run(product_claims.unmerged(request_id)), utcnow()))


def test_a_product_is_claimed_by_one_worker_at_a_time(store):
    _, works = started_request(store)
    assert claim(store, works[0]) == 1
    assert claim(store, works[0]) is None
    assert claim(store, works[1]) == 1


def test_an_expired_lease_is_taken_over_and_the_old_attempt_cannot_record(store):
    _, works = started_request(store)
    first = claim(store, works[0], lease_seconds=-1)
    second = claim(store, works[0])
    assert (first, second) == (1, 2)
    assert not record(store, works[0], first, [ImageOutcome(key="k")] * 2)
    assert record(store, works[0], second, [ImageOutcome(key="k")] * 2)
    assert claim(store, works[0]) is None


def test_the_lease_keeper_holds_each_product_while_it_is_worked_on_and_no_longer(store):
    _, works = started_request(store)
    lease = 1.0
    keeper = LeaseKeeper(lambda: store, lease)
    long, short = claim(store, works[0], lease), claim(store, works[1], lease)
    try:
        with keeper.keeping(works[0], long):
            with keeper.keeping(works[1], short):
                time.sleep(2 * lease)
                assert claim(store, works[1], lease) is None, "renewed while it was worked on"
            time.sleep(2 * lease)
            assert claim(store, works[0], lease) is None, "renewed while it was worked on"
            assert claim(store, works[1], lease) == 2, "no longer renewed once its work ended"
    finally:
        keeper.close()


def test_merging_the_same_results_twice_counts_them_once(store):
    request_id, works = started_request(store)
    finish(store, works[0], [ImageOutcome(key="a"), ImageOutcome(error="HTTP 404")])
    finish(store, works[1], [ImageOutcome(key="b"), ImageOutcome(key="c")])
    assert len(merge_all(store, request_id)) == 2
    # A merge that crashed before marking its claims merged is run again, with one more result.
    finish(store, works[2], [ImageOutcome(error="HTTP 500")] * 2)
    assert [c["index"] for c in merge_all(store, request_id)] == [2]

    document = store.run(requests.find_page(request_id, None, 0, 10))
    assert (document["products_done"], document["images_done"], document["images_failed"]) == (3, 6, 3)
    assert [p["status"] for p in document["products"]] == ["completed", "completed", "failed"]
    assert document["products"][0]["output_keys"] == ["a", None]
    assert document["products"][0]["errors"] == [{"index": 1, "message": "HTTP 404"}]


def test_a_request_is_finalised_once(store):
    request_id, works = started_request(store, products=1)
    finish(store, works[0], [ImageOutcome(key="a"), ImageOutcome(error="HTTP 404")])
    assert store.run(requests.finalize(request_id, utcnow())) is None  # not merged yet
    merge_all(store, request_id)
    finished = store.run(requests.finalize(request_id, utcnow()))
    assert finished.status == "completed_with_errors"
    assert store.run(requests.finalize(request_id, utcnow())) is None


def test_the_processing_log_and_busy_products_are_read_back_by_id(store):
    request_id, works = started_request(store)
    finish(store, works[0], [ImageOutcome(key="a", details=ImageDetails(bytes_in=10)), ImageOutcome(error="HTTP 404")])
    assert claim(store, works[1]) == 1
    logged = store.run(product_claims.of_products(request_id, [0, 1, 2]))
    assert sorted(logged) == [0, 1]
    assert logged[0]["image_log"][0]["bytes_in"] == 10
    assert store.run(product_claims.busy_products(request_id, [0, 1, 2], utcnow())) == {0, 1}
    merge_all(store, request_id)
    store.run(product_claims.mark_merged([logged[0]]))
    assert store.run(product_claims.busy_products(request_id, [0, 1, 2], utcnow())) == {1}


def test_a_retry_lost_between_its_two_writes_is_taken_up_by_the_sweeper(context):
    request_id, works = started_request(context.store, products=2)
    finish(context.store, works[0], [ImageOutcome(key="a"), ImageOutcome(error="HTTP 503")])
    finish(context.store, works[1], [ImageOutcome(key="b"), ImageOutcome(key="c")])
    context.store.run(product_claims.mark_merged(merge_all(context.store, request_id)))
    assert context.store.run(requests.finalize(request_id, utcnow())).status == "completed_with_errors"

    # The retry marks the failed product pending, and its process is lost before it reopens the claim.
    retry = requests.retry(request_id, None, utcnow())
    context.store.run(interrupted(retry, before=lambda operation: operation.collection == product_claims.COLLECTION
                                  and isinstance(operation, UpdateMany)))  # fmt: skip
    assert claim(context.store, works[0]) is None, "the claim was reopened after all"

    again = stalled_products(context, request_id)
    assert [work.index for work in again] == [0]
    assert again[0].positions == [1]
    assert claim(context.store, again[0]) == 1
    assert stalled_products(context, request_id) == [], "a product under way was taken again"


def finished_request(context: WorkerContext, completed_at=None) -> str:
    """A request final with one product of one image stored under its key, marked deleted."""
    request_id, [work] = started_request(context.store, products=1)
    context.storage.put(f"{request_id}/1-0.jpg", b"jpeg", "image/jpeg")
    finish(context.store, work, [ImageOutcome(key=f"{request_id}/1-0.jpg"), ImageOutcome(error="HTTP 404")])
    context.store.run(product_claims.mark_merged(merge_all(context.store, request_id)))
    assert context.store.run(requests.finalize(request_id, completed_at or utcnow())) is not None
    return request_id


def test_a_deletion_that_storage_refuses_is_left_whole_for_the_sweeper(context):
    request_id = finished_request(context)
    assert context.store.run(requests.ask_to_delete(request_id, None, utcnow())) is not None
    folder = context.settings.service.media_dir / request_id
    kept = folder.with_name(f"{request_id}.kept")
    # A folder that cannot be deleted, whatever the user (root included): a file in its place.
    folder.rename(kept)
    folder.write_bytes(b"")
    request_life.delete(context, request_id)
    assert context.store.run(requests.exists(request_id)), "the documents went, the images stayed"
    assert context.store.run(product_claims.of_products(request_id, [0]))

    folder.unlink()
    kept.rename(folder)
    request_life.delete(context, request_id)
    assert not context.store.run(requests.exists(request_id))
    assert not folder.exists()


def test_a_deletion_forgets_a_remembered_output_already_gone_instead_of_failing(context):
    request_id = finished_request(context)
    gone = source_document("https://img.test/gone.jpg", expires_at=utcnow() + timedelta(days=1), request_id=request_id)
    gone["output"]["key"] = f"{request_id}/9-0.jpg"  # never stored
    context.store.run(sources.remember([gone]))
    assert context.store.run(requests.ask_to_delete(request_id, None, utcnow())) is not None
    request_life.delete(context, request_id)
    assert not context.store.run(requests.exists(request_id))
    assert context.store.run(sources.remembered(None, ["https://img.test/gone.jpg"], "fp")) == {}


def test_the_retention_marks_the_oldest_final_requests_a_batch_at_a_time(context):
    long_ago = utcnow() - timedelta(days=30)
    oldest = [finished_request(context, completed_at=long_ago + timedelta(seconds=i)) for i in range(3)]
    recent = finished_request(context)
    unfinished, _ = started_request(context.store, products=1)
    cutoff = utcnow() - timedelta(days=1)
    assert context.store.run(requests.past_retention(cutoff, utcnow(), 2)) == oldest[:2]
    for request_id in oldest[:2]:
        assert context.store.run(requests.find_summary(request_id, None)) is None, "still visible"
    assert set(context.store.run(requests.being_deleted(utcnow() + timedelta(seconds=1), 10))) == set(oldest[:2])
    for request_id in oldest[:2]:
        request_life.delete(context, request_id)
    assert context.store.run(requests.past_retention(cutoff, utcnow(), 2)) == [oldest[2]]
    for request_id in (recent, unfinished):
        assert context.store.run(requests.find_summary(request_id, None)) is not None


def test_the_sweeper_forgets_unused_sources_and_deletes_the_outputs_the_memory_adopted(context):
    now = utcnow()
    adopted = source_document("https://img.test/old.jpg", expires_at=now - timedelta(seconds=1), request_id=None)
    fresh = source_document("https://img.test/new.jpg", expires_at=now + timedelta(days=1), request_id="r1")
    context.storage.put(adopted["output"]["key"], b"jpeg", "image/jpeg")
    context.store.run(sources.remember([adopted, fresh]))

    assert forget_unused_sources(context, now) == 1

    left = context.store.run(sources.remembered(None, ["https://img.test/old.jpg", "https://img.test/new.jpg"], "fp"))
    assert list(left) == ["https://img.test/new.jpg"]
    assert context.storage.locate(adopted["output"]["key"]) is None


def source_document(url: str, *, expires_at, request_id: str | None) -> SourceDocument:
    identity = sources.source_id(None, url)
    key = f"sources/{identity}.jpg" if request_id is None else f"{request_id}/1-0.jpg"
    output = {"key": key, "request_id": request_id, "fingerprint": "fp", "format": "JPEG", "extension": "jpg",
              "width": 1, "height": 1, "bytes_out": 4}  # fmt: skip
    return {"_id": identity, "etag": None, "last_modified": None, "digest": "blake3:0", "bytes_in": 4, "output": output,
            "expires_at": expires_at}  # fmt: skip


def catalogue_of(context: WorkerContext, products: int, remembered: set[int]) -> list[ProductWork]:
    """Products of two images each, enough for a batch; the images at the `remembered` places (counted
    over the catalogue) are in the memory, made with the worker's codec settings."""
    token = new_request_id()
    urls = [[f"https://img.test/{token}/{p}-{i}.jpg" for i in range(2)] for p in range(products)]
    known = [source_document(url, expires_at=utcnow() + timedelta(days=1), request_id="r0")
             for place, url in enumerate(u for pair in urls for u in pair) if place in remembered]  # fmt: skip
    for document in known:
        document["output"]["fingerprint"] = context.codec_fingerprint
    if known:
        context.store.run(sources.remember(known))
    return [ProductWork("r1", p, p + 1, pair) for p, pair in enumerate(urls)]


def test_a_new_catalogue_s_products_look_nothing_up_and_one_with_old_photos_beside_new_ones_does(context):
    products = context.settings.reuse.batch_images // 2
    _, new = batches_and_rest(context, catalogue_of(context, products, remembered=set()))
    assert all(work.new_catalogue for work in new)
    # Every product's first photo is new, its second one remembered: not a new catalogue.
    _, kept = batches_and_rest(context, catalogue_of(context, products, remembered={1, 3, 5}))
    assert not any(work.new_catalogue for work in kept)
    assert product_processing.image_jobs(context, kept[0])[1].remembered is not None


def test_a_product_of_a_new_catalogue_looks_up_none_of_its_images(context):
    [remembered] = catalogue_of(context, 1, remembered={0, 1})
    assert all(job.remembered is not None for job in product_processing.image_jobs(context, remembered))
    as_new = replace(remembered, new_catalogue=True)
    assert all(job.remembered is None for job in product_processing.image_jobs(context, as_new))


def test_products_recorded_at_once_are_kept_unless_a_task_claimed_them_meanwhile(store):
    request_id, works = started_request(store)
    assert claim(store, works[1]) == 1
    outcomes = [ImageOutcome(key="a"), ImageOutcome(key="b")]
    at_once = [
        product_claims.recorded_at_once(work, product_result(outcomes), [o.details for o in outcomes], [], utcnow())
        for work in works
    ]
    assert store.run(product_claims.record_unclaimed(at_once)) == {0, 2}
    assert store.run(product_claims.record_unclaimed(at_once)) == set()  # run twice: kept once
    assert claim(store, works[0]) is None  # done: no task takes it up again
    assert sorted(c["index"] for c in merge_all(store, request_id)) == [0, 2]


def test_a_merge_that_lost_a_race_reads_again_and_counts_each_result_once(store):
    request_id, works = started_request(store)
    finish(store, works[0], [ImageOutcome(key="a")] * 2)
    finish(store, works[1], [ImageOutcome(key="b")] * 2)
    claims = store.run(product_claims.unmerged(request_id))
    slow = iter(requests.merge(request_id, claims, utcnow()))
    read = next(slow)
    read_answer = store.run(read)
    # Another merge of the same results gets in between this one's read and its write.
    assert len(store.run(requests.merge(request_id, claims, utcnow()))) == 2
    write = slow.send(read_answer)
    reread = slow.send(store.run(write))
    assert isinstance(reread, FindOne)  # its write found the products changed: read again
    with pytest.raises(StopIteration) as ended:
        slow.send(store.run(reread))
    assert ended.value.value == []
    document = store.run(requests.find_page(request_id, None, 0, 10))
    assert (document["products_done"], document["images_done"]) == (2, 4)


def test_a_long_list_of_ids_is_found_updated_and_deleted_whole(store):
    collection = f"chunks_{new_request_id()}"
    ids = [f"doc{i}" for i in range(IDS_AT_ONCE * 2 + 5)]
    store.run(InsertAbsent(collection, [{"_id": i, "n": 0} for i in ids]))
    assert len(store.run(Find(collection, {"_id": {"$in": ids}}))) == len(ids)
    assert store.run(UpdateMany(collection, {"_id": {"$in": ids}}, {"$set": {"n": 1}})).modified == len(ids)
    assert store.run(DeleteMany(collection, {"_id": {"$in": ids}, "n": 1})) == len(ids)


def test_remembering_inserts_new_sources_and_replaces_known_ones_whole(store):
    later = utcnow() + timedelta(days=30)
    known = source_document(f"https://img.test/{new_request_id()}.jpg", expires_at=later, request_id="r1")
    store.run(sources.remember([known]))
    changed: SourceDocument = {**known, "etag": '"v2"', "output": {**known["output"], "request_id": "r2"}}
    new = source_document(f"https://img.test/{new_request_id()}.jpg", expires_at=later, request_id="r2")

    store.run(sources.remember([changed, new]))

    found = store.run(Find[SourceDocument]("sources", {"_id": {"$in": [known["_id"], new["_id"]]}}))
    by_id = {document["_id"]: document for document in found}
    assert by_id[known["_id"]]["etag"] == '"v2"' and by_id[known["_id"]]["output"]["request_id"] == "r2"
    assert by_id[new["_id"]]["output"]["request_id"] == "r2"


def test_a_request_may_finish_once_every_product_has_a_result_merged_or_not(store, context):
    request_id, works = started_request(store)
    finish(store, works[0], [ImageOutcome(key="a")] * 2)
    assert not request_life.may_finish(context, request_id)
    finish(store, works[1], [ImageOutcome(key="b")] * 2)
    merge_all(store, request_id)  # in the document, its claims not yet marked merged: counted twice
    finish(store, works[2], [ImageOutcome(error="HTTP 404")] * 2)
    assert request_life.may_finish(context, request_id)
    claims = store.run(product_claims.unmerged(request_id))
    store.run(requests.merge(request_id, claims, utcnow()))
    store.run(product_claims.mark_merged(claims))
    assert request_life.may_finish(context, request_id)


def test_a_request_not_finished_cannot_be_taken_for_one_by_a_merge_in_between(store, context):
    request_id, works = started_request(store)
    finish(store, works[0], [ImageOutcome(key="a")] * 2)
    finish(store, works[1], [ImageOutcome(key="b")] * 2)
    merge_all(store, request_id)
    store.run(product_claims.mark_merged(store.run(product_claims.unmerged(request_id))))
    assert not request_life.may_finish(context, request_id)


def test_the_sweeper_finds_results_not_merged_in_time(store):
    store.run(product_claims.ensure_indexes())
    request_id, works = started_request(store)
    finish(store, works[0], [ImageOutcome(key="a")] * 2)
    later = utcnow() + timedelta(seconds=1)
    assert request_id in store.run(product_claims.requests_with_stale_results(later))
    merge_all(store, request_id)
    store.run(product_claims.mark_merged(store.run(product_claims.unmerged(request_id))))
    assert request_id not in store.run(product_claims.requests_with_stale_results(later))


@pytest.mark.parametrize(
    "query",
    [
        lambda now: requests.due_webhooks(now, now),
        lambda now: requests.stalled_pending(now),
        lambda now: requests.processing(),
        lambda now: requests.cancelling(now),
        lambda now: requests.being_deleted(now, 10),
        lambda now: requests.past_retention(now, now, 10),
        lambda now: sources.expired(now),
        lambda now: product_claims.release_expired(now),
        lambda now: product_claims.requests_with_stale_results(now),
    ],
)
def test_what_the_sweeper_reads_every_sweep_is_answered_from_indexes(stack, store, query):
    """What the sweeper reads every sweep is found by an index, never by reading every request
    (each with its products) or every claim: that would cost each sweep more as requests are kept."""
    for collection in (requests, product_claims, sources):
        store.run(collection.ensure_indexes())
    find = next(iter(query(utcnow())))
    with stack.mongo() as client:
        plan = client[DATABASE][find.collection].find(find.filter).explain()["queryPlanner"]["winningPlan"]
    assert plan["stage"] != "COLLSCAN", dict(find.filter)
