"""The Synapse the tests and benchmarks start: one whose port another process took first
starts on another (every server of a run picks its port from the same range)."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from bridge.ops.local_synapse import LocalSynapse, PortTaken, free_loopback_port


@pytest.fixture
def held_port():
    """A loopback port another process might have taken: bound and listening here."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_loopback_port()))
        sock.listen()
        yield sock.getsockname()[1]


def synapse_on(port: int, tmp_path: Path) -> LocalSynapse:
    return LocalSynapse(
        tmp_path / "synapse", server_name="localhost", port=port, registration_files=[]
    )


def test_a_taken_port_is_told_apart_from_other_failures(held_port: int, tmp_path: Path) -> None:
    synapse = synapse_on(held_port, tmp_path)
    try:
        with pytest.raises(PortTaken) as raised:
            synapse.start()
        assert raised.value.port == held_port
    finally:
        synapse.stop()


def test_a_synapse_whose_port_was_taken_starts_on_another(held_port: int, tmp_path: Path) -> None:
    synapse = synapse_on(held_port, tmp_path)
    try:
        synapse.start_on_free_ports()
        assert synapse.port != held_port
        with urllib.request.urlopen(f"{synapse.url}/health", timeout=5) as answer:  # noqa: S310
            assert answer.status == 200
    finally:
        synapse.stop()
