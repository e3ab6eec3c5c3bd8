"""A stand-in for the API's store in in-process tests: every operation a route sends is recorded and
answered by the test (or fails as it says), so a route can be shown a database that times out or a
request that exists, without a server. The real store runs against the embedded server elsewhere."""

from collections.abc import Callable
from typing import Any

from shared.store.operations import Operation, Runnable


class AnsweringStore:
    def __init__(self, answer: Callable[[Operation[Any]], Any]) -> None:
        self.answer = answer
        self.asked: list[Operation[Any]] = []

    async def run(self, program: Runnable[Any]) -> Any:
        steps = iter(program)
        try:
            operation = next(steps)
            while True:
                self.asked.append(operation)
                operation = steps.send(self.answer(operation))
        except StopIteration as finished:
            return finished.value


def failing_with(error: Exception) -> Callable[[Operation[Any]], Any]:
    def fail(_: Operation[Any]) -> Any:
        raise error

    return fail
