"""App access: how VS Code, an environment's ports and its browser terminal reach a browser.

1. An app never runs on dev8's origin: browsers open it on a host of its own
   (``<app>--<env>--<user>.<app domain>``, hosts.py), reached by a one-time ticket
   (sessions.py); dev8's origin serves apps only to bearer-token clients (proxy.py).
2. Only the owner (or whoever a port is shared with, core/sharing.py) opens an app;
   everyone else gets the answer for an environment that does not exist (auth.py).
3. dev8's cookies and Authorization header are stripped before anything is forwarded
   into an environment, over its SSH connection (tunnels.py, ptysessions.py).
"""
