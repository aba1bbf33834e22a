"""A Flask app for tests/accel_redirect.rs: views that answer with nginx's
X-Accel-* control fields, as apps written for nginx do.

/download?to=URL[&type=T]   X-Accel-Redirect: URL, with the Content-Type T (none
                            without it), Content-Disposition, Cache-Control, Expires
                            and a cookie set by the view
/sendfile?path=P            X-Sendfile: P, likewise
/raw?f=NAME:VALUE&f=...     exactly these fields (names may repeat), body "app body"
/controls                   a plain answer with every X-Accel-* control field
/events?gate=FIFO           an SSE stream with X-Accel-Buffering: no: one event, then
                            it blocks reading FIFO until the test writes to it, then
                            a second event
/big?n=N&progress=P         N chunks of 64 KiB with X-Accel-Buffering: no, writing
                            to P how many it has yielded
"""
from flask import Flask, Response, request

app = Flask(__name__)

EXPIRES = "Thu, 01 Jan 2037 00:00:00 GMT"


def download(field, value):
    resp = Response("the app's body, which the client must not see")
    if "type" in request.args:
        resp.headers["Content-Type"] = request.args["type"]
    else:
        del resp.headers["Content-Type"]
    resp.headers[field] = value
    resp.headers["Content-Disposition"] = 'attachment; filename="report"'
    resp.headers["Cache-Control"] = "private, max-age=60"
    resp.headers["Expires"] = EXPIRES
    resp.set_cookie("downloaded", "yes")
    return resp


@app.route("/download", methods=["GET", "HEAD", "POST"])
def accel_redirect():
    return download("X-Accel-Redirect", request.args["to"])


@app.get("/sendfile")
def x_sendfile():
    return download("X-Sendfile", request.args["path"])


@app.get("/raw")
def raw():
    resp = Response("app body", mimetype="text/plain")
    for field in request.args.getlist("f"):
        name, value = field.split(":", 1)
        resp.headers.add(name, value)
    return resp


@app.get("/controls")
def controls():
    resp = Response("plain answer", mimetype="text/plain")
    resp.headers["X-Accel-Buffering"] = "yes"
    resp.headers["X-Accel-Expires"] = "60"
    resp.headers["X-Accel-Limit-Rate"] = "0"
    resp.headers["X-Accel-Charset"] = "utf-8"
    return resp


@app.get("/events")
def events():
    gate = request.args["gate"]

    def stream():
        yield "data: one\n\n"
        with open(gate) as f:  # blocks until the test opens the FIFO to write
            f.read()
        yield "data: two\n\n"

    resp = Response(stream(), mimetype="text/event-stream")
    resp.headers["X-Accel-Buffering"] = "no"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@app.get("/big")
def big():
    n, progress = int(request.args["n"]), request.args["progress"]
    chunk = b"x" * 65536

    def stream():
        for i in range(n):
            yield chunk
            with open(progress, "w") as f:
                f.write(str(i + 1))

    resp = Response(stream(), mimetype="application/octet-stream")
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
