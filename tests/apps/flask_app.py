"""The Flask app the integration tests run under ferricorn: JSON, a form POST, a
multipart upload, a session cookie and a streamed response."""
import hashlib

from flask import Flask, Response, jsonify, request, session

app = Flask(__name__)
app.secret_key = "test-only-secret"


@app.get("/")
def index():
    return "hello from flask"


@app.post("/json")
def echo_json():
    data = request.get_json()
    return jsonify(received=data, method=request.method)


@app.post("/form")
def form():
    return jsonify(name=request.form["name"], tags=request.form.getlist("tag"))


@app.post("/upload")
def upload():
    f = request.files["file"]
    content = f.read()
    return jsonify(filename=f.filename, size=len(content), sha256=hashlib.sha256(content).hexdigest())


@app.get("/counter")
def counter():
    session["n"] = session.get("n", 0) + 1
    return jsonify(n=session["n"])


@app.get("/stream")
def stream():
    def generate():
        for i in range(5):
            yield f"chunk {i}\n"
    return Response(generate(), mimetype="text/plain")


@app.route("/admin/login/", methods=["GET", "POST"])
def admin_login():
    """A view under a `[[route]]` prefix: says it ran, and how much body it read."""
    return f"flask admin login, {len(request.get_data())} bytes"


@app.get("/media/private/<path:name>")
def private_media(name):
    """What Werkzeug routes under /media/private/ (tests/routes.rs compares it with
    the front's internal mount there)."""
    return f"flask private media {name}"


# What became of each /idle-stream/<key>/ (tests/client_close.rs).
IDLE_STREAMS = {}


@app.get("/idle-stream/<key>/")
def idle_stream(key):
    """A stream that says `first` and then nothing (empty chunks, so the worker can
    look for the front's Abort) for up to a minute; its generator closed early
    (GeneratorExit) records `closed`."""
    import time

    def generate():
        IDLE_STREAMS[key] = "streaming"
        try:
            yield b"first\n"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.02)
                yield b""
            IDLE_STREAMS[key] = "timed out"
        except GeneratorExit:
            IDLE_STREAMS[key] = "closed"
            raise
    return Response(generate(), mimetype="text/plain")


@app.get("/idle-stream/<key>/state/")
def idle_stream_state(key):
    return jsonify(state=IDLE_STREAMS.get(key, "unknown"))


@app.get("/slow-stream/")
def slow_stream():
    """Five chunks, 0.2 s apart (tests/client_close.rs: pipelining behind it)."""
    import time

    def generate():
        for i in range(5):
            yield f"slow {i}\n"
            time.sleep(0.2)
    return Response(generate(), mimetype="text/plain")
