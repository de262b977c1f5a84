"""The transports: each adapts its client connections to ``IConnection``.

``websocket`` (``/ws``), ``bridge`` (HTTP: ``/bridge/*``) and ``ssh`` (the
built-in SSH server's ``wingman`` subsystem). A transport imports the Router
and ``connection``; nothing of the gateway imports a transport but the
wiring (``service``) and the settings table (``config``, which takes the
bridge's own option checks from ``bridge.options``).
"""
