"""RFC 8441 (WebSockets over HTTP/2) against tests/apps/ws_echo.py, frame by frame:
the `h2` package for the HTTP/2 frames (SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended
CONNECT with `:protocol = websocket`), `wsproto` for the WebSocket frames inside DATA.

    python h2_client.py HOST PORT               (h2c, prior knowledge)
    python h2_client.py HOST PORT --tls CERT    (TLS, ALPN h2)

Checks: text/binary echo, a fragmented message, ping/pong, a 16 MiB message (HTTP/2
flow control both ways), two WebSockets at once on one connection, a close code.
Prints one "ok ..." line per check; any failure raises (exit 1)."""
import argparse
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

MIB = 1024 * 1024


class H2:
    """One HTTP/2 connection; WebSocket streams on it, each with a wsproto Connection."""

    def __init__(self, sock):
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        # Large windows: a 16 MiB message needs no WINDOW_UPDATE round trip per 64 KiB.
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 8 * MIB})
        self.conn.increment_flow_control_window(64 * MIB)
        self.flush()
        self.connect_protocol = None
        self.responses = {}  # stream id -> headers dict
        self.ws = {}  # stream id -> wsproto Connection
        self.inbox = {}  # stream id -> [wsproto events]
        self.ended = set()
        self.pongs = {}  # stream id -> [pong payloads]
        self.resets = {}  # stream id -> RST_STREAM error code
        while self.connect_protocol is None:
            self.pump()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise AssertionError("server closed the HTTP/2 connection")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                s = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if s is not None:
                    self.connect_protocol = s.new_value
                elif self.connect_protocol is None:
                    self.connect_protocol = 0
            elif isinstance(ev, h2.events.ResponseReceived):
                self.responses[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                ws = self.ws[ev.stream_id]
                if ws.state is ConnectionState.CLOSED:
                    continue  # the stream's end after the closing handshake
                ws.receive_data(ev.data)
                self.inbox[ev.stream_id].extend(ws.events())
            elif isinstance(ev, h2.events.StreamReset):
                self.ended.add(ev.stream_id)
                self.resets[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
        self.flush()

    def open(self, authority, scheme, path):
        assert self.connect_protocol == 1, "no SETTINGS_ENABLE_CONNECT_PROTOCOL=1"
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            sid,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", scheme),
                (":path", path),
                (":authority", authority),
                ("sec-websocket-version", "13"),
                ("origin", f"{scheme}://{authority}"),
            ],
        )
        self.flush()
        self.ws[sid] = Connection(ConnectionType.CLIENT)
        self.inbox[sid] = []
        self.pongs[sid] = []
        while sid not in self.responses:
            assert sid not in self.ended, f"stream {sid} ended before an answer"
            self.pump()
        status = self.responses[sid][":status"]
        assert status == "200", f"CONNECT answered {status}: {self.responses[sid]}"
        assert "sec-websocket-accept" not in self.responses[sid], self.responses[sid]
        return sid

    def send(self, sid, event):
        data = self.ws[sid].send(event)
        while data:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump()  # wait for WINDOW_UPDATE
                continue
            self.conn.send_data(sid, data[:room])
            data = data[room:]
            self.flush()

    def next_event(self, sid):
        while not self.inbox[sid]:
            assert sid not in self.ended, f"stream {sid} ended"
            self.pump()
        return self.inbox[sid].pop(0)

    def message(self, sid):
        """The next whole message (text or bytes); answers pings and notes pongs on
        the way (the app's library may send its pong before or after an echo)."""
        parts, kind = [], None
        while True:
            ev = self.next_event(sid)
            if isinstance(ev, Ping):
                self.send(sid, ev.response())
                continue
            if isinstance(ev, Pong):
                self.pongs[sid].append(ev.payload)
                continue
            assert isinstance(ev, Message), f"expected a message, got {ev!r}"
            kind = type(ev)
            parts.append(ev.data)
            if ev.message_finished:
                return ("" if kind is TextMessage else b"").join(parts)


def check_echo(c, sid):
    c.send(sid, TextMessage("hello over RFC 8441 \u00e9\u2603"))
    assert c.message(sid) == "hello over RFC 8441 \u00e9\u2603"
    c.send(sid, BytesMessage(bytes(range(256))))
    assert c.message(sid) == bytes(range(256))
    c.send(sid, TextMessage("frag", message_finished=False))
    c.send(sid, Ping(b"between fragments"))
    c.send(sid, TextMessage("mented", message_finished=True))
    assert c.message(sid) == "fragmented"
    while not c.pongs[sid]:
        ev = c.next_event(sid)
        assert isinstance(ev, Pong), ev
        c.pongs[sid].append(ev.payload)
    assert c.pongs[sid].pop(0) == b"between fragments", c.pongs[sid]
    print("ok echo, fragments, ping/pong on stream", sid)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--tls", metavar="CERT")
    args = p.parse_args()
    sock = socket.create_connection((args.host, args.port), timeout=60)
    scheme = "http"
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.tls)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=args.host)
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        scheme = "https"
    authority = f"{args.host}:{args.port}"
    c = H2(sock)
    print("ok SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")

    a = c.open(authority, scheme, "/echo")
    b = c.open(authority, scheme, "/echo")
    check_echo(c, a)
    check_echo(c, b)
    # Interleaved: each stream gets its own echo back.
    c.send(a, TextMessage("to a"))
    c.send(b, TextMessage("to b"))
    assert c.message(b) == "to b" and c.message(a) == "to a"
    print("ok two WebSockets on one HTTP/2 connection")

    big = os.urandom(16 * MIB)
    c.send(a, BytesMessage(big))
    assert c.message(a) == big, "16 MiB echo"
    print("ok 16 MiB message through HTTP/2 flow control")

    c.send(a, CloseConnection(code=1000, reason="done"))
    ev = c.next_event(a)
    assert isinstance(ev, CloseConnection) and ev.code == 1000, ev

    d = c.open(authority, scheme, "/close/4002")
    c.send(d, TextMessage("bye 4002"))
    ev = c.next_event(d)
    assert isinstance(ev, CloseConnection), ev
    assert ev.code == 4002 and ev.reason == "bye 4002", (ev.code, ev.reason)
    try:
        c.send(d, ev.response())
    except h2.exceptions.StreamClosedError:
        print("stream", d, "closed before our close reply; resets:", c.resets)
    print("ok close code 4002")

    # The other stream still works after its neighbours closed.
    c.send(b, TextMessage("still here"))
    assert c.message(b) == "still here"
    c.send(b, CloseConnection(code=CloseReason.NORMAL_CLOSURE))
    assert isinstance(c.next_event(b), CloseConnection)
    print("resets:", c.resets)
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
