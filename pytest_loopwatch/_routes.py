"""Which route and endpoint a framework matched for a request, read the way each one
publishes it.

Starlette and FastAPI (`route`, `endpoint`) and Litestar (`path_template`,
`route_handler`) put the match in the ASGI scope: read on the loop when a stall is
recorded, that is a dictionary lookup. Quart and Django keep it in their request object;
for them the request is matched again, off the loop, when the stall is reported.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from ._records import Request


def route_in_scope(scope: MutableMapping[str, Any], entry_root_path: str) -> str | None:
    """The matched route's path template, with the prefix of the mounts it sits under."""
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str):
        template = scope.get("path_template")  # Litestar: the whole path, prefixes included
        return template if isinstance(template, str) else None
    root_path = scope.get("root_path", "")
    mounted_under = (
        root_path[len(entry_root_path) :] if root_path.startswith(entry_root_path) else ""
    )
    return mounted_under + template


def endpoint_in_scope(scope: MutableMapping[str, Any]) -> Any:
    endpoint = scope.get("endpoint")
    if endpoint is None and "route_handler" in scope:  # Litestar: the handler's function
        endpoint = getattr(scope["route_handler"], "fn", None)
    return endpoint


def match_again(app: object, request: Request) -> tuple[str | None, Any]:
    """(route, endpoint) of `request` by the routing of `app`, a Quart app or a Django
    handler; (None, None) for any other app or a request that matches nothing."""
    if request.path is None or request.type == "lifespan":
        return None, None
    url_map = getattr(app, "url_map", None)
    if url_map is not None and hasattr(url_map, "bind"):  # Quart (Werkzeug's routing)
        try:
            rule, _ = url_map.bind("localhost").match(
                request.path,
                method=request.method,
                return_rule=True,
                websocket=request.type == "websocket",
            )
        except Exception:  # noqa: BLE001 - not found, another method, a redirect
            return None, None
        return rule.rule, getattr(app, "view_functions", {}).get(rule.endpoint)
    if type(app).__module__.startswith("django.") and "django.urls" in sys.modules:
        try:
            match = sys.modules["django.urls"].resolve(request.path)
        except Exception:  # noqa: BLE001 - Resolver404, or settings gone
            return None, None
        return "/" + match.route if match.route else None, match.func
    return None, None
