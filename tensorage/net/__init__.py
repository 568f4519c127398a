"""Transport: aiohttp servers with signed-request middleware, a signed client, typed messages."""
