"""A re-import's remembered products go to batches of at most REUSE_BATCH_IMAGES images, in order."""

from shared.store.product_claims import ProductWork
from worker_service.revalidation import in_batches


def product(index: int, images: int) -> ProductWork:
    return ProductWork("r", index, index + 1, [f"https://img.test/{index}/{i}.jpg" for i in range(images)])


def test_batches_hold_at_most_the_set_number_of_images_in_the_products_order() -> None:
    works = [product(i, images) for i, images in enumerate([3, 3, 4, 1, 5, 2])]
    batches = list(in_batches(works, most_images=7))
    assert [[work.index for work in batch] for batch in batches] == [[0, 1], [2, 3], [4, 5]]
    assert all(sum(len(work.input_image_urls) for work in batch) <= 7 for batch in batches)


def test_a_product_with_more_images_than_a_batch_holds_has_a_batch_of_its_own() -> None:
    works = [product(0, 2), product(1, 12), product(2, 2)]
    assert [[work.index for work in batch] for batch in in_batches(works, most_images=10)] == [[0], [1], [2]]
