"""The search side of the versioned HTTP API: routers by scope, schemas and metrics. The app
factory that puts them behind keys lives in the entry layer (``clipdex.http``)."""
