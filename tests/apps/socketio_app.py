"""Flask-SocketIO in threading mode, as its deployment guide runs it under gunicorn
(`-w 1 --threads 100`): Engine.IO keeps each session in the worker process that
created it, so every request of a session must reach that worker (`--sticky`).
For tests/socketio.rs and tests/websocket_clients.rs, with
tests/ws_clients/socketio_client.py.

Events: `echo` emits its data back as an `echo` event; `whoami` answers (ack) with
the worker's pid and how many events this session sent it, so a client sees which
worker holds its session and that none was lost.
"""

import os

from flask import Flask, request
from flask_socketio import SocketIO, emit

app = Flask(__name__)
socketio = SocketIO(app, async_mode="threading")

# Events seen per Socket.IO session id, in this worker.
_seen = {}


@socketio.on("connect")
def on_connect():
    _seen[request.sid] = 0


@socketio.on("disconnect")
def on_disconnect(*_reason):
    _seen.pop(request.sid, None)


@socketio.on("echo")
def on_echo(data):
    _seen[request.sid] = _seen.get(request.sid, 0) + 1
    emit("echo", data)


@socketio.on("whoami")
def on_whoami():
    return {"pid": os.getpid(), "events": _seen.get(request.sid, 0)}
