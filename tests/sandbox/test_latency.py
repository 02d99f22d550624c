"""The sandbox answers small requests in about a millisecond, not in the 40 ms of Nagle's algorithm meeting the
client's delayed ACK: uvicorn writes a response's headers and its body in two segments, and without
``TCP_NODELAY`` on the accepted socket the body waits for the ACK of the headers (issue 18, item 6: the
benchmarks make thousands of Graph requests; at 44 ms each, the sandbox was the bottleneck)."""
import socket
import statistics
import time

from m365_sandbox import server


def test_listening_sockets_are_tcp_with_nodelay():
    sock = server._bind("127.0.0.1", 0)
    try:
        # asyncio sets TCP_NODELAY on an accepted socket only when its proto is IPPROTO_TCP (not 0)
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_small_requests_on_a_kept_alive_connection_take_no_nagle_delay(sandbox, http):
    http.get(f"{sandbox.control_base}/state")      # the TLS handshake, outside the timing
    seconds = []
    for _ in range(15):
        started = time.perf_counter()
        assert http.get(f"{sandbox.control_base}/mail/counts").status_code == 200
        assert http.post(f"{sandbox.control_base}/settings", json={}).status_code == 200
        seconds.append((time.perf_counter() - started) / 2)
    assert statistics.median(seconds) < 0.030, seconds     # Linux delays an ACK 40 ms at least
