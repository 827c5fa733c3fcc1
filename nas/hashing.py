"""One content hash for every JSON-able description (specs, spaces, budgets)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    """Compact JSON with sorted keys: equal data, equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def content_hash(data: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of `data`, as `length` hex digits."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:length]
