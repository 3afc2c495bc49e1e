"""The pin cookie: signed with keyed BLAKE2s (or HMAC-SHA256), expiring, renewed past half its life, refused when garbled."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from canary.dataplane.pin import BUCKETS, PinSigner


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
    assert PinSigner(key, mac="hmac-sha256").mac.sign(payload) == expected


@given(st.binary(min_size=1, max_size=100), st.binary(max_size=40))
def test_pin_signature_is_standard_keyed_blake2s(key, payload):
    """RFC 7693 keyed mode, 256-bit tag, under a 32-byte key derived from the secret (BLAKE2s keys are <= 32)."""
    import base64
    import hashlib
    derived = hashlib.blake2s(key, person=b"canarypn").digest()
    expected = base64.urlsafe_b64encode(hashlib.blake2s(payload, key=derived).digest())[:43]
    assert PinSigner(key).mac.sign(payload) == expected


def test_a_pin_signed_with_the_other_mac_keeps_its_bucket_and_is_reissued():
    """Upgrading from HMAC-SHA256 pins (or back, during a rolling upgrade) moves nobody."""
    old, new = PinSigner("k" * 16, ttl=100, mac="hmac-sha256"), PinSigner("k" * 16, ttl=100)
    for signer, other in ((old, new), (new, old)):
        value = other.make_value(4321, 1000)
        assert signer.check(value, 1001) == (4321, True)           # valid, re-issued under its own MAC
        assert signer.check(signer.make_value(4321, 1000), 1001) == (4321, False)
    assert PinSigner("z" * 16, mac="hmac-sha256").check(new.make_value(4321, 1000), 1001) == (-1, False)


def test_a_verified_pin_is_remembered_but_its_age_is_checked_every_time():
    from canary.dataplane import pin as pin_module
    p = PinSigner("k1", ttl=100)
    value = p.make_value(77, 1000)
    assert p.check(value, 1010) == (77, False)
    assert value in p._verified                                   # the next request costs a lookup, no MAC
    assert p.check(value, 1060) == (77, True)                      # the remembered pin still ages
    assert p.check(value, 1101) == (-1, False)
    forged = value[:-1] + (b"A" if value[-1:] != b"A" else b"B")
    assert p.check(forged, 1010) == (-1, False) and forged not in p._verified   # only verified values kept
    for b in range(pin_module._VERIFIED_MAX + 5):
        p.check(p.make_value(b % BUCKETS, 1000 + b // BUCKETS), 1010)
    assert 0 < len(p._verified) <= pin_module._VERIFIED_MAX       # bounded: cleared when full



@given(st.binary(max_size=80))
def test_pin_garbage_never_raises(value):
    assert PinSigner("k").check(value, 1000) == (-1, False)   # refused, never raises, never a bucket
