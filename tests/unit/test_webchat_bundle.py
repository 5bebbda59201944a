"""The web chat shipped in bridge/webchat/static/ is the build of webchat/ as it stands: its
manifest names every source by hash, and a rebuild from the lockfile gives the same bytes.
`make test` installs the build tools first (npm ci in webchat/); `make webchat` rebuilds."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from bridge.webchat.assets import STATIC, Bundle

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "webchat"
STALE = "the shipped web chat is not the build of webchat/: run `make webchat` and commit it"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict:
    return json.loads((STATIC / "manifest.json").read_text())


def test_the_manifest_names_every_source_as_it_is_now() -> None:
    sources = manifest()["sources"]
    files = sorted(
        [
            *(p for p in (SOURCES / "src").rglob("*") if p.is_file()),
            *(SOURCES / name for name in ("index.html", "package.json", "package-lock.json")),
            SOURCES / "build.mjs",
        ]
    )
    assert sorted(sources) == sorted(str(p.relative_to(SOURCES)) for p in files), STALE
    for path in files:
        assert sources[str(path.relative_to(SOURCES))] == sha256(path), f"{path}: {STALE}"


def test_the_shipped_files_are_the_ones_the_manifest_lists() -> None:
    outputs = manifest()["outputs"]
    shipped = {p.name for p in STATIC.iterdir()} - {"manifest.json"}
    assert shipped == set(outputs)
    for name, digest in outputs.items():
        assert sha256(STATIC / name) == digest, name
    assert Bundle.load().files == frozenset(outputs)


def test_a_rebuild_from_the_lockfile_gives_the_same_bytes(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed to check the web chat's bundle (make test installs its tools)"
    assert (SOURCES / "node_modules" / ".package-lock.json").exists(), (
        "webchat/node_modules is missing: `make test` runs `npm ci` in webchat/ first"
    )
    subprocess.run([node, "build.mjs", str(tmp_path)], cwd=SOURCES, check=True, timeout=120)
    rebuilt = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    shipped = {p.name: p.read_bytes() for p in STATIC.iterdir()}
    assert rebuilt.keys() == shipped.keys(), STALE
    for name in shipped:
        assert rebuilt[name] == shipped[name], f"{name}: {STALE}"
