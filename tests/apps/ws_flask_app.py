"""A Flask-Sock echo app, as its README shows it, for tests/worker_socket.rs."""
from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())
