"""Sharing the image workers fairly: between owners, and within an owner between its requests.

A request's product tasks (its chord's header) are not sent to the workers' queue: they wait in a
Redis list of the request's own, `images.wait.<request id>`, published there by Celery as usual
(the anonymous exchange routes a message straight into the list named by its routing key, so no
binding is declared per request). `release` moves them into the `images` queue a few at a time,
keeping only `PRODUCTS_QUEUED_AHEAD` there, taking turns: the next owner with work waiting, and of
that owner the next request. Every product task releases as it starts and as it ends, so the queue
stays topped up while the workers are busy, and a request uploaded behind thousands of products
waits only for the few ahead of it, not for all of them. One owner with five large requests gets
one turn in two beside another owner's one.

The turns are two rings of Redis lists (`fair:owners`, and per owner `fair:owner:<token>`), changed
only by Lua scripts, so that several workers on several hosts release and register at once without
stepping on each other. A message keeps its request's list as its routing key: one a lost worker
did not acknowledge goes back to that list, and is released again in turn. The sweeper releases
too, so nothing waits for a worker to finish if none is working; and what Redis loses (a restart
without its file), the sweeper finds in MongoDB as stalled and parks again.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from kombu import Exchange, Queue

from shared.queue import IMAGES_QUEUE

WAITING_PREFIX = f"{IMAGES_QUEUE}.wait."
OWNERS = "fair:owners"
OWNER_PREFIX = "fair:owner:"
# The owner of requests made while API keys are off.
NOBODY = "-"

# Lua: the turns are taken and the rings kept tidy in one step, whoever runs it. LMOVE and LPOS
# need Redis 6.2.
_REGISTER = """
local ring = ARGV[2] .. ARGV[1]
if not redis.call('LPOS', ring, ARGV[3]) then redis.call('RPUSH', ring, ARGV[3]) end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[1]) end
return 1
"""

_RELEASE = """
local queue, owners, limit = KEYS[1], KEYS[2], tonumber(ARGV[1])
local owner_prefix, waiting_prefix = ARGV[2], ARGV[3]
local released, queued = 0, redis.call('LLEN', queue)
while queued < limit do
  local owner = redis.call('LMOVE', owners, owners, 'LEFT', 'RIGHT')
  if not owner then break end
  local ring = owner_prefix .. owner
  local request = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
  if not request then
    redis.call('LREM', owners, 0, owner)
  elseif redis.call('LMOVE', waiting_prefix .. request, queue, 'RIGHT', 'LEFT') then
    released, queued = released + 1, queued + 1
  else
    redis.call('LREM', ring, 0, request)
    if redis.call('LLEN', ring) == 0 then redis.call('LREM', owners, 0, owner) end
  end
end
return released
"""

_WITHDRAW = """
local ring = ARGV[2] .. ARGV[1]
local waiting = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('LREM', ring, 0, ARGV[3])
if redis.call('LLEN', ring) == 0 then redis.call('LREM', KEYS[1], 0, ARGV[1]) end
return waiting
"""

# How many products of the request wait, and an estimate of how many will be released before its
# next one: those already queued, then one per owner's turn until its owner's turn comes round to it.
_PLACE = """
local waiting = redis.call('LLEN', KEYS[3])
if waiting == 0 then return {0, 0} end
local owners = redis.call('LLEN', KEYS[2])
local owner_turn = redis.call('LPOS', KEYS[2], ARGV[1]) or 0
local request_turn = redis.call('LPOS', ARGV[2] .. ARGV[1], ARGV[3]) or 0
return {waiting, redis.call('LLEN', KEYS[1]) + owner_turn + request_turn * math.max(owners, 1)}
"""

# Per owner with work waiting: its token and the products its requests have waiting.
_WAITING = """
local result = {}
for _, owner in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local total = 0
  for _, request in ipairs(redis.call('LRANGE', ARGV[1] .. owner, 0, -1)) do
    total = total + redis.call('LLEN', ARGV[2] .. request)
  end
  table.insert(result, owner)
  table.insert(result, total)
end
return result
"""


@dataclass(frozen=True)
class Place:
    """Where a request stands: its products waiting for a turn, and about how many go before its next."""

    products_waiting: int
    products_ahead: int


def owner_token(owner: str | None) -> str:
    return owner or NOBODY


def waiting_list(request_id: str) -> str:
    return f"{WAITING_PREFIX}{request_id}"


def waiting_queue(request_id: str) -> Queue:
    """Where a request's product tasks are sent: its own list, reached through the anonymous exchange."""
    name = waiting_list(request_id)
    return Queue(name, exchange=Exchange(""), routing_key=name, no_declare=True)


class FairQueue:
    """The workers' side: register a request whose products wait, release products in turn, withdraw."""

    def __init__(self, client: redis.Redis, ahead: int) -> None:
        self.ahead = ahead
        self._client = client
        self._register = client.register_script(_REGISTER)
        self._release = client.register_script(_RELEASE)
        self._withdraw = client.register_script(_WITHDRAW)

    def register(self, owner: str | None, request_id: str) -> None:
        """Give the request turns (once its products wait in its list); registering twice is harmless."""
        self._register(keys=[OWNERS], args=[owner_token(owner), OWNER_PREFIX, request_id])

    def release(self) -> int:
        """Top the workers' queue up to `ahead` products, in turn; how many were released."""
        released: int = self._release(keys=[IMAGES_QUEUE, OWNERS], args=[self.ahead, OWNER_PREFIX, WAITING_PREFIX])
        return released

    def waiting(self, request_id: str) -> int:
        """How many of the request's products wait for their turn."""
        return int(self._client.llen(waiting_list(request_id)))

    def withdraw(self, owner: str | None, request_id: str) -> int:
        """Drop the request's products still waiting (it was cancelled or deleted); how many there were."""
        dropped: int = self._withdraw(
            keys=[OWNERS, waiting_list(request_id)], args=[owner_token(owner), OWNER_PREFIX, request_id]
        )
        return dropped


class FairQueueView:
    """The API's side: where a request stands, and the work waiting per owner (for the metrics)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._place = client.register_script(_PLACE)
        self._waiting = client.register_script(_WAITING)

    async def place(self, owner: str | None, request_id: str) -> Place:
        waiting, ahead = await self._place(
            keys=[IMAGES_QUEUE, OWNERS, waiting_list(request_id)],
            args=[owner_token(owner), OWNER_PREFIX, request_id],
        )
        return Place(int(waiting), int(ahead))

    async def waiting_by_owner(self) -> dict[str, int]:
        flat = await self._waiting(keys=[OWNERS], args=[OWNER_PREFIX, WAITING_PREFIX])
        return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
