"""Services the app attaches to: a headless engine serving a local Unix socket.

A front-end layer, like the console and the app: the engine knows nothing of it. The
service side (`server`) wraps the engine's sink and answers on the socket; the attach
side (`client`, `proxies`) implements the service protocols the app already uses
(msi_tui.engine.service), so the app runs unchanged on a service in another process.
`protocol` is the wire format, documented in docs/services.md.
"""
