"""HAProxy (Debian's package) in front of gateways on hosts of their own, as ``compose.yaml``
runs it: devices connect to one port on this host, each connection goes whole to one
gateway (TCP mode), and a gateway whose ``/readyz`` fails (cut from Kafka, frozen, dead) gets
no new connections and loses the ones it has, whose devices connect again and land on a
ready gateway."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import textwrap
from pathlib import Path

from tests.e2e.gateway_harness import track
from tests.faults.stack import AppProcess


class Balancer:
    """One HAProxy process listening on ``host:port`` for ``gateways``' edge port ``port``."""

    def __init__(self, host: str, port: int, gateways: list[AppProcess], folder: Path) -> None:
        self.host, self.port, self.gateways, self.folder = host, port, gateways, folder
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        servers = "".join(
            f"    server {gateway.name} {gateway.address}:{self.port} "
            f"check port {gateway.http_port} inter 500ms fall 2 rise 2 "
            "on-marked-down shutdown-sessions\n"
            for gateway in self.gateways
        )
        return (
            textwrap.dedent(
                f"""\
                defaults
                    mode tcp
                    timeout connect 2s
                    timeout client 10m
                    timeout server 10m
                frontend mqtt
                    bind {self.host}:{self.port}
                    default_backend gateways
                backend gateways
                    balance leastconn
                    option httpchk
                    http-check send meth GET uri /readyz
                """
            )
            + servers
        )

    def start(self) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        path = self.folder / "haproxy.cfg"
        path.write_text(self.config())
        with (self.folder / "haproxy.log").open("ab") as log:
            self.process = track(
                subprocess.Popen([binary, "-f", str(path), "-db"], stdout=log, stderr=log)
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
