"""The dev8 server process: ASGI app, SSH gateway and reconciler in one asyncio loop."""
