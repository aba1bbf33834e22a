"""The Quart app of tests/asgi_quart.rs (ASGI, issue 27): GET / answers a page with
the worker's pid; the WebSocket /echo echoes text as text and binary as binary."""
import os

from quart import Quart, websocket

app = Quart(__name__)


@app.get("/")
async def index():
    return {"hello": "quart", "pid": os.getpid()}


@app.websocket("/echo")
async def echo():
    while True:
        await websocket.send(await websocket.receive())
