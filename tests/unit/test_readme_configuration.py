"""The README's configuration table names every setting, and only settings that exist."""

import re

from shared.settings import Settings
from tests.support.stack import PROJECT_ROOT


def documented_settings() -> set[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_the_readme_documents_exactly_the_settings() -> None:
    assert documented_settings() == {name.upper() for name in Settings.model_fields}
