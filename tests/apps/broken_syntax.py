def app(environ, start_response)
    return [b"oops"]
