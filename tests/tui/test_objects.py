"""The Objects screen (7): the client's objects on its gateway, stores and retrieves from the keyboard.

The first tests run on a real devnet chain file and wallets with no node process: there is no
gateway yet, so the screen and a store say so. The round trip starts real miner processes and a
validator gateway (tests/objectnet.py), stores a file from the keyboard, watches it appear with its
health, retrieves it and compares the bytes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from textual.widgets import Input

from tensorage.cli import node_passthrough
from tensorage.client.session import ClientSession
from tensorage.engines.devnet import DevnetSupervisor
from tensorage.events import EventBus
from tensorage.tui.app import ConsoleApp
from tensorage.tui.screens.confirm import ConfirmScreen
from tensorage.tui.screens.objects import ObjectsScreen
from tensorage.tui.screens.path_prompt import PathPrompt
from tensorage.tui.sources import DevnetSource
from tensorage.tui.widgets.keyed_table import KeyedTable

from ..objectnet import ObjectNet
from .conftest import devnet_settings, screen_text, until, until_text

SIZE = (80, 24)


def devnet_console(root: Path, **session) -> ConsoleApp:
    settings = devnet_settings(root, seconds_per_round=1, workers=2)
    supervisor = DevnetSupervisor(settings, EventBus(), node_args=node_passthrough(settings))
    backend = DevnetSource(supervisor)
    if session:
        backend.client = ClientSession(settings, supervisor.bus, **session)
    return ConsoleApp(backend, start_engines=False)


async def type_path(pilot, text: str) -> None:
    """Clear the dialog's box, type ``text`` (a long temp path is pasted) and press enter."""
    box = pilot.app.screen.query_one(Input)
    box.value = ""
    if len(text) < 40:
        await pilot.press(*text)
    else:
        box.value = text
    await pilot.press("enter")


