"""The built web chat shipped inside the package: static/, written by webchat/build.mjs.

manifest.json records the sha256 of every source the build read (webchat/src, index.html,
the lockfile, the build script) and of every file it wrote, so a test can tell a bundle that
no longer matches its sources.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"
CONFIG_SLOT = "<!--market-chat-config-->"
# Names the build gives its code-split chunks: their content hash makes them immutable.
HASHED = re.compile(r"^[a-z-]+-[A-Z0-9]{8}\.(js|css)$")


class MissingBundle(RuntimeError):
    """static/ holds no build: `make webchat` writes one (docs/webchat.md)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    directory: Path
    files: frozenset[str]
    index_template: str

    @classmethod
    def load(cls, directory: Path = STATIC) -> Bundle:
        manifest = directory / "manifest.json"
        if not manifest.exists():
            raise MissingBundle(f"no web chat build in {directory}: run `make webchat`")
        outputs = json.loads(manifest.read_text())["outputs"]
        template = (directory / "index.html").read_text(encoding="utf-8")
        return cls(directory, frozenset(outputs), template)

    def path(self, name: str) -> Path | None:
        """The file for a request's name, only if the build wrote it (no path walks)."""
        return self.directory / name if name in self.files else None

    @staticmethod
    def immutable(name: str) -> bool:
        return bool(HASHED.match(name))

    def index(self, config: dict[str, Any]) -> str:
        """The page with its config inlined as inert JSON (`<` escaped: no markup inside)."""
        data = json.dumps(config, separators=(",", ":")).replace("<", "\\u003c")
        tag = f'<script type="application/json" id="market-chat-config">{data}</script>'
        return self.index_template.replace(CONFIG_SLOT, tag, 1)
