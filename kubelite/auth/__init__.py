"""Authorization, service-account tokens and the RBAC machinery of the API server."""
