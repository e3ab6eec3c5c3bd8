"""Everything stored in MongoDB: one module per collection, with its document types and every query
on it (`requests`, `product_claims`, `sources`); the rules they share (`leases`); the operations and the two
runners that send them (`operations`); the clients (`clients`). Routes, tasks and policies call the
functions named here and never spell out a field.
"""

from shared.store import product_claims, requests, sources
from shared.store.operations import Program


def ensure_indexes() -> Program[None]:
    """Every collection's indexes; creating one that exists is a no-op."""
    yield from requests.ensure_indexes()
    yield from product_claims.ensure_indexes()
    yield from sources.ensure_indexes()
