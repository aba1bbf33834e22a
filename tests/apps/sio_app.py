"""The Flask-SocketIO app (threading mode, as its deployment guide runs it under
gunicorn's threads) of tests/websocket_socketio.rs: `echo` answers with what it got,
`pid` with the worker's process id, so a client can tell which worker holds it."""
import os

from flask import Flask
from flask_socketio import SocketIO, emit

app = Flask(__name__)
socketio = SocketIO(app, async_mode="threading")


@app.get("/")
def index():
    return "socket.io app"


@socketio.on("echo")
def echo(data):
    emit("echo", data)


@socketio.on("pid")
def pid():
    emit("pid", os.getpid())
