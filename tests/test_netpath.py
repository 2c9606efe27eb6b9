"""predis_server/_netpath.c: a read fed to hiredis and drained in one call, and the lone
batch's writes. (tests/test_protocol.py checks the parser built on ``receive`` against the
Redis-exact parser on random splits; these pin the C functions' own contracts.)"""
from __future__ import annotations

import pytest

from predis_server import fastpath
from tests.resp import encode_command

hiredis = pytest.importorskip("hiredis")
net = fastpath.net
pytestmark = pytest.mark.skipif(net is None, reason="the C extension was not built")


@pytest.mark.parametrize("data", [b"PING\r\n", b"*1234567\r\n", b"*2\r\n$4\r\nECHO\r\n$8\r\n*9999999\r\n", b""])
def test_receive_leaves_inline_text_and_huge_array_headers_to_the_python_parser(data):
    reader = hiredis.Reader()
    out = []
    assert net.receive(reader, data, out) == -1
    assert out == [] and not reader.has_data()  # nothing was fed


def test_receive_takes_complete_requests_and_reports_their_size():
    data = encode_command("SET", "k", "v" * 300) + b"*0\r\n" + encode_command("GET", "k")
    out = []
    assert net.receive(hiredis.Reader(), data, out) == len(data)
    assert out == [[b"SET", b"k", b"v" * 300], [b"GET", b"k"]]  # "*0" skipped, as Redis does


def test_receive_stops_short_of_a_request_cut_by_the_read():
    whole = encode_command("GET", "a")
    data = whole + encode_command("GET", "b")[:7]
    out = []
    assert net.receive(hiredis.Reader(), data, out) == len(whole)
    assert out == [[b"GET", b"a"]]


def test_receive_refuses_elements_that_are_not_bulk_strings():
    with pytest.raises(ValueError):
        net.receive(hiredis.Reader(), b"*2\r\n$3\r\nGET\r\n:1\r\n", [])
    with pytest.raises(hiredis.ProtocolError):
        net.receive(hiredis.Reader(), b"*1\r\n!oops\r\n", [])


class Transport:
    def __init__(self, closing: bool = False) -> None:
        self.closing = closing
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_write_outputs_writes_each_output_once_and_skips_closing_transports():
    transports = [Transport(), Transport(closing=True), Transport(), Transport()]
    outputs = [[b"+OK\r\n", b":1\r\n"], [b"$1\r\nx\r\n"], [], [b"$-1\r\n"]]
    assert net.write_outputs(outputs, transports) == (len(b"+OK\r\n:1\r\n$-1\r\n"), 2)
    assert [t.written for t in transports] == [[b"+OK\r\n:1\r\n"], [], [], [b"$-1\r\n"]]
    assert outputs == [[], [], [], []]  # as Connection.flush, a closing client's replies go


def test_write_outputs_checks_its_arguments():
    with pytest.raises(TypeError):
        net.write_outputs([[b"x"]], [])
    with pytest.raises(TypeError):
        net.write_outputs([b"x"], [Transport()])
