"""Secrets out of text: what every log line, error message and error-log entry passes through."""

from __future__ import annotations

import re

_TOKEN_SHAPES = (
    re.compile(r"00D\w{12,15}![\w.\-]+"),  # Salesforce opaque access token (sfdx-core's regex, widened)
    re.compile(r"(?i)\bbearer\s+[\w.\-!~+/=]+"),  # not jwt_bearer (a flow named in messages)
    re.compile(r"eyJ[\w\-]+\.[\w\-]+\.[\w\-]*"),  # JWTs (assertions, id_tokens)
)


_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s:@]+:[^/\s@]+@")


def redact(text: str) -> str:
    """``text`` with anything shaped like an access token, bearer header, JWT, or ``user:password@``
    in a URL replaced by ``[redacted]``."""
    text = _URL_CREDENTIALS.sub(r"\1[redacted]@", text)
    for shape in _TOKEN_SHAPES:
        text = shape.sub("[redacted]", text)
    return text
