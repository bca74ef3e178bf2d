"""The test harness's port choice: servers of the tests' own processes get ports no
outgoing connection can take meanwhile."""

from tests.harness import ephemeral_ports, free_port


def test_a_free_port_is_below_the_kernels_ephemeral_range_and_none_of_those_to_avoid():
    # Chaos (40 processes started at once): an ops port chosen from the ephemeral range was
    # taken by another process's Kafka connection before the server bound it (seed 202409).
    low, _ = ephemeral_ports()
    avoid = {free_port() for _ in range(20)}
    ports = [free_port(avoid) for _ in range(200)]
    assert all(20_000 <= port < low for port in ports)
    assert not avoid & set(ports)
