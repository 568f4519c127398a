"""`tensorage s3` throughput: boto3 through the S3 server vs the client library on the same bytes,
and, as context, boto3 against a plain local S3 server (moto's server mode) of the same object size.

Setup: the S3 tests' world (tests/s3world.py): a devnet in a temp dir, 6 miner processes, one
validator gateway (1 MiB shards), and `tensorage s3` as its own process; 2 shared cores for all.

* upload: boto3 ``upload_file`` (multipart: 8 MiB parts) through `tensorage s3` vs
  ``ObjectClient.store`` of the same file in this process (the work `tensorage store` does, without
  its interpreter start). Target >= 0.9x.
* download: boto3 ``download_file`` (parallel ranged GETs of 8 MiB) vs ``ObjectClient.retrieve``.
  Target >= 0.9x.
* context: the same boto3 calls against ``moto_server`` (pip install 'moto[server]'), which keeps
  objects in memory: what S3 itself costs on this machine.
Runs are interleaved, ``--reps`` each, medians reported.

Run: python -m benchmarks.bench_s3 [--size-mb 32] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import console, headline, parse_args, report

MiB = 1 << 20


def moto_server(port: int) -> subprocess.Popen | None:
    if shutil.which("moto_server") is None:
        return None
    proc = subprocess.Popen(["moto_server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--part-mb", type=int, default=8,
                    help="boto3's multipart threshold and part size (8: its default; 0: one request each way)")
    args = parse_args(ap)

    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    from tests.s3world import S3World, free_port

    root = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    world = S3World(root)
    moto = None
    try:
        console.print(f"starting a devnet world in {root} …")
        world.start()
        data = root / "data.bin"
        data.write_bytes(os.urandom(args.size_mb * MiB))
        size = data.stat().st_size
        part = args.part_mb * MiB if args.part_mb else 1 << 40
        cfg = TransferConfig(multipart_threshold=part, multipart_chunksize=max(part if args.part_mb else 8 * MiB,
                                                                             5 * MiB))
        s3 = world.boto3()
        s3.create_bucket(Bucket="bench")
        port = free_port()
        moto = moto_server(port)
        plain = None
        if moto is not None:
            plain = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="x",
                                 aws_secret_access_key="y", region_name="us-east-1",
                                 config=Config(retries={"max_attempts": 1}))
            plain.create_bucket(Bucket="bench")

        times: dict[str, list[float]] = {k: [] for k in ("s3 up", "lib up", "s3 down", "lib down", "moto up",
                                                           "moto down")}
        with world.net.client(key_file=world.key_file) as lib:
            for rep in range(args.reps):
                t = time.perf_counter()
                s3.upload_file(str(data), "bench", f"obj{rep}", Config=cfg)
                times["s3 up"].append(time.perf_counter() - t)
                t = time.perf_counter()
                stored = lib.store(data)
                times["lib up"].append(time.perf_counter() - t)
                out = root / f"down{rep}"
                t = time.perf_counter()
                s3.download_file("bench", f"obj{rep}", str(out), Config=cfg)
                times["s3 down"].append(time.perf_counter() - t)
                out.unlink()
                t = time.perf_counter()
                lib.retrieve(stored.id, out)
                times["lib down"].append(time.perf_counter() - t)
                out.unlink()
                if plain is not None:
                    t = time.perf_counter()
                    plain.upload_file(str(data), "bench", f"obj{rep}", Config=cfg)
                    times["moto up"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    plain.download_file("bench", f"obj{rep}", str(out), Config=cfg)
                    times["moto down"].append(time.perf_counter() - t)
                    out.unlink()
                lib.remove(stored.id)
                s3.delete_object(Bucket="bench", Key=f"obj{rep}")

        def rate(key: str) -> float:
            return size / statistics.median(times[key]) / MiB

        rows = [
            ("upload: boto3 via tensorage s3 / ObjectClient.store", f"{rate('s3 up'):.1f} MiB/s",
             f"{rate('lib up'):.1f} MiB/s", f"{rate('s3 up') / rate('lib up'):.2f}x", ">= 0.9x"),
            ("download: boto3 via tensorage s3 / ObjectClient.retrieve", f"{rate('s3 down'):.1f} MiB/s",
             f"{rate('lib down'):.1f} MiB/s", f"{rate('s3 down') / rate('lib down'):.2f}x", ">= 0.9x"),
        ]
        if plain is not None:
            rows += [
                ("context upload: tensorage s3 / moto_server", f"{rate('s3 up'):.1f} MiB/s",
                 f"{rate('moto up'):.1f} MiB/s", f"{rate('s3 up') / rate('moto up'):.2f}x", "-"),
                ("context download: tensorage s3 / moto_server", f"{rate('s3 down'):.1f} MiB/s",
                 f"{rate('moto down'):.1f} MiB/s", f"{rate('s3 down') / rate('moto down'):.2f}x", "-"),
            ]
        else:
            console.print("[yellow]moto_server not installed (pip install 'moto[server]'): no context rows[/]")
        mode = f"{args.part_mb} MiB parts and ranges" if args.part_mb else "one request each way"
        report(f"tensorage s3, {args.size_mb} MiB objects, {mode}, median of {args.reps}", rows)
        up, down = rate("s3 up") / rate("lib up"), rate("s3 down") / rate("lib down")
        context = (f"; moto_server {rate('moto up'):.0f} up, {rate('moto down'):.0f} down MiB/s" if plain is not None
                   else "")
        headline(f"boto3 upload through tensorage s3, {args.size_mb} MiB, {mode} (download {rate('s3 down'):.0f} vs "
                 f"{rate('lib down'):.0f} MiB/s, {down:.2f}×{context})", rate("s3 up"), "MiB/s", rate("lib up"),
                 "tensorage store (the client library) of the same bytes", "≥ 0.9× up and down",
                 up >= 0.9 and down >= 0.9)
    finally:
        if moto is not None:
            moto.terminate()
        world.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
