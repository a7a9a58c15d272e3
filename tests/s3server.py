"""A real S3-compatible server for tests: moto's server on a free local port.

``moto_s3()`` starts it (in a thread of the test process: worker subprocesses reach it over
HTTP like any S3 endpoint), points the standard AWS variables at it (dummy credentials,
``AWS_ENDPOINT_URL_S3``: what s3fs, boto3 and tunebook's workers read) and stops it at the end.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class S3:
    """A running server: its endpoint and a boto3 client to look inside buckets."""

    endpoint: str
    client: Any

    def bucket(self) -> str:
        """A new, empty bucket of its own for one test."""
        name = f"tb-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``, sorted."""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_s3() -> Iterator[S3]:
    """Start moto's S3 server and set ``AWS_*`` for this process and its children."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    boto3 = pytest.importorskip("boto3")
    s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'tunebook[s3]')")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # File systems opened earlier in this process would still talk to an earlier server.
    s3fs.S3FileSystem.clear_instance_cache()
    from tunebook.execution import ckptstore

    ckptstore._open.cache_clear()
    try:
        yield S3(endpoint, boto3.client("s3", endpoint_url=endpoint))
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
