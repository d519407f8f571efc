"""Search: the query engine, named text sets, the HTTP routers (``search.api``) and a light
Python client (``search.client``). Imports the kernel only."""
