"""One real devnet world for the S3 tests: miner processes, a validator gateway, the devnet's
`client` wallet, and a real `tensorage s3` process serving S3 on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .objectnet import ObjectNet
from .subnet import wait_for

MINERS = 6
MINER_GB = 0.06
VALIDATOR_ARGS = ("--seconds_per_round", "3600", "--seconds_per_weights", "600", "--gateway.shard_mb", "1",
                  "--gateway.repair_s", "3600", "--gateway.quota_gb", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = ObjectNet(root / "devnet", MINERS, MINER_GB, VALIDATOR_ARGS)
        self.key_file = root / "keys" / "client.key"
        self.state = root / "s3state"
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self) -> None:
        self.net.start()
        self.start_s3()

    def start_s3(self) -> None:
        self.port = free_port()
        self.log = self.root / "s3.log"
        seen = self.log.stat().st_size if self.log.exists() else 0  # a restart appends: read only its lines
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tensorage", "s3", "--s3.port", str(self.port),
                                          "--s3.dir", str(self.state), "--key_file", str(self.key_file),
                                          *self.net.flags], stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "COLUMNS": "200"})
        wait_for(lambda: "serving S3" in self.log.read_bytes()[seen:].decode() or self.proc.poll() is not None, 120,
                 "tensorage s3 to serve")
        assert self.proc.poll() is None, self.log.read_bytes()[seen:].decode()

    def stop_s3(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def close(self) -> None:
        try:
            self.stop_s3()
        finally:
            self.net.close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> tuple[str, str]:
        data = json.loads((self.state / "tensorage-s3.json").read_text())
        return data["access_key_id"], data["secret_access_key"]

    def boto3(self, secret: Optional[str] = None, **config):
        import boto3
        from botocore.config import Config

        access, real = self.credentials
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=access,
                            aws_secret_access_key=secret or real, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, **config))

    def env(self) -> dict[str, str]:
        """aws-cli's environment: these credentials, nothing from the user's ~/.aws."""
        access, secret = self.credentials
        return {**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
