"""Reading a JSON message body that must be an object: one rule for every pattern's wire module.

Not taught on its own: every ``wire.py`` validates its bodies with it.
"""

from __future__ import annotations

import json
from typing import Any


def json_object(data: bytes, what: str = "") -> dict[str, Any]:
    """``data`` decoded as a JSON object, or ``ValueError("<what> is not JSON (...)")`` / "not a JSON object".

    Invalid UTF-8 counts as "not JSON", so a hostile payload is one readable reason, never a crash.
    """
    subject = f"{what} is " if what else ""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{subject}not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError(f"{subject}not a JSON object")
    return body
