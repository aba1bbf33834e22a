"""The Flask-Sock app of the WebSocket tests (tests/websocket_clients.rs,
tests/websocket_ops.rs, tests/browser.rs, tests/websocket_autobahn.rs,
tests/worker_socket.rs; tests/apps/ws_raw.py serves its /echo too): /echo echoes
every message, text as text and binary as binary; /close/<code> closes with that
code; /flood sends 64 KiB messages as fast as the client takes them, /flood/sent
tells how many bytes so far; / serves a page whose script opens a WebSocket to /echo
and shows the echo; /pid is the worker's pid."""
import functools
import os

from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
# 16 MiB messages are echoed (the tests send one), Autobahn's 9.x sends up to 16 MiB
# too; no server-initiated pings, so an idle connection stays byte-for-byte idle.
app.config["SOCK_SERVER_OPTIONS"] = {
    "max_message_size": 32 * 1024 * 1024,
    "ping_interval": None,
}
sock = Sock(app)

PAGE = """<!doctype html>
<title>echo</title>
<p id="state">connecting</p>
<p id="echo"></p>
<script>
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/echo");
ws.onopen = () => {
  document.getElementById("state").textContent = "open";
  ws.send("hello through ferricorn \\u00e9\\u2603");
};
ws.onmessage = (e) => {
  document.getElementById("echo").textContent = e.data;
  document.getElementById("state").textContent = "echoed";
  ws.close(1000, "seen");
};
ws.onerror = () => { document.getElementById("state").textContent = "error"; };
ws.onclose = (e) => {
  if (document.getElementById("state").textContent !== "echoed") {
    document.getElementById("state").textContent = "closed " + e.code;
  }
};
</script>
"""


@app.get("/")
def page():
    return PAGE


@app.get("/pid")
def pid():
    return str(os.getpid())


def settled(handler):
    """Returns only once simple-websocket's reader thread is done. That thread sends
    the reply to a client's close AFTER waking the handler, and the server closes the
    socket as soon as the handler returns: without the join the reply is sometimes
    lost (1 in 40 closes under gunicorn 27 gthread, more under ferricorn, whose
    worker closes sooner), an app race that is not the server's to hide."""

    @functools.wraps(handler)
    def run(ws, *args, **kwargs):
        try:
            handler(ws, *args, **kwargs)
        finally:
            ws.thread.join(10)

    return run


@sock.route("/echo")
@settled
def echo(ws):
    while True:
        ws.send(ws.receive())


@sock.route("/close/<int:code>")
@settled
def close_with(ws, code):
    """Waits for one message, then closes with `code` and the message as reason."""
    reason = ws.receive()
    ws.close(reason=code, message=reason)


FLOODED = {"bytes": 0}


@sock.route("/flood")
@settled
def flood(ws):
    chunk = bytes(65536)
    while True:
        ws.send(chunk)
        FLOODED["bytes"] += len(chunk)


@app.get("/flood/sent")
def flood_sent():
    return str(FLOODED["bytes"])
