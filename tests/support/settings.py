"""Settings for tests: a group with some of its values changed."""

from typing import Any, TypeVar

from shared.settings import Group

G = TypeVar("G", bound=Group)


def changed(group: G, **values: Any) -> G:
    """`group` with `values` (by field name) in place of its own; validated like the group."""
    return type(group).model_validate(
        {
            **group.model_dump(by_alias=True),
            **{type(group).model_fields[name].validation_alias: value for name, value in values.items()},
        }
    )
