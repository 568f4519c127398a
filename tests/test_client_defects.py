"""The client's defects that a new user met (issue 16), each shown failing before its fix: a
refusal hidden behind a cancellation, a FIFO that hung `store`, `ls` wrapping and squeezing names,
a long name that could not be retrieved, a hostile segment size that made the client buffer a whole
object, and a key file kept in the clear."""

from __future__ import annotations

import io
import os
import stat
import threading

import pytest
from aiohttp import web
from rich.console import Console

from tensorage.chain.port import Neuron
from tensorage.client.api import Listed, ObjectClient
from tensorage.client.errors import ClientError, GatewayError, IntegrityError, KeyFileError
from tensorage.client.keyfile import load_key, load_or_create_key
from tensorage.client.pipeline import Restorer, StoreSource
from tensorage.client.sealing import HEADER, MAX_SEGMENT, SEGMENT, Opener, Sealer
from tensorage.net.objects import ObjectDeclare, ObjectDeclared
from tensorage.net.server import serve

KEY = bytes(range(32))


def _neuron(port: int, hotkey: str) -> Neuron:
    return Neuron(uid=0, hotkey=hotkey, coldkey=hotkey, active=True, validator_permit=True, last_update=0,
                  block_at_registration=0, rank=0, trust=0, consensus=0, incentive=0, dividends=0, emission=0,
                  total_stake=0, axon=f"127.0.0.1:{port}")


async def test_a_refusal_mid_upload_is_reported_not_a_cancellation(wallet, tmp_path):
    """A gateway that accepts the declaration, then refuses the upload with 503 after its first bytes
    (as a gateway does when its spool fills): the client says 503 with the gateway's message."""
    async def declare(request):
        layout = ObjectDeclare.model_validate_json(await request.read()).layout()
        return web.json_response(ObjectDeclared(id="0" * 32, body_bytes=layout.body_bytes, stripes=layout.stripes,
                                                upload_path="/v1/objects/" + "0" * 32, expires_at=0).model_dump(),
                                 status=201)

    async def upload(request):
        await request.content.read(1 << 16)
        return web.json_response({"error": "busy", "message": "the gateway is full, try later"}, status=503)

    app = web.Application()
    app.router.add_post("/v1/objects", declare)
    app.router.add_put("/v1/objects/{id}", upload)
    served = await serve(app, "127.0.0.1", 0)
    path = tmp_path / "big"
    path.write_bytes(os.urandom(24 << 20))
    client = ObjectClient(wallet, KEY, _neuron(served.port, wallet.hotkey.ss58_address))
    try:
        for _ in range(3):  # the race is timing-dependent: every try must say 503
            with pytest.raises(GatewayError) as exc:
                await client.store(path)
            assert exc.value.status == 503 and "full" in str(exc.value)
    finally:
        await client.close()
        await served.close()


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    """Opening a FIFO for reading blocks until someone writes: `tensorage store fifo` hung forever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list = []

    def store() -> None:
        try:
            StoreSource(fifo, KEY, 4, 6)
            outcome.append("accepted")
        except ClientError as exc:
            outcome.append(exc)

    t = threading.Thread(target=store, daemon=True)
    t.start()
    t.join(30)  # a liveness bound, not a speed figure: before the fix the open never returned
    if t.is_alive():  # unblock the thread before failing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail("StoreSource(fifo) blocked waiting for a writer")
    assert isinstance(outcome[0], ClientError) and "not a regular file" in str(outcome[0])
    with pytest.raises(ClientError, match="not a regular file"):
        StoreSource(tmp_path, KEY, 4, 6)  # a directory, as before


def _listed(name: str, i: int) -> Listed:
    return Listed(id=f"{i:032x}", name=name, plain_size=1000 * i, size=2000, k=4, n=6, state="stored", healthy=6,
                  segments=1, created_at=1.7e9)


LISTING = [_listed("notes.txt", 1), _listed("photos.tar", 2), _listed("x" * 250, 3)]


def test_ls_in_a_pipe_keeps_one_line_per_object_with_whole_names():
    from tensorage.client_cli import render_listing

    buf = io.StringIO()
    render_listing(Console(file=buf, width=80, force_terminal=False), LISTING, 6000, 10**9)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 + len(LISTING)
    for line, o in zip(lines[1:], LISTING):
        assert line.startswith(o.id) and line.endswith(o.name)


def test_ls_at_a_terminal_cuts_a_long_name_instead_of_squeezing_the_others():
    from tensorage.client_cli import render_listing

    buf = io.StringIO()
    render_listing(Console(file=buf, width=80, force_terminal=True, color_system=None), LISTING, 6000, 10**9)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    body = [line for line in lines if line.startswith(tuple(o.id for o in LISTING))]
    assert len(body) == len(LISTING)  # nothing wrapped onto a second line
    assert all(len(line) <= 80 for line in lines)
    assert "notes.txt" in body[0] and "photos.tar" in body[1]
    assert body[2].rstrip().endswith("…")


def test_an_object_with_a_250_character_name_is_retrieved_under_it(tmp_path):
    """Legal names reach 255 bytes; the temp file beside the output must not be longer than that."""
    data = os.urandom(100_000)
    (tmp_path / "in").write_bytes(data)
    source = StoreSource(tmp_path / "in", KEY, 2, 3)
    body = b"".join(source.batches())
    layout = source.layout
    out = tmp_path / ("n" * 250)
    restorer = Restorer(KEY, layout, out)
    w, b = layout.stripe_wire, layout.block
    restorer.consume(b"".join(body[s * w + i * b: s * w + (i + 1) * b] for s in range(layout.stripes) for i in (0, 1)),
                     [0, 1], b)
    restorer.commit()
    assert out.read_bytes() == data


def test_a_hostile_segment_size_is_refused_before_any_buffering():
    """The header is clear text: a gateway can rewrite its segment size (the key check still passes)
    so that the first tag sits past the end of the object and the client buffers all of it first."""
    data = os.urandom(3 * SEGMENT)
    s = Sealer(KEY)
    blob = bytearray(s.header + b"".join(s.seal(data[i:i + SEGMENT]) for i in range(0, len(data), SEGMENT))
                     + s.finish())
    magic, version, alg, zero, segment, salt, check = HEADER.unpack(bytes(blob[:HEADER.size]))
    blob[:HEADER.size] = HEADER.pack(magic, version, alg, zero, 1 << 31, salt, check)
    opener = Opener(KEY, len(blob))
    with pytest.raises(IntegrityError, match="segment size"):
        opener.feed(bytes(blob[:HEADER.size + 1000]))
    assert MAX_SEGMENT >= SEGMENT



def test_a_key_file_can_be_kept_under_a_passphrase(tmp_path, monkeypatch):
    """As btcli's coldkeys: the passphrase from the environment, or typed at a terminal (``ask``)."""
    from tensorage.client.keyfile import PASSPHRASE_ENV

    path = tmp_path / "client.key"
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    made = load_or_create_key(path)
    assert made.created and made.key.hex().encode() not in path.read_bytes() and made.key not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path).key == made.key
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong horse")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(path)
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyFileError, match=PASSPHRASE_ENV):
        load_key(path)  # no terminal, no environment: say how to give it
    asked: list[str] = []
    assert load_key(path, ask=lambda prompt: asked.append(prompt) or "correct horse").key == made.key
    assert len(asked) == 1

    typed = iter(["secret", "secret"])
    other = load_or_create_key(tmp_path / "typed.key", ask=lambda prompt: next(typed))
    assert load_key(tmp_path / "typed.key", ask=lambda prompt: "secret").key == other.key
    with pytest.raises(KeyFileError, match="differ"):
        answers = iter(["one", "two"])
        load_or_create_key(tmp_path / "mistyped.key", ask=lambda prompt: next(answers))
    assert not (tmp_path / "mistyped.key").exists()
    plain = load_or_create_key(tmp_path / "plain.key", ask=lambda prompt: "")  # empty: in the clear, as before
    assert plain.key.hex().encode() in (tmp_path / "plain.key").read_bytes()


