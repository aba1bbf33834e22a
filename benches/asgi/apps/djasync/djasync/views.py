"""One `async def` view returning a small JSON document (no database, no template): the
request goes through Django's ASGIHandler and the default middleware stack, and the
view itself runs on the event loop."""

from django.http import JsonResponse

ITEMS = [
    {"name": f"Item {i}", "price": f"{i * 3 + 0.99:.2f}", "sku": f"SKU-{i:05d}"}
    for i in range(12)
]


async def index(request):
    return JsonResponse({"title": "Benchmark page", "path": request.path, "items": ITEMS})
