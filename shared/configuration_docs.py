"""docs/configuration.md's tables, generated from the settings classes so that they cannot drift.

`python -m shared.configuration_docs` (`make docs`) rewrites everything below the marker line of
docs/configuration.md; a test checks that the file holds what this would write.
"""

import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from shared.settings import GROUPS, Group, fields_of

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MARKER = "<!-- generated from shared/settings.py: do not edit below -->"


def shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    default: Any = field.default
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    return f"`{str(default).lower() if isinstance(default, bool) else default}`"


def group_table(group: type[Group]) -> list[str]:
    lines = [
        f"### {group.heading}",
        "",
        inspect.cleandoc(group.__doc__ or ""),
        "",
        "| name | default | meaning |",
        "| --- | --- | --- |",
    ]
    for field in fields_of(group):
        name = str(field.validation_alias).upper()
        lines.append(f"| `{name}` | {shown_default(field)} | {field.description} |")
    return [*lines, ""]


def generated() -> str:
    lines = [MARKER, "", "## Every setting, by concern", ""]
    for group in GROUPS.values():
        lines += group_table(group)
    return "\n".join(lines)


def document_with_tables(document: str) -> str:
    """`document` with everything from the marker on replaced by the generated tables."""
    return document.split(MARKER, 1)[0] + generated()


def main() -> None:
    DOCUMENT.write_text(document_with_tables(DOCUMENT.read_text()))
    print(f"wrote {DOCUMENT}", file=sys.stderr)


if __name__ == "__main__":
    main()
