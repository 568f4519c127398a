"""Issue 15: ``Metagraph.by_hotkey`` is indexed (a window's verdicts look up every miner) and still
answers right when the list is replaced, grows, or is edited in place, as tests and syncs do."""

from __future__ import annotations

from dataclasses import replace

from tensorage.chain.port import Metagraph, Neuron


def neuron(uid: int, hotkey: str) -> Neuron:
    return Neuron(uid=uid, hotkey=hotkey, coldkey="c", active=True, validator_permit=False, last_update=0,
                  block_at_registration=0, rank=0.0, trust=0.0, consensus=0.0, incentive=0.0, dividends=0.0,
                  emission=0.0, total_stake=0.0, axon=None)


def test_lookups_follow_the_list_as_it_changes():
    mg = Metagraph(netuid=1, block=1, neurons=[neuron(i, f"hk{i}") for i in range(100)])
    assert mg.by_hotkey("hk42").uid == 42 and mg.by_hotkey("nobody") is None
    mg.neurons.append(neuron(100, "hk100"))  # grows
    assert mg.by_hotkey("hk100").uid == 100
    mg.neurons[5] = neuron(5, "new5")  # edited in place, same length
    assert mg.by_hotkey("new5").uid == 5 and mg.by_hotkey("hk5") is None
    mg.neurons = [neuron(7, "hk1")]  # replaced
    assert mg.by_hotkey("hk1").uid == 7 and mg.by_hotkey("hk42") is None


def test_the_first_of_two_neurons_with_one_hotkey_wins_as_before():
    mg = Metagraph(netuid=1, block=1, neurons=[neuron(0, "a"), neuron(1, "dup"), neuron(2, "dup")])
    assert mg.by_hotkey("dup").uid == 1
    assert replace(mg, block=2).by_hotkey("dup").uid == 1 and mg == replace(mg)
