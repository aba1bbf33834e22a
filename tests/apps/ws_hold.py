"""A WSGI app that takes the socket the way gunicorn hands it over
(environ["gunicorn.socket"]), answers the RFC 6455 handshake itself and then echoes
raw bytes until the client closes: one blocked recv per connection, for
tests/websocket_ops.rs's 2,000 idle WebSockets (the master's memory is measured,
not a WebSocket library's)."""
import base64
import hashlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def app(environ, start_response):
    sock = environ["gunicorn.socket"]
    key = environ["HTTP_SEC_WEBSOCKET_KEY"].encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)
    start_response("200 OK", [])
    return []
