"""Issue 15, item 0: engine and CLI defects an operator met on the devnet.

Run in this process through ``tensorage.cli.run`` (the same code as the `tensorage` script) unless a
real node process is the point."""

from __future__ import annotations

import json

from tensorage.cli import apply_devnet_defaults, run
from tensorage.config import settings_from_namespace
from tensorage.storage import share as stored_share
from tensorage.storage.layout import Layout


def devnet_args(root, name: str = "miner-0") -> list[str]:
    return ["--subtensor.network", "devnet", "--devnet.root", str(root), "--wallet.name", name]


# --- a default is not a typed flag -----------------------------------------------------------------


def test_the_devnet_spec_size_is_a_default_not_a_typed_flag(devnet_root):
    settings = apply_devnet_defaults(settings_from_namespace({"subtensor.network": "devnet",
                                                              "devnet.root": str(devnet_root),
                                                              "wallet.name": "miner-0"}))
    assert settings.size_in_gb > 0 and settings.db_root_path  # the spec's share and the node's own root
    assert stored_share.flags_of(settings) == (None, None)


def test_status_of_a_stopped_devnet_node_keeps_its_stored_share(devnet_root, capsys):
    """The issue: without --size_in_gb the devnet's default overrode the stored share (15 plots -> 3)
    and `status` said `source: flag`."""
    layout = Layout(devnet_root / "nodes" / "miner-0")
    layout.ensure()
    stored_share.store(layout, 0.06, None, "allocate", (0.06, None))
    before = (layout.index / stored_share.SHARE_FILE).read_bytes()
    assert run(["status", "--json", "--offline", *devnet_args(devnet_root)]) == 0
    share = json.loads(capsys.readouterr().out)["share"]
    assert share["source"] == "stored" and share["size_in_gb"] == 0.06, share
    assert (layout.index / stored_share.SHARE_FILE).read_bytes() == before
