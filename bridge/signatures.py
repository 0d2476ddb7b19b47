"""Webhook signatures: base64(HMAC-SHA256(secret, raw body)), the scheme WooCommerce and Shopify share."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def sign(body: bytes, secret: bytes) -> str:
    """The signature header value a shop would send for ``body``."""
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def verify(body: bytes, header: str | None, secrets: Iterable[bytes]) -> bool:
    """Whether ``header`` signs ``body`` with any of ``secrets`` (several while a secret is rotated).

    Runs on the raw body, before anything is parsed, and compares in constant time.
    """
    if not header:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except ValueError:
        return False
    matched = False
    # Check every secret, not just until the first match, so timing does not tell which one matched.
    for secret in secrets:
        matched |= hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), given)
    return matched
