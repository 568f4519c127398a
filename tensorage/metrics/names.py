"""Every metric family a node serves, in one catalogue: the collectors take their names and help
from here, docs/operators.md lists them, and a test checks the Grafana dashboard against it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str  # as exposed (a counter's ``_total`` included)
    kind: str  # gauge | counter | histogram | info
    help: str
    role: str  # node (every node) | jobs | miner | validator | gateway

    @property
    def base(self) -> str:
        """The name prometheus_client takes (a counter without its ``_total``)."""
        return self.name[: -len("_total")] if self.kind == "counter" and self.name.endswith("_total") else self.name


_ALL = [
    # every node
    Family("tensorage_node_info", "gauge", "Always 1; labels say the node's role, network, hotkey and versions",
           "node"),
    Family("tensorage_chain_up", "gauge", "1 while the node's chain answers, 0 when it is unreachable or unknown",
           "node"),
    Family("tensorage_chain_block", "gauge", "Block of the metagraph the node synced last", "node"),
    Family("tensorage_requests_refused_total", "counter", "Requests refused, by route and error code", "node"),
    Family("tensorage_event_loop_lag_seconds", "histogram", "How late the node's event loop ran a timer", "node"),
    # the process (prometheus_client's ProcessCollector, read from /proc in the scrape's thread)
    Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "node"),
    Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "node"),
    Family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", "node"),
    Family("process_open_fds", "gauge", "Number of open file descriptors.", "node"),
    Family("process_max_fds", "gauge", "Maximum number of open file descriptors (LimitNOFILE).", "node"),
    Family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", "node"),
    # jobs (tensorage/scheduler.py)
    Family("tensorage_job_runs_total", "counter", "Runs of a scheduled job", "jobs"),
    Family("tensorage_job_failures_total", "counter", "Runs of a scheduled job that failed", "jobs"),
    Family("tensorage_job_last_success_timestamp_seconds", "gauge", "Unix time the job last ran without failing",
           "jobs"),
    Family("tensorage_job_running", "gauge", "1 while the job runs", "jobs"),
    Family("tensorage_job_chain_failures", "gauge", "Runs in a row that failed on the chain (backing off while > 0)",
           "jobs"),
    Family("tensorage_job_duration_seconds", "histogram", "Seconds a job's run took", "jobs"),
    # miner
    Family("tensorage_miner_plots", "gauge", "Plots held (listed), per disk", "miner"),
    Family("tensorage_miner_plot_bytes", "gauge", "Bytes of the plots on a disk", "miner"),
    Family("tensorage_miner_disk_free_bytes", "gauge", "Free bytes on a disk's device", "miner"),
    Family("tensorage_miner_disk_share_bytes", "gauge", "A disk's part of the share (--size_in_gb)", "miner"),
    Family("tensorage_miner_disk_up", "gauge", "1 while a disk reads, 0 once lost", "miner"),
    Family("tensorage_miner_allocating", "gauge", "1 while plots are being made or removed", "miner"),
    Family("tensorage_miner_windows_answered_total", "counter",
           "Window challenges answered (looked_up, shared) or refused (the refusal's code)", "miner"),
    Family("tensorage_miner_lookup_seconds", "histogram", "Seconds to look a window's proofs up on disk", "miner"),
    Family("tensorage_miner_shards", "gauge", "Client shards held", "miner"),
    Family("tensorage_miner_shard_bytes", "gauge", "Bytes of client shards held", "miner"),
    Family("tensorage_miner_shard_free_bytes", "gauge", "Room for client shards without removing plots", "miner"),
    Family("tensorage_miner_certified_shards", "gauge", "Shards whose certificate this miner holds", "miner"),
    Family("tensorage_miner_certified_bytes", "gauge", "Bytes of the certified shards its current listing carries",
           "miner"),
    # validator
    Family("tensorage_validator_windows_total", "counter", "Windows recorded, judged or void", "validator"),
    Family("tensorage_validator_verdicts_total", "counter",
           "Miner verdicts of the recorded windows (pass, fail, timeout, unreachable)", "validator"),
    Family("tensorage_validator_window_seconds", "histogram", "Seconds to ask every miner and check their answers",
           "validator"),
    Family("tensorage_validator_last_window", "gauge", "The newest window this validator asked", "validator"),
    Family("tensorage_validator_miners_synced", "gauge", "Serving miners this validator follows", "validator"),
    Family("tensorage_validator_miner_proven_bytes", "gauge", "Bytes a miner proved per window (decayed)",
           "validator"),
    Family("tensorage_validator_miner_score", "gauge", "A miner's score (what weights are normalized from)",
           "validator"),
    Family("tensorage_validator_weights_set_total", "counter", "Weight settings, by result (ok, failed)", "validator"),
    Family("tensorage_validator_weights_block", "gauge", "Block at which weights were last set", "validator"),
    Family("tensorage_validator_weight", "gauge", "Weight last set per uid", "validator"),
    Family("tensorage_validator_verifier_queue", "gauge", "Listings and answers waiting for or in the verifier",
           "validator"),
    Family("tensorage_validator_verifier_faults_total", "counter", "Verifier failures (a bug or a dead worker)",
           "validator"),
    # gateway (a validator's client gateway)
    Family("tensorage_gateway_objects", "gauge", "Objects in the manifest, by state", "gateway"),
    Family("tensorage_gateway_object_bytes", "gauge", "Bytes of the objects in the manifest, by state", "gateway"),
    Family("tensorage_gateway_shards", "gauge", "Shards in the manifest, by state (suspect, lost ...)", "gateway"),
    Family("tensorage_gateway_repair_queue", "gauge", "Segments of live objects with a suspect or lost shard",
           "gateway"),
    Family("tensorage_gateway_transfers_in_flight", "gauge", "Stores and retrieves under way", "gateway"),
    Family("tensorage_gateway_stored_bytes_total", "counter", "Bytes of objects stored", "gateway"),
    Family("tensorage_gateway_retrieved_bytes_total", "counter", "Bytes of objects retrieved", "gateway"),
    Family("tensorage_gateway_store_seconds", "histogram", "Seconds to store an object", "gateway"),
    Family("tensorage_gateway_retrieve_seconds", "histogram", "Seconds to retrieve an object", "gateway"),
    Family("tensorage_gateway_object_events_total", "counter", "Object events, by action (stored, failed ...)",
           "gateway"),
    Family("tensorage_gateway_shards_lost_total", "counter", "Shards found lost", "gateway"),
    Family("tensorage_gateway_shards_repaired_total", "counter", "Shards rebuilt and placed again", "gateway"),
]

FAMILIES: dict[str, Family] = {f.name: f for f in _ALL}


def family(name: str) -> Family:
    return FAMILIES[name]


def of_role(*roles: str) -> list[Family]:
    return [f for f in _ALL if f.role in roles]
