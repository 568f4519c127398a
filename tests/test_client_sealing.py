"""The client's bytes without a network: sealing in segments, erasure coding in stripes, the key
file, and every way a stream can be tampered with (swapped, cut, extended, flipped, wrong key)."""

from __future__ import annotations

import hashlib
import os
import random
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensorage.client.erasure import StripeDecoder, StripeEncoder
from tensorage.client.errors import IntegrityError, KeyFileError, OutputError, WrongKey
from tensorage.client.keyfile import load_key, load_or_create_key
from tensorage.client.pipeline import Restorer, StoreSource
from tensorage.client.sealing import HEADER, SEGMENT, TAG, Opener, Sealer, open_meta, seal_meta, sealed_size
from tensorage.net.objects import ObjectLayout

KEY = bytes(range(32))


def seal(data: bytes, key: bytes = KEY, segment: int = SEGMENT) -> bytes:
    s = Sealer(key, segment=segment)
    parts = [s.header] + [s.seal(data[i:i + segment]) for i in range(0, len(data), segment)] + [s.finish()]
    return b"".join(parts)


def open_all(blob: bytes, key: bytes = KEY, chunk: int = 7919) -> bytes:
    o = Opener(key, len(blob))
    out = b"".join(o.feed(blob[i:i + chunk]) for i in range(0, len(blob), chunk))
    o.finish()
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 300_000), k=st.integers(1, 6), extra=st.integers(0, 4), block=st.sampled_from([1, 7, 4096, 65536]),
       seed=st.integers(0, 2**32))
def test_any_k_of_n_shards_give_back_the_file(tmp_path_factory, size, k, extra, block, seed):
    n = k + extra
    rng = random.Random(seed)
    d = tmp_path_factory.mktemp("rt")
    data = rng.randbytes(size)
    (d / "in").write_bytes(data)
    source = StoreSource(d / "in", KEY, k, n, max_block=block)
    body = b"".join(source.batches())
    layout = source.layout
    assert len(body) == layout.body_bytes and layout.size == sealed_size(size)
    keep = rng.sample(range(n), k)  # any k, in any order
    restorer = Restorer(KEY, layout, d / "out")
    w, b = layout.stripe_wire, layout.block
    stripes = b"".join(body[s * w + i * b: s * w + (i + 1) * b] for s in range(layout.stripes) for i in keep)
    restorer.consume(stripes, keep, b)
    opened = restorer.commit()
    assert (d / "out").read_bytes() == data and opened.sha256 == hashlib.sha256(data).hexdigest()
    assert opened.sha256 == source.sha256


def test_segments_cannot_be_swapped_cut_extended_or_flipped():
    data = os.urandom(5 * 1000 + 300)
    blob = seal(data, segment=1000)
    assert open_all(blob) == data
    seg = 1000 + TAG
    h = HEADER.size
    swapped = blob[:h] + blob[h + seg:h + 2 * seg] + blob[h:h + seg] + blob[h + 2 * seg:]
    cut_segment = blob[:h + seg] + blob[h + 2 * seg:]                      # a whole segment removed
    cut_to_boundary = blob[:h + 5 * seg]                                   # everything after segment 4
    extended = blob + blob[-(40 + TAG):]                                   # the final segment twice
    flipped = bytearray(blob)
    flipped[h + 3 * seg + 10] ^= 1
    for bad in (swapped, cut_segment, cut_to_boundary, extended, bytes(flipped)):
        with pytest.raises(IntegrityError):
            open_all(bad)


def test_a_wrong_key_is_named_before_any_byte_is_returned():
    blob = seal(os.urandom(3000))
    o = Opener(os.urandom(32), len(blob))
    with pytest.raises(WrongKey, match="another key file"):
        o.feed(blob[:HEADER.size])


def test_a_truncated_stream_never_finishes():
    data = os.urandom(2500)
    blob = seal(data, segment=1000)
    o = Opener(KEY, len(blob))
    got = o.feed(blob[:-1])
    assert data.startswith(got)  # only whole, authenticated segments came out
    with pytest.raises(IntegrityError, match="cut short"):
        o.finish()


def test_metadata_is_sealed_per_key():
    text = seal_meta(KEY, {"name": "report.pdf", "size": 12})
    assert "report" not in text
    assert open_meta(KEY, text) == {"name": "report.pdf", "size": 12}
    assert open_meta(os.urandom(32), text) is None


def test_restorer_writes_nothing_under_the_name_until_the_hash_checks(tmp_path):
    data = os.urandom(200_000)
    (tmp_path / "in").write_bytes(data)
    source = StoreSource(tmp_path / "in", KEY, 2, 3)
    body = bytearray(b"".join(source.batches()))
    body[-source.layout.block - 5] ^= 1  # damage the last stripe's first data block
    layout = source.layout
    restorer = Restorer(KEY, layout, tmp_path / "out")
    w, b = layout.stripe_wire, layout.block
    with pytest.raises(IntegrityError):
        for s in range(layout.stripes):
            restorer.consume(bytes(body[s * w: s * w + 2 * b]), [0, 1], b)
        restorer.commit()
    restorer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    (tmp_path / "out").write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--force"):
        Restorer(KEY, layout, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"keep me"


def test_erasure_rebuilds_from_parity_only():
    enc, dec = StripeEncoder(3, 6, 5), StripeDecoder(3, 6)
    data = os.urandom(3 * 5 * 4)
    coded = enc.encode(data)
    stripes = [coded[i * 30:(i + 1) * 30] for i in range(4)]
    parity = b"".join(s[15:30] for s in stripes)  # blocks 3, 4, 5 of each stripe
    assert dec.decode(parity, [3, 4, 5], 5) == data
    with pytest.raises(ValueError):
        dec.decode(parity, [3, 3, 5], 5)


def test_key_file_is_private_made_once_and_never_overwritten(tmp_path):
    path = tmp_path / "w" / "client" / "tensorage-client.key"
    first = load_or_create_key(path)
    assert first.created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_key(path)
    assert not again.created and again.key == first.key
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path)
    path.chmod(0o600)
    path.write_bytes(b"junk")
    with pytest.raises(KeyFileError, match="not a tensorage client key"):
        load_key(path)
    with pytest.raises(KeyFileError, match="no key file"):
        load_key(tmp_path / "missing.key")


def test_a_file_that_changes_while_stored_is_refused(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(os.urandom(3_000_000))
    source = StoreSource(p, KEY, 4, 6)
    batches = source.batches()
    next(batches)  # one batch out, most of the file still to read
    with open(p, "ab") as f:
        f.write(b"more")
    with pytest.raises(Exception, match="grew"):
        for _ in batches:
            pass


def test_layout_arithmetic():
    lay = ObjectLayout(size=1_000_003, k=4, n=6, block=65536)
    assert lay.stripes == 4 and lay.body_bytes == 4 * 6 * 65536
    assert lay.segments(3) == [3, 1] and lay.segments(4) == [4]
    assert sealed_size(0) == HEADER.size + 40 + TAG
