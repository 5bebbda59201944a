"""The dependency direction: bridge -> policy, bridge -> appservice; never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = {
    "asyncio",
    "aiohttp",
    "asyncpg",
    "aiosqlite",
    "mautrix",
    "socket",
    "sqlite3",
    "requests",
    "urllib",
    "http",
    "subprocess",
    "nio",
    "synapse",
    "prometheus_client",
    "yaml",
}
OURS = {"appservice", "policy", "bridge", "tests", "synapse_module"}


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        roots: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = roots
    return found


def test_the_walker_sees_imports() -> None:
    # Guards the tests below against passing because they read nothing.
    assert "appservice" in imported_roots("bridge")["bridge/app.py"]
    assert "aiohttp" in imported_roots("appservice")["appservice/routes.py"]


@pytest.mark.parametrize("path", sorted(imported_roots("policy")))
def test_policy_imports_no_io_and_nothing_of_ours(path: str) -> None:
    roots = imported_roots("policy")[path]
    assert not roots & IO_LIBRARIES, f"{path} imports I/O: {roots & IO_LIBRARIES}"
    assert not roots & OURS, f"{path} imports project code: {roots & OURS}"


@pytest.mark.parametrize("path", sorted(imported_roots("appservice")))
def test_appservice_never_imports_the_bridge(path: str) -> None:
    assert "bridge" not in imported_roots("appservice")[path]


@pytest.mark.parametrize("path", sorted(imported_roots("synapse_module")))
def test_the_synapse_module_needs_only_policy_and_synapse(path: str) -> None:
    # Synapse's container gets synapse_module/ and policy/ on its path, nothing else of ours.
    roots = imported_roots("synapse_module")[path]
    assert roots & OURS <= {"policy"}, f"{path} imports {roots & OURS}"
    assert roots & IO_LIBRARIES <= {"synapse"}, f"{path} imports {roots & IO_LIBRARIES}"
