"""docker-compose.yml runs the same config files the embedded server runs. There is no Docker
engine here, so each service's command is replayed against the real nats-server binary: its
config is validated with `nats-server -t -c FILE` in the service's working directory, and the
single-node services are started for real (on free ports)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from natsdemo.tls import ensure_certs
from natsdemo.workbook.binary import nats_server_binary

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
NATS_SERVICES = {k: v for k, v in COMPOSE["services"].items() if str(v.get("image", "")).startswith("nats:")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("compose-certs")
    ensure_certs(folder, hosts=["nats-tls", "n1", "n2", "n3", "hub", "e1", "w1"])
    return folder


def _host_path(container_path: str, mounts: dict[str, Path]) -> str:
    for inside, outside in mounts.items():
        if container_path == inside or container_path.startswith(inside + "/"):
            return str(outside / container_path[len(inside) :].lstrip("/"))
    return container_path


def _replay(name: str, certs: Path, store: Path) -> tuple[list[str], Path, dict[str, str]]:
    svc = NATS_SERVICES[name]
    mounts = {}
    for vol in svc.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith("./"):
            mounts[dst] = ROOT / src[2:] if src != "./certs" else certs
    cmd = [_host_path(a, mounts) for a in svc["command"]]
    cmd = [str(store) if a == "/data" else a for a in cmd]
    workdir = svc.get("working_dir", "/")
    cwd = store if workdir == "/data" else Path(_host_path(workdir, mounts))
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    return cmd, cwd, env


def test_compose_pins_the_wheel_server_version():
    images = {v["image"] for v in NATS_SERVICES.values()}
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout
    assert images == {f"nats:{version.strip().split('v')[-1]}-alpine"}, (images, version)


def test_host_ports_are_distinct_and_on_loopback():
    ports = [p for v in COMPOSE["services"].values() for p in v.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in ports)
    host_ports = [p.split(":")[1] for p in ports]
    assert len(host_ports) == len(set(host_ports))


@pytest.mark.parametrize("name", sorted(NATS_SERVICES))
def test_service_config_is_valid(name: str, certs: Path, tmp_path: Path):
    cmd, cwd, env = _replay(name, certs, tmp_path)
    conf = cmd[cmd.index("-c") + 1]
    assert Path(conf).is_file() and Path(conf).parent == ROOT / "natsdemo" / "configs"
    out = subprocess.run(
        [nats_server_binary(), "-t", "-c", conf], cwd=cwd, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert out.returncode == 0 and "is valid" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("name", ["nats", "nats-tls"])
def test_single_node_service_starts_with_its_compose_command(name: str, certs: Path, tmp_path: Path):
    cmd, cwd, env = _replay(name, certs, tmp_path / "data")
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [nats_server_binary(), *cmd, "-a", "127.0.0.1", "-p", "-1", "-m", "-1"],
            cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin", **env},
        )
    try:
        deadline = time.monotonic() + 15
        while "Server is ready" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert "Server is ready" in text, text[-2000:]
        assert "Starting JetStream" in text
    finally:
        proc.terminate()
        proc.wait(10)
