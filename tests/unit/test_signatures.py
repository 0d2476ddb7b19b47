"""Signature verification: base64(HMAC-SHA256(secret, raw body))."""

from __future__ import annotations

import base64
import hashlib
import hmac

from bridge.signatures import sign, verify

BODY = b'{"id": 1}'


def test_sign_matches_the_platforms_scheme() -> None:
    expected = base64.b64encode(hmac.new(b"k", BODY, hashlib.sha256).digest()).decode()
    assert sign(BODY, b"k") == expected


def test_any_of_several_secrets_verifies() -> None:
    header = sign(BODY, b"old")
    assert verify(BODY, header, [b"new", b"old"])
    assert not verify(BODY, header, [b"new"])


def test_altered_body_missing_or_garbage_header_fail() -> None:
    header = sign(BODY, b"k")
    assert not verify(BODY + b" ", header, [b"k"])
    assert not verify(BODY, None, [b"k"])
    assert not verify(BODY, "", [b"k"])
    assert not verify(BODY, "not base64!!", [b"k"])
    assert not verify(BODY, header, [])
