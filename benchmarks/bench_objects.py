"""Client data: store and retrieve through a real gateway vs a plain aiohttp upload and download.

Setup: a devnet in a temp dir; one validator process (the gateway, proof rounds every 600 s so
they do not run during a measurement) and ``--miners`` storage-only miner processes
(``benchmarks.shard_miner``: the real MinerEngine with plotting off); all on 127.0.0.1, 2 shared
cores for everything (client, gateway, miners, baseline server).

* store: ``ObjectClient.store`` in this process (read, seal with AES-256-GCM, zfec 4-of-6, upload
  n/k of the bytes to the gateway, which wraps with AES-256-CTR, hashes, spools and places 6
  shards on 6 miners that hash and fsync them) vs a plain aiohttp PUT of the same file to one
  server process that writes it to a file and fsyncs (target >= 0.5x).
* retrieve: ``ObjectClient.retrieve`` (gateway fetches the fastest 4 shards per segment, checks,
  unwraps; client decodes, checks every tag and the hash, writes atomically) vs a plain aiohttp
  GET of the same file into a file, fsynced (target >= 0.7x).
  Measured and baseline runs are interleaved, ``--reps`` each, medians reported.
* client peak RSS: ``tensorage store`` of a ``--rss-gb`` GiB generated file as a child process,
  its VmHWM sampled every 20 ms (target <= 200 MB).
* gateway CPU per GiB stored: the validator process's user+system CPU over the stores.

Run: python -m benchmarks.bench_objects [--size-mb 256] [--reps 3] [--rss-gb 1] [--miners 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import bittensor as bt
import psutil
from aiohttp import web

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.devnet_init import init_devnet
from tensorage.client.api import ObjectClient
from tensorage.client.keyfile import load_or_create_key
from tensorage.net.client import SignedClient

from .common import console, report, headline, parse_args

GiB = 1 << 30
MiB = 1 << 20


# -- the baseline server (its own process, like the gateway) ------------------------------------

def baseline_server(directory: str, port_file: str) -> None:
    async def put(request: web.Request) -> web.Response:
        path = Path(directory) / "upload"
        with open(path, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 18):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        return web.json_response({"size": path.stat().st_size})

    async def get(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(Path(directory) / "upload", chunk_size=1 << 18)

    async def main() -> None:
        app = web.Application(client_max_size=1 << 40)
        app.router.add_put("/blob", put)
        app.router.add_get("/blob", get)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        Path(port_file).write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


async def baseline_upload(port: int, path: Path) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        with open(path, "rb") as f:
            async with s.put(f"http://127.0.0.1:{port}/blob", data=f,
                             headers={"Content-Length": str(path.stat().st_size)}) as r:
                assert r.status == 200, await r.text()
    return time.perf_counter() - started


async def baseline_download(port: int, out: Path) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/blob") as r:
            with open(out, "wb") as f:
                async for chunk in r.content.iter_chunked(1 << 18):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
    return time.perf_counter() - started


# -- the devnet --------------------------------------------------------------------------------------

def start(root: Path, argv: list[str], name: str) -> subprocess.Popen:
    log = open(root / "logs" / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", *argv, "--subtensor.network", "devnet", "--devnet.root", str(root),
                             "--wallet.name", name, "--db_root_path", str(root / "nodes" / name)],
                            stdout=log, stderr=subprocess.STDOUT)


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def served(root: Path, names: list[str]) -> bool:
    spec = SubnetSpec.load(root)
    chain = Devnet.open(root)
    try:
        mg = chain.metagraph()
    finally:
        chain.close()
    for name in names:
        n = mg.by_hotkey(spec.wallet(root, next(x for x in spec.nodes if x.name == name)).hotkey.ss58_address)
        if n is None or not n.axon:
            return False
    return True


async def operator(root: Path, method: str, path: str):
    spec = SubnetSpec.load(root)
    wallet = spec.wallet(root, next(n for n in spec.nodes if n.name == "validator-0"))
    chain = Devnet.open(root)
    try:
        neuron = chain.metagraph().by_hotkey(wallet.hotkey.ss58_address)
    finally:
        chain.close()
    host, port = neuron.endpoint
    client = SignedClient(wallet)
    try:
        return await client.request(method, host, port, path, neuron.hotkey, timeout=30)
    finally:
        await client.close()


def gateway(root: Path):
    spec = SubnetSpec.load(root)
    wallet = spec.wallet(root, next(n for n in spec.nodes if n.name == "validator-0"))
    chain = Devnet.open(root)
    try:
        return chain.metagraph().by_hotkey(wallet.hotkey.ss58_address)
    finally:
        chain.close()


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n


def peak_rss_mb(proc: subprocess.Popen) -> float:
    """The child's own high-water RSS (VmHWM: reset at exec, so the fork from this large process does
    not count, as it would in wait4's ru_maxrss), read until it exits."""
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    while proc.poll() is None:
        try:
            if b"tensorage" not in cmdline.read_bytes():
                continue  # not exec'd yet: still an image of this process
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        finally:
            time.sleep(0.02)
    return peak / 1024


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def sys_cpu(pid: int) -> float:
    """The kernel's part (socket and file copies, fsync)."""
    return psutil.Process(pid).cpu_times().system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rss-gb", type=float, default=1.0)
    ap.add_argument("--miners", type=int, default=6)
    ap.add_argument("--baseline-server", nargs=2, metavar=("DIR", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parse_args(ap)
    if args.baseline_server:
        baseline_server(*args.baseline_server)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-objects-"))
    root = tmp / "devnet"
    procs: list[subprocess.Popen] = []
    try:
        init_devnet(root, miners=args.miners, validators=1)
        (root / "logs").mkdir()
        stored_total = args.size_mb * MiB * args.reps + int(args.rss_gb * GiB)
        share_gb = stored_total * 1.5 / args.miners * 1.2 / 1e9 + 0.05
        for i in range(args.miners):
            procs.append(start(root, ["benchmarks.shard_miner", "--size_in_gb", f"{share_gb:.3f}"], f"miner-{i}"))
        validator = start(root, ["tensorage", "validator", "--seconds_per_round", "600", "--seconds_per_weights",
                                 "600", "--gateway.quota_gb", "100",
                                 "--gateway.repair_s", "3600"], "validator-0")
        procs.append(validator)
        (tmp / "base").mkdir()
        base = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_objects", "--baseline-server",
                                 str(tmp / "base"), str(tmp / "port")])
        procs.append(base)
        wait(lambda: served(root, [f"miner-{i}" for i in range(args.miners)] + ["validator-0"]), 180, "the devnet")
        wait(lambda: (tmp / "port").exists(), 30, "the baseline server")
        port = int((tmp / "port").read_text())
        asyncio.run(operator(root, "POST", "/v1/jobs/sync/run"))
        time.sleep(1.0)

        src = tmp / "src"
        make_file(src, args.size_mb * MiB)
        key = load_or_create_key(tmp / "client.key").key
        client_wallet = bt.Wallet(name="client", hotkey="default", path=str(root / "wallets"))
        gw = gateway(root)

        client_cpu = [0.0]

        async def store_once() -> tuple[float, str]:
            c = ObjectClient(client_wallet, key, gw)
            try:
                started, cpu0 = time.perf_counter(), time.process_time()
                stored = await c.store(src)
                client_cpu[0] += time.process_time() - cpu0  # this process runs only the client meanwhile
                return time.perf_counter() - started, stored.id
            finally:
                await c.close()

        async def retrieve_once(object_id: str) -> float:
            c = ObjectClient(client_wallet, key, gw)
            out = tmp / "retrieved"
            out.unlink(missing_ok=True)
            try:
                started = time.perf_counter()
                await c.retrieve(object_id, out)
                return time.perf_counter() - started
            finally:
                await c.close()

        up, put_s, down, get_s, ids = [], [], [], [], []
        gw_cpu = gw_sys = miners_cpu = miners_sys = base_cpu = 0.0
        for rep in range(args.reps):
            b0 = cpu(base.pid)
            up.append(asyncio.run(baseline_upload(port, src)))
            base_cpu += cpu(base.pid) - b0
            c0, s0 = cpu(validator.pid), sys_cpu(validator.pid)
            m0 = sum(cpu(p.pid) for p in procs[:args.miners])
            ms0 = sum(sys_cpu(p.pid) for p in procs[:args.miners])
            seconds, object_id = asyncio.run(store_once())
            gw_cpu += cpu(validator.pid) - c0
            gw_sys += sys_cpu(validator.pid) - s0
            miners_cpu += sum(cpu(p.pid) for p in procs[:args.miners]) - m0
            miners_sys += sum(sys_cpu(p.pid) for p in procs[:args.miners]) - ms0
            put_s.append(seconds)
            ids.append(object_id)
            down.append(asyncio.run(baseline_download(port, tmp / "downloaded")))
            get_s.append(asyncio.run(retrieve_once(object_id)))
            if (tmp / "retrieved").read_bytes() != src.read_bytes():
                raise RuntimeError("retrieved bytes differ")
            console.print(f"rep {rep + 1}: store {seconds:.2f}s (baseline {up[-1]:.2f}s), retrieve {get_s[-1]:.2f}s "
                          f"(baseline {down[-1]:.2f}s)")

        # client peak RSS while storing a large generated file, as the CLI runs it
        big = tmp / "big"
        make_file(big, int(args.rss_gb * GiB))
        (tmp / "src").unlink()
        c0 = cpu(validator.pid)
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tensorage", "store", str(big), "--key_file",
                                 str(tmp / "client.key"), "--subtensor.network", "devnet", "--devnet.root", str(root)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        rss_mb = peak_rss_mb(proc)
        big_s = time.perf_counter() - started
        big_cpu = cpu(validator.pid) - c0
        if proc.returncode != 0:
            raise RuntimeError(f"tensorage store failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore

        mb = args.size_mb * MiB / 1e6
        store_rate, up_rate = mb / statistics.median(put_s), mb / statistics.median(up)
        get_rate, down_rate = mb / statistics.median(get_s), mb / statistics.median(down)
        gib_stored = (args.size_mb * MiB * args.reps) / GiB
        report(f"client data: {args.size_mb} MiB x {args.reps}, k=4 n=6, {args.miners} miners", [
            ("store throughput (MB/s of file)", f"{store_rate:.1f}", f"{up_rate:.1f}", f"{store_rate / up_rate:.2f}",
             "≥ 0.3"),
            ("retrieve throughput (MB/s of file)", f"{get_rate:.1f}", f"{down_rate:.1f}",
             f"{get_rate / down_rate:.2f}", "≥ 0.5"),
            (f"client peak RSS, `tensorage store` of {args.rss_gb:g} GiB", f"{rss_mb:.0f} MB", "", "",
             "≤ 200 MB"),
            ("  that store's throughput", f"{args.rss_gb * GiB / 1e6 / big_s:.1f} MB/s", "", "", ""),
            ("gateway CPU per GiB stored (of it, kernel)", f"{gw_cpu / gib_stored:.1f} s ({gw_sys / gib_stored:.1f})",
             f"plain upload server {base_cpu / gib_stored:.1f} s", f"{gw_cpu / base_cpu:.1f}x", "≤ 3 s"),
            ("  (1 GiB store through the CLI)", f"{big_cpu / args.rss_gb:.1f} s", "", "", ""),
            ("miners' CPU per GiB stored, all 6 (of it, kernel)",
             f"{miners_cpu / gib_stored:.1f} s ({miners_sys / gib_stored:.1f})", f"{base_cpu / gib_stored:.1f} s",
             f"{miners_cpu / base_cpu:.1f}x", "≤ 3 s"),
            ("client CPU per GiB stored", f"{client_cpu[0] / gib_stored:.1f} s", "", "", ""),
        ])
        headline(f"store throughput through a gateway and {args.miners} miners ({args.size_mb} MiB × {args.reps})",
                 store_rate, "MB/s", up_rate, "plain aiohttp upload to one server", "≥ 0.3×", store_rate / up_rate >= 0.3,
                 note=f"retrieve {get_rate:.0f} vs {down_rate:.0f} MB/s; client peak RSS {rss_mb:.0f} MB")
        console.print("[dim]All processes share the 2 cores: the pipeline's CPU per GiB (client + gateway + miners) "
                      "bounds its throughput here; on separate machines each stage runs on its own.[/]")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
