"""Views that answer as Django apps behind nginx do: a protected download
(X-Accel-Redirect, with the real type, a cookie and Expires), an SSE stream with
X-Accel-Buffering: no, and a plain answer carrying every X-Accel-* control field."""
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import http_date

EXPIRES = 2114380800  # 2037-01-01


def protected(request, name):
    # HttpResponse() would say text/html: the file's real type is the view's to give.
    response = HttpResponse(content_type="application/pdf")
    response["X-Accel-Redirect"] = "/protected/" + name
    response["Content-Disposition"] = 'attachment; filename="report.pdf"'
    response["Cache-Control"] = "private, max-age=60"
    response["Expires"] = http_date(EXPIRES)
    response.set_cookie("downloaded", "yes")
    return response


def events(request):
    gate = request.GET["gate"]

    def stream():
        yield "data: one\n\n"
        with open(gate) as f:  # blocks until the test opens the FIFO to write
            f.read()
        yield "data: two\n\n"

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"
    response["Cache-Control"] = "no-cache"
    return response


def controls(request):
    response = HttpResponse("plain answer", content_type="text/plain")
    response["X-Accel-Buffering"] = "yes"
    response["X-Accel-Expires"] = "60"
    response["X-Accel-Limit-Rate"] = "0"
    response["X-Accel-Charset"] = "utf-8"
    return response
