"""The test harness's port choice: servers of the tests' own processes get ports no
outgoing connection can take meanwhile."""

from tests.harness import ephemeral_ports, free_port, free_ports


def test_a_free_port_is_below_the_kernels_ephemeral_range_and_none_of_those_to_avoid():
    # Chaos (40 processes started at once): an ops port chosen from the ephemeral range was
    # taken by another process's Kafka connection before the server bound it (seed 202409).
    low, _ = ephemeral_ports()
    avoid = {free_port() for _ in range(20)}
    ports = [free_port(avoid) for _ in range(200)]
    assert all(20_000 <= port < low for port in ports)
    assert not avoid & set(ports)


def test_a_set_of_free_ports_is_distinct_below_the_ephemeral_range_and_none_of_those_to_avoid():
    # CI: the gRPC ports of a test's hubs came from the kernel's port 0 (the ephemeral range)
    # and an outgoing Kafka connection took one before its server bound it.
    low, _ = ephemeral_ports()
    avoid = set(free_ports(10))
    for _ in range(50):
        ports = free_ports(12, avoid)
        assert len(set(ports)) == 12
        assert all(20_000 <= port < low for port in ports)
        assert not avoid & set(ports)
