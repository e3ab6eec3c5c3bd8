"""docs/configuration.md holds exactly what the settings classes generate: every setting, and only those."""

import re

from shared.configuration_docs import DOCUMENT, document_with_tables
from shared.settings import GROUPS, fields_of


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    document = DOCUMENT.read_text()
    assert document == document_with_tables(document), "run `make docs` after changing shared/settings.py"


def test_every_setting_is_named_once_by_its_environment_variable() -> None:
    rows = [line for line in DOCUMENT.read_text().splitlines() if line.startswith("| `")]
    documented = [re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])[0] for row in rows]
    variables = [str(field.validation_alias).upper() for group in GROUPS.values() for field in fields_of(group)]
    assert documented == variables
    assert len(set(variables)) == len(variables)