def test_retrieve_without_the_passphrase_says_how_to_give_it(tmp_path, monkeypatch):
    from tensorage.client.keyfile import PASSPHRASE_ENV

    from .conftest import tensorage

    monkeypatch.setenv(PASSPHRASE_ENV, "pw")
    load_or_create_key(tmp_path / "enc.key")
    monkeypatch.delenv(PASSPHRASE_ENV)
    result = tensorage("retrieve", "0" * 32, "--key_file", str(tmp_path / "enc.key"), "--subtensor.network", "devnet",
                       "--devnet.root", str(tmp_path / "devnet"))
    assert result.returncode != 0 and PASSPHRASE_ENV in result.stderr


def test_the_console_groups_s3_objects_by_bucket():
    """The Objects screen's order and names: files stored with `tensorage store` first, then S3
    objects by bucket and key, shown as bucket/key."""
    from tensorage.client.session import by_bucket, display_name

    def s3(i: int, bucket: str, key: str) -> Listed:
        o = _listed(key.rpartition("/")[2], i)
        return Listed(**{**o.__dict__, "meta": {"name": o.name, "s3": {"b": bucket, "k": key}}})

    objects = [s3(1, "photos", "2024/b.jpg"), _listed("notes.txt", 2), s3(3, "backups", "db.tar"),
               s3(4, "photos", "2024/a.jpg"), _listed("todo.md", 5)]
    assert [display_name(o) for o in by_bucket(objects)] == ["notes.txt", "todo.md", "backups/db.tar",
                                                            "photos/2024/a.jpg", "photos/2024/b.jpg"]
