"""Which interface an app speaks, decided right after its import (also under
``--check-config``), so that an ASGI app given to WSGI workers (or the reverse) is
one clear line and exit 2 instead of a TypeError on every request.

The verdict is firm only when the evidence is (DESIGN27 §1):

- a coroutine function (the object itself, or its type's ``__call__``; asgiref's
  ``markcoroutinefunction`` counts): ASGI 3;
- a class taking one argument, or a sync callable of one parameter: ASGI 2, refused
  either way (wrap it with asgiref);
- a sync callable of exactly two required positional parameters: WSGI;
- a sync callable of three: probably ASGI (a wrapper returning a coroutine);
- anything without a signature: the configured interface is trusted.
"""

import inspect

ASGI, ASGI2, WSGI, MAYBE_ASGI, UNKNOWN = "asgi", "asgi2", "wsgi", "maybe-asgi", "unknown"


def _is_coroutine_function(f):
    if inspect.iscoroutinefunction(f):
        return True
    try:  # asgiref's marker, before Python 3.12 has its own
        from asgiref.sync import iscoroutinefunction
    except Exception:  # noqa: BLE001 - asgiref absent or broken: no marker
        return False
    try:
        return bool(iscoroutinefunction(f))
    except Exception:  # noqa: BLE001
        return False


def _positional(f, skip_self):
    """(required, total) positional parameters of ``f``, or None without a signature."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if skip_self and params:
        params = params[1:]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return None
    required = sum(1 for p in params if p.default is p.empty)
    return required, len(params)


def classify(app):
    """One of ASGI, ASGI2, WSGI, MAYBE_ASGI, UNKNOWN."""
    if inspect.isclass(app):
        counts = _positional(app.__init__, skip_self=True)
        if counts is None:
            return UNKNOWN
        return WSGI if counts[0] == 2 else ASGI2 if counts[0] == 1 else UNKNOWN
    if _is_coroutine_function(app):
        return ASGI
    if not (inspect.isfunction(app) or inspect.ismethod(app)):
        call = getattr(type(app), "__call__", None)
        if call is None:
            return UNKNOWN
        if _is_coroutine_function(call):
            return ASGI
    if inspect.isbuiltin(app):
        return UNKNOWN
    # A bound method's or an instance's signature already leaves `self` out.
    counts = _positional(app, skip_self=False)
    if counts is None:
        return UNKNOWN
    required, total = counts
    if required == 2:
        return WSGI
    if required == 3:
        return MAYBE_ASGI
    if required == 1 and total == 1:
        return ASGI2
    return UNKNOWN


def _kind_of(app):
    if inspect.isfunction(app) or inspect.ismethod(app):
        return "async def"
    return "async __call__"


def _django(app, name):
    return any(c.__name__ == name and c.__module__.startswith("django.") for c in type(app).__mro__)


def check(app, spec, interface):
    """None when ``app`` may be served by ``interface`` ("wsgi" or "asgi"), else the
    one line that says what to do."""
    verdict = classify(app)
    if verdict == ASGI2:
        return (
            f'"{spec}" is an ASGI 2 app (a class, or a callable of one argument), which '
            "ferricorn does not serve: wrap it with "
            "asgiref.compatibility.guarantee_single_callable"
        )
    if interface == "wsgi" and verdict in (ASGI, MAYBE_ASGI):
        what = "a Django ASGIHandler" if _django(app, "ASGIHandler") else _kind_of(app)
        hint = ""
        module = spec.split(":", 1)[0]
        if module.endswith(".asgi"):
            hint = f", or serve {module[:-5]}.wsgi:application with WSGI workers"
        return (
            f'"{spec}" is an ASGI app ({what}); its workers are WSGI: add -k asgi '
            f'(or [workers] interface = "asgi"){hint}'
        )
    if interface == "asgi" and verdict == WSGI:
        what = "a Django WSGIHandler" if _django(app, "WSGIHandler") else "environ, start_response"
        module = spec.split(":", 1)[0]
        target = "an ASGI app"
        if module.endswith(".wsgi"):
            target = f"{module[:-5]}.asgi:application"
        return (
            f'"{spec}" is a WSGI app ({what}) and -k asgi was given: drop -k asgi, '
            f"or serve {target}"
        )
    return None
