"""docs/configuration.md lists exactly the environment variables the `config` package reads."""

from __future__ import annotations

import re
from pathlib import Path

import config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
# A variable row: its first cell is one backticked name, e.g. "| `DATABASE_URL` | ... |".
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def documented_variables(text: str) -> list[str]:
    """The backticked names in the first column of every table row that starts with "| `"."""
    names = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        match = _ROW.match(line)
        assert match, f"docs/configuration.md: a variable row's first cell must be one `NAME`: {line!r}"
        names.append(match.group(1))
    return names


def test_configuration_doc_lists_every_variable_config_reads() -> None:
    documented = documented_variables(DOC.read_text(encoding="utf-8"))
    read = set(config.variables())
    missing = sorted(read - set(documented))
    extra = sorted(set(documented) - read)
    assert not missing and not extra, (
        "docs/configuration.md and config.variables() differ.\n"
        f"  read by config but missing from the docs: {missing or 'none'}\n"
        f"  listed in the docs but not read by config: {extra or 'none'}"
    )


def test_configuration_doc_lists_each_variable_once() -> None:
    documented = documented_variables(DOC.read_text(encoding="utf-8"))
    repeated = sorted({name for name in documented if documented.count(name) > 1})
    assert not repeated, f"docs/configuration.md lists these variables more than once: {repeated}"
