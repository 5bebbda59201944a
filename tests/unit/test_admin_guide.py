"""The admin guide documents every command the parser knows, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from policy.commands import COMMANDS

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "admin.md"


def test_the_admin_guide_matches_the_commands() -> None:
    documented = re.findall(r"^\| `!market ([^`]+)` \|", GUIDE.read_text(), flags=re.MULTILINE)
    assert documented == [spec.usage for spec in COMMANDS.values()]
