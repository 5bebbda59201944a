"""The dependency rules: between the top-level packages, between bridge's capability packages,
no module over 400 lines, and one clock.

    policy      imports nothing of the project and no I/O library
    appservice  imports policy.ids (the shared identifier types) and nothing else of ours
    bridge      may import policy and appservice; never the other way round
    synapse_module  policy and Synapse only

Inside bridge/, each capability package may import the packages before it in `ORDER` and
nothing after it; `api` and `ops` are imported by the composition root (app.py), the CLI
(__main__.py) and ops itself only.
"""

from __future__ import annotations

import ast
import functools
import re
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
# bridge's capability packages, in dependency order: each may import those before it.
ORDER = [
    "runtime",
    "config",
    "gateway",
    "storage",
    "delivery",
    "market",
    "identity",
    "policybot",
    "deals",
    "retention",
    "homeserver",
    "api",
    "webchat",
]
ENTRY_MODULES = {"bridge/app.py", "bridge/__main__.py"}  # may import every package
MAX_LINES = 400


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def imported_modules(package: str) -> dict[str, set[str]]:
    """Each module of the package (by path) and the modules it imports, relative ones resolved."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        here = _module_of(path).split(".")
        if path.name != "__init__.py":
            here = here[:-1]  # the package the module is in
        modules: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                modules.add(module)
                modules.update(f"{module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = modules
    return found


def roots(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def bridge_package(module: str) -> str | None:
    """The capability package of a bridge module (None for the top-level modules)."""
    parts = module.split(".")
    if parts[0] != "bridge" or len(parts) < 2:
        return None
    return parts[1] if (ROOT / "bridge" / parts[1]).is_dir() else None


def test_the_walker_sees_imports() -> None:
    # Guards the tests below against passing because they read nothing.
    assert "appservice.matrix" in imported_modules("bridge")["bridge/app.py"]
    assert "aiohttp" in roots(imported_modules("appservice")["appservice/routes.py"])
    # Relative imports are resolved to the package they name.
    keeper = imported_modules("bridge")["bridge/market/keeper.py"]
    assert "bridge.market.rooms" in keeper and "bridge.runtime.clock" in keeper


@pytest.mark.parametrize("path", sorted(imported_modules("policy")))
def test_policy_imports_no_io_and_nothing_of_ours(path: str) -> None:
    found = roots(imported_modules("policy")[path])
    assert not found & IO_LIBRARIES, f"{path} imports I/O: {found & IO_LIBRARIES}"
    assert not found & (OURS - {"policy"}), f"{path} imports project code: {found & OURS}"


@pytest.mark.parametrize("path", sorted(imported_modules("appservice")))
def test_appservice_never_imports_the_bridge_and_of_policy_only_its_ids(path: str) -> None:
    modules = imported_modules("appservice")[path]
    assert "bridge" not in roots(modules)
    of_policy = {m for m in modules if m.split(".")[0] == "policy"}
    assert of_policy <= {"policy.ids"} | {f"policy.ids.{name}" for name in _ids()}, of_policy


def _ids() -> set[str]:
    return set(re.findall(r"^(\w+) = NewType", (ROOT / "policy/ids.py").read_text(), re.M))


@pytest.mark.parametrize("path", sorted(imported_modules("synapse_module")))
def test_the_synapse_module_needs_only_policy_and_synapse(path: str) -> None:
    # Synapse's container gets synapse_module/ and policy/ on its path, nothing else of ours.
    found = roots(imported_modules("synapse_module")[path])
    assert found & OURS <= {"policy", "synapse_module"}, f"{path} imports {found & OURS}"
    assert found & IO_LIBRARIES <= {"synapse"}, f"{path} imports {found & IO_LIBRARIES}"


def test_every_capability_package_has_a_place_in_the_order() -> None:
    packages = {p.name for p in (ROOT / "bridge").iterdir() if (p / "__init__.py").exists()}
    assert packages == {*ORDER, "ops"}


@pytest.mark.parametrize("path", sorted(imported_modules("bridge")))
def test_bridge_packages_import_only_the_packages_before_them(path: str) -> None:
    if path in ENTRY_MODULES:
        return
    own = bridge_package(_module_of(ROOT / path))
    for module in imported_modules("bridge")[path]:
        other = bridge_package(module)
        if other is None or other == own:
            continue
        if own == "ops":
            assert other != "api", f"{path} imports {module}"
            continue
        assert own is not None, f"{path} is outside every package"
        assert other != "ops", f"{path} imports {module}: only app.py and the CLI use ops/"
        assert ORDER.index(other) < ORDER.index(own), (
            f"{path} ({own}) imports {module} ({other}), which comes after it"
        )


PACKAGES_WITH_SIZE_LIMIT = ("bridge", "appservice", "policy")


@pytest.mark.parametrize(
    "path",
    sorted(
        str(p.relative_to(ROOT))
        for d in PACKAGES_WITH_SIZE_LIMIT
        for p in (ROOT / d).rglob("*.py")
    ),
)
def test_no_module_is_over_400_lines(path: str) -> None:
    lines = len((ROOT / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines: split it by job"


# Reading the time, or waiting, goes through the injected clock (bridge.runtime.clock); ops/
# supervises processes synchronously and may use the time module.
DIRECT_TIME = re.compile(
    r"\btime\.(time|time_ns|monotonic|sleep)\(|\bdatetime\.(now|utcnow)\(|\basyncio\.sleep\("
)


@pytest.mark.parametrize(
    "path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bridge").rglob("*.py"))
)
def test_bridge_reads_time_only_through_its_clock(path: str) -> None:
    if path == "bridge/runtime/clock.py" or path.startswith("bridge/ops/"):
        return
    found = DIRECT_TIME.findall((ROOT / path).read_text())
    assert not found, f"{path} reads the time directly: {found}"
