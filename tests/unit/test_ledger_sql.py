"""The ledger's SQL lives in its three modules (workers/ledger_sql.py, the runtime's; workers/
ledger_reads_sql.py, the reads for people; workers/flow_sql.py, flow control's), named and
commented, and nowhere else is SQL text assembled with str.format, f-strings or %."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from workers import flow_sql, ledger_reads_sql, ledger_sql

REPO = Path(__file__).resolve().parent.parent.parent
SQL_MODULES = {module: Path(module.__file__) for module in (ledger_sql, ledger_reads_sql, flow_sql)}
# Every module of the product but the migrations (their DDL creates the ledger tables).
CHECKED = sorted(
    path
    for package in ("config", "db", "workers", "jobs", "scheduler", "dashboard", "skyport")
    for path in (REPO / package).rglob("*.py")
    if "migrations" not in path.parts
)
# A family statement that only asks whether an unfinished job holds a dedup key (a NOT EXISTS on
# the ledger's unique dedup_lock index): it belongs with the family's reconciliation.
FAMILY_READS_OF_THE_LEDGER = {REPO / "jobs" / "payments" / "reconcile.py"}
LEDGER_STATEMENT = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+(jobs|job_attempts|workers)\b")
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|LISTEN|NOTIFY)\b|\bpg_notify\(")


def _statements(module: object = None) -> dict[str, str]:
    return {
        name: value
        for each in ([module] if module else SQL_MODULES)
        for name, value in vars(each).items()
        if name.isupper() and isinstance(value, str) and SQL_WORDS.search(value)
    }


@pytest.mark.parametrize("module", SQL_MODULES, ids=lambda m: m.__name__)
def test_every_statement_has_a_name_comment_above_it(module: object) -> None:
    lines = SQL_MODULES[module].read_text().splitlines()
    for name in _statements(module):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
        above = at - 1
        while lines[above].startswith("# ") and not lines[above].startswith("# -- "):
            above -= 1
        assert lines[above].startswith(f"# -- {name.lower()} -- "), (
            f"{name}: no `# -- {name.lower()} --` comment"
        )


def test_channels_are_named_once() -> None:
    assert ledger_sql.RELAY_CHANNEL == "skyport_jobs"
    assert ledger_sql.CANCEL_CHANNEL == "skyport_cancel"
    for name, text in _statements().items():
        assert "skyport_" not in text, f"{name}: pass the channel as a parameter"


def _string_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _sql_built_by_formatting(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    constants = _string_constants(tree)

    def sql_text(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.Name) and node.id in constants:
            text = constants[node.id]
        else:
            return None
        return text if SQL_WORDS.search(text) else None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if SQL_WORDS.search(literal):
                found.append(f"{path.name}:{node.lineno}: f-string")
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
        ):
            if sql_text(node.func.value):  # sql.SQL(...).format(...) is psycopg's composition: allowed
                found.append(f"{path.name}:{node.lineno}: str.format")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and sql_text(node.left):
            found.append(f"{path.name}:{node.lineno}: %-formatting")
    return found


def test_no_sql_is_built_with_format_or_f_strings() -> None:
    found = [hit for path in CHECKED for hit in _sql_built_by_formatting(path)]
    assert found == []


def test_statements_on_the_ledger_tables_live_in_the_sql_module() -> None:
    found = []
    for path in CHECKED:
        if path in SQL_MODULES.values() or path in FAMILY_READS_OF_THE_LEDGER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and LEDGER_STATEMENT.search(node.value)
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []
