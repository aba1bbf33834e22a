"""Minimal raw ASGI app for the `hello` scenarios of benches/asgi: the same 13-byte
`text/plain` body with Content-Length as the harness's WSGI hello (harness/apps/hello.py),
answered the same way by every server. Lifespan is acknowledged so that every server's
`auto` lifespan mode starts it without a warning."""

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))]


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


application = app