async def test_store_from_the_keyboard_refuses_bad_paths_and_says_there_is_no_gateway(devnet_root, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "hello.txt").write_bytes(b"hello")
    app = devnet_console(devnet_root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        assert isinstance(app.screen, ObjectsScreen)
        # no validator serves yet: the listing says so, with what to do
        await until(pilot, lambda: app.objects_error, "the listing to fail")
        assert "serves an endpoint" in app.objects_error
        assert "no validator" in screen_text(app)

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the store dialog")
        prompt = app.screen
        for typed, reason in (("missing.bin", "does not exist"), ("adir", "not a regular file"),
                              ("", "no file given")):
            await type_path(pilot, typed)
            await until(pilot, lambda r=reason: prompt.refusals and r in prompt.refusals[-1], f"refusal: {reason}")
            assert app.screen is prompt  # the dialog stays, with what was typed
            assert prompt.query_one(Input).value == typed
            assert reason in screen_text(app)
        assert str(tmp_path / "missing.bin") in prompt.refusals[0]  # the whole path, resolved
        assert not app.state.transfers  # nothing started

        # a file that is there: the store starts, and fails with the client's own message
        await type_path(pilot, "hello.txt")
        await until(pilot, lambda: isinstance(app.screen, ObjectsScreen), "the dialog to close")
        failed = await until(pilot, lambda: next((t for t in app.state.transfers.values() if t.state == "failed"),
                                                 None), "the store to fail")
        assert failed.op == "store" and failed.name == "hello.txt" and "serves an endpoint" in failed.detail
        text = await until_text(pilot, "✗ store hello.txt")
        assert "no validator" in text
        # the key file was made for the devnet's client wallet, as `tensorage store` makes it
        assert (devnet_root / "wallets" / "client" / "tensorage-client.key").exists()

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the store dialog again")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ObjectsScreen), "esc to cancel")
        assert len(app.state.transfers) == 1
        await pilot.press("r")  # nothing listed: nothing to retrieve
        await pilot.pause()
        assert isinstance(app.screen, ObjectsScreen)
        await pilot.press("question_mark")
        text = await until_text(pilot, "store a file")
        assert "remove the object" in text
        await pilot.press("escape")


# --- a real gateway: store -> list -> retrieve -> remove, all from the keyboard ---------------------

MINERS = 2
VALIDATOR_ARGS = ("--seconds_per_round", "30", "--seconds_per_weights", "600", "--gateway.shard_mb", "0.25",
                  "--gateway.repair_s", "3600")


@pytest.fixture
def objectnet(tmp_path):
    net = ObjectNet(tmp_path / "devnet", MINERS, 0.017, VALIDATOR_ARGS)
    try:
        net.start()
        yield net
    finally:
        net.close()


async def test_store_list_retrieve_remove_round_trip_through_the_console(objectnet, tmp_path, monkeypatch):
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    data = os.urandom(1_500_001)  # six segments of 0.25 MiB of ciphertext
    (tmp_path / "photo.raw").write_bytes(data)
    # any 1 of 2 shards rebuilds a segment: two miners are enough (`tensorage store --k 1 --n 2`)
    app = devnet_console(objectnet.root, k=1, n=2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await until(pilot, lambda: app.objects is not None, "the gateway's (empty) listing")
        assert "0 objects" in screen_text(app) and "gateway validator-0" in screen_text(app)
        assert "no objects yet" in screen_text(app)

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the store dialog")
        await type_path(pilot, str(tmp_path / "photo.raw"))
        stored = await until(pilot, lambda: next((t for t in app.state.transfers.values()
                                                  if t.op == "store" and t.state != "running"), None), "the store")
        assert stored.state == "done", stored.detail
        assert stored.done == stored.total == len(data)
        table = app.screen.query_one("#obj-table", KeyedTable)
        await until(pilot, lambda: table.selected_key() == stored.object_id, "the object listed")
        text = await until_text(pilot, "photo.raw", "stored", "2/2 k1")
        assert "1 object ·" in text and "1.5 MB" in text
        assert "✓ store photo.raw 1.5 MB" in text

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the retrieve dialog")
        assert app.screen.query_one(Input).value == str(here / "photo.raw")  # its name, here
        await pilot.press("enter")
        got = await until(pilot, lambda: next((t for t in app.state.transfers.values()
                                               if t.op == "retrieve" and t.state != "running"), None), "the retrieve")
        assert got.state == "done", got.detail
        assert (here / "photo.raw").read_bytes() == data

        # a second retrieve to the same place is refused in the dialog: nothing is overwritten
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the retrieve dialog again")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.refusals, "the refusal")
        assert "already exists" in app.screen.refusals[-1]
        await pilot.press("escape")

        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: app.objects is not None and not app.objects.objects, "the object removed")
        assert "0 objects" in screen_text(app)

        # the gateway restarts on another port: the next listing says so, the one after finds it again
        await asyncio.to_thread(objectnet.stop_validator)  # blocking helpers: off the app's loop
        await asyncio.to_thread(objectnet.start_validator)
        await pilot.press("f5")
        await until(pilot, lambda: "did not answer" in app.objects_error, "the old address to fail")
        await pilot.press("f5")
        await until(pilot, lambda: not app.objects_error, "the gateway found again")
        assert app.backend.client.gateway.endpoint == objectnet.neuron("validator-0").endpoint


def test_path_checks_say_what_is_wrong(tmp_path, monkeypatch):
    from tensorage.client.errors import ClientError, OutputError
    from tensorage.client.session import input_file, output_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "out").mkdir()
    assert input_file(" a.bin ") == tmp_path / "a.bin"
    for text, reason in (("", "no file given"), ("nope", "does not exist"), ("out", "not a regular file")):
        with pytest.raises(ClientError, match=reason):
            input_file(text)
    assert output_file("", "photo.raw") == tmp_path / "photo.raw"  # its name, here
    assert output_file("out", "photo.raw") == tmp_path / "out" / "photo.raw"  # a directory keeps the name
    assert output_file("out/other.raw", "photo.raw") == tmp_path / "out" / "other.raw"
    assert output_file("", "../../etc/passwd") == tmp_path / "passwd"  # a stored name is a name, not a path
    for text, reason in (("a.bin", "already exists"), ("missing/", "is not a directory"),
                         ("missing/x.raw", "does not exist")):
        with pytest.raises(OutputError, match=reason):
            output_file(text, "photo.raw")
