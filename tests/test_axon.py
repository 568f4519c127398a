"""Issue 9, defect 4: on a real network a node binds every interface and publishes an address
validators can reach, or refuses to start saying which flag to pass. On the devnet nothing changes."""

from __future__ import annotations

import pytest

from tensorage.cli import run
from tensorage.config import settings_from_namespace


def settings(network: str, **axon):
    return settings_from_namespace({"subtensor.network": network, **{f"axon.{k}": v for k, v in axon.items()}})


def plan(network: str, probe=lambda: None, **axon):
    from tensorage.net.address import plan_axon

    return plan_axon(settings(network, **axon), probe=probe)


def test_finney_binds_every_interface_on_a_fixed_port():
    s = settings("finney")
    assert (s.bind_ip, s.bind_port) == ("0.0.0.0", 8091)
    assert (settings("devnet").bind_ip, settings("devnet").bind_port) == ("127.0.0.1", 0)


def test_finney_publishes_the_external_ip_or_a_public_address_of_this_machine():
    p = plan("finney", external_ip="203.0.113.7", external_port=9000)
    assert (p.bind_ip, p.bind_port, p.published(8091)) == ("0.0.0.0", 8091, ("203.0.113.7", 9000))
    p = plan("finney", probe=lambda: "93.184.216.34")  # a machine with a public address of its own
    assert p.published(8091) == ("93.184.216.34", 8091)
    assert plan("test", ip="93.184.216.35").published(8091) == ("93.184.216.35", 8091)


@pytest.mark.parametrize("probe, seen", [(lambda: "192.168.1.20", "192.168.1.20, not a public one"),
                                         (lambda: None, "no route out")])
def test_finney_behind_nat_refuses_to_start_and_names_the_flag(probe, seen):
    from tensorage.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        plan("finney", probe=probe)
    assert seen in str(refused.value) and "--axon.external_ip" in str(refused.value)
    for bad in ("127.0.0.1", "0.0.0.0"):
        with pytest.raises(ConfigError, match="cannot be reached by validators"):
            plan("finney", external_ip=bad)


def test_devnet_publishes_loopback_as_before():
    assert plan("devnet").published(4321) == ("127.0.0.1", 4321)


def test_a_miner_on_finney_that_cannot_be_reached_stops_before_anything(tmp_path, capsys):
    """Bound to a private address, no --axon.external_ip: one line, before the wallet or the chain."""
    code = run(["miner", "--subtensor.network", "finney", "--axon.ip", "10.1.2.3", "--wallet.path",
                str(tmp_path / "no-wallets"), "--db_root_path", str(tmp_path / "db")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "10.1.2.3, not a public one" in err and "--axon.external_ip" in err
    assert not (tmp_path / "db").exists()
