"""The web dashboard at ``/dashboard/`` on the API server's port (issue 13, part 3).

The server's share is small: it hands out the front end's static files (bundled at build
time by ``make setup`` into ``build/dashboard``; like upstream's dashboard assets they carry
no cluster data and are served to anyone) and turns the evidence the page gathered into
``kubelite doctor``'s text (``POST /dashboard/api/diagnose``, for an authenticated user only).
Everything else the page shows it reads itself, with ordinary API requests made as the
logged-in user (a bearer token, or the TLS connection's client certificate), so RBAC applies.
"""

from kubelite.dashboard.server import PREFIX, dashboard_middleware, static_dir

__all__ = ["PREFIX", "dashboard_middleware", "static_dir"]
