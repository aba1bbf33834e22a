"""The FastAPI app of tests/asgi_fastapi.rs (ASGI, issue 27), written the way FastAPI's
docs show each feature:

- GET /json: JSON, with the worker's pid and whether the handler runs in a Task on
  the interpreter's main thread.
- lifespan: `yield {"n": 27, ...}`; GET /state reads it from `request.state`;
  shutdown appends a line to $ASGI_LIFESPAN_LOG when set.
- POST /tasks/{key}: a BackgroundTasks task records `key` after the response;
  GET /tasks lists what the tasks recorded.
- GET /file: a FileResponse of $ASGI_BIG_FILE (Starlette sends it with
  `http.response.pathsend` when the scope offers it); its `x-pathsend` field says
  whether it was offered.
- GET /sleep/{secs}: `await asyncio.sleep(secs)`; a cancellation (the timeout) is
  counted, GET /cancelled tells how many.
- POST /upload: the body read as a stream (`request.stream()`): its size, the sum
  of its bytes and how many chunks it came in.
- GET /scope/{rest}: the scope's fields as the app got them (path, raw_path,
  root_path, query_string, client, scheme, http_version, asgi).
- WebSocket /echo echoes text as text and binary as binary; /close/{code} waits for
  one message and closes with `code` and that message as reason (the protocol of
  tests/ws_clients/echo_client.py and h2_client.py, as tests/apps/ws_echo.py);
  /deny answers the handshake with a 401 page (the denial-response extension);
  /reject closes before accepting (403).
"""
import asyncio
import os
import threading
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, PlainTextResponse

RECORDED = []
CANCELLED = {"n": 0}


@asynccontextmanager
async def lifespan(app):
    yield {"n": 27, "started_in": os.getpid()}
    log = os.environ.get("ASGI_LIFESPAN_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"shutdown {os.getpid()}\n")


app = FastAPI(lifespan=lifespan)


@app.get("/json")
async def json_view():
    return {
        "hello": "fastapi",
        "pid": os.getpid(),
        "in_task": asyncio.current_task() is not None,
        "main_thread": threading.current_thread() is threading.main_thread(),
    }


@app.get("/state")
async def state(request: Request):
    return {
        "n": request.state.n,
        "started_in": request.state.started_in,
        "pid": os.getpid(),
    }


def record(key: str):
    RECORDED.append(key)


@app.post("/tasks/{key}")
async def add_task(key: str, tasks: BackgroundTasks):
    tasks.add_task(record, key)
    return {"queued": key}


@app.get("/tasks")
async def list_tasks():
    return {"recorded": RECORDED}


@app.get("/file")
async def big_file(request: Request):
    offered = "http.response.pathsend" in request.scope.get("extensions", {})
    return FileResponse(
        os.environ["ASGI_BIG_FILE"],
        media_type="application/octet-stream",
        headers={"x-pathsend": "offered" if offered else "no"},
    )


@app.get("/sleep/{secs}")
async def sleep(secs: float):
    try:
        await asyncio.sleep(secs)
    except asyncio.CancelledError:
        CANCELLED["n"] += 1
        raise
    return {"slept": secs}


@app.get("/cancelled")
async def cancelled():
    return {"cancelled": CANCELLED["n"]}


@app.post("/upload")
async def upload(request: Request):
    size = total = chunks = 0
    async for chunk in request.stream():
        size += len(chunk)
        total += sum(chunk)
        chunks += 1 if chunk else 0
    return {"size": size, "sum": total, "chunks": chunks}


@app.get("/scope/{rest:path}")
async def scope_fields(request: Request, rest: str):
    s = request.scope
    return {
        "path": s["path"],
        "raw_path": s["raw_path"].decode("latin-1"),
        "root_path": s["root_path"],
        "query_string": s["query_string"].decode("latin-1"),
        "client": s["client"],
        "scheme": s["scheme"],
        "http_version": s["http_version"],
        "asgi": s["asgi"],
        "rest": rest,
        "url_path": request.url.path,
    }


@app.websocket("/echo")
async def echo(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                await ws.send_text(msg["text"])
            else:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        return


@app.websocket("/close/{code}")
async def close_with(ws: WebSocket, code: int):
    await ws.accept()
    reason = await ws.receive_text()
    await ws.close(code=code, reason=reason)


@app.websocket("/deny")
async def deny(ws: WebSocket):
    await ws.send_denial_response(
        PlainTextResponse("no ticket", status_code=401, headers={"x-denied": "yes"})
    )


@app.websocket("/reject")
async def reject(ws: WebSocket):
    await ws.close(code=1008)
