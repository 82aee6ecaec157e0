"""Secrets out of text: what every log line, error message and error-log entry passes through."""

from __future__ import annotations

import re

_TOKEN_SHAPES = (
    re.compile(r"00D\w{12,15}![\w.\-]+"),  # Salesforce opaque access token (sfdx-core's regex, widened)
    re.compile(r"(?i)bearer\s+[\w.\-!~+/=]+"),
    re.compile(r"eyJ[\w\-]+\.[\w\-]+\.[\w\-]*"),  # JWTs (assertions, id_tokens)
)


def redact(text: str) -> str:
    """``text`` with anything shaped like an access token, bearer header or JWT replaced."""
    for shape in _TOKEN_SHAPES:
        text = shape.sub("[redacted]", text)
    return text
