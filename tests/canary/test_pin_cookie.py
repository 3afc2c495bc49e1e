"""The pin cookie: signed with HMAC-SHA256, expiring, renewed past half its life, refused when garbled."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from canary.pin import BUCKETS, PinSigner


def test_pin_roundtrip_and_tamper():
    p = PinSigner("k1", ttl=100)
    bucket, line = p.issue(now=1000)
    value = line.split(b"=", 1)[1].split(b";", 1)[0]
    assert p.check(value, 1000)[0] == bucket
    assert p.check(value, 1101)[0] == -1                    # expired
    assert PinSigner("k2", ttl=100).check(value, 1000)[0] == -1   # other secret
    b, t, sig = value.split(b".")
    assert p.check(b"%d.%s.%s" % ((int(b) + 1) % BUCKETS, t, sig), 1000)[0] == -1
    bucket2, rest, stale = p.extract(b"x=1; canary_pin=" + value + b"; y=2", 1000)
    assert bucket2 == bucket and rest == b"x=1; y=2"
    assert p.extract(b"canary_pin=" + value, 1000) == (bucket, None, False)



def test_pin_past_half_its_life_is_reissued_with_the_same_bucket():
    p = PinSigner("k1", ttl=100)
    bucket, line = p.issue(now=1000)
    value = line.split(b"=", 1)[1].split(b";", 1)[0]
    assert p.check(value, 1040) == (bucket, False)
    assert p.check(value, 1060) == (bucket, True)   # still valid, but due for a refresh
    again, fresh = p.issue(1060, bucket)
    assert again == bucket and fresh.startswith(b"Set-Cookie: canary_pin=%d.1060." % bucket)



@given(st.binary(min_size=1, max_size=100), st.binary(max_size=40))
def test_pin_signature_is_standard_hmac_sha256(key, payload):
    import base64
    import hashlib
    import hmac
    expected = base64.urlsafe_b64encode(hmac.digest(key, payload, hashlib.sha256))[:43]
    assert PinSigner(key)._sig(payload) == expected



@given(st.binary(max_size=80))
def test_pin_garbage_never_raises(value):
    assert PinSigner("k").check(value, 1000) == (-1, False)   # refused, never raises, never a bucket
