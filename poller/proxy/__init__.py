"""The recording proxy: local clients call Mistral through poller, which records triggers.

``stream`` reads answers (content decoding, the server-sent-events side parser),
``guard`` decides which requests may pass, ``strangers`` names the keys no workspace
has, ``recorder`` writes events off the response path, ``app`` is the ASGI application
and ``server`` runs it beside polling. See docs/proxy.md.
"""
