"""Security regression fixtures: the API layer's and the end-to-end layer's, shared."""

from __future__ import annotations

from tests.api.conftest import api, market  # noqa: F401
from tests.e2e.conftest import hooks, stack  # noqa: F401
