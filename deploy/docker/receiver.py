"""A sample webhook receiver: checks poller's Standard Webhooks signature, prints each event.

Standard library only. ``WEBHOOK_SECRET`` is the sink's ``whsec_...`` secret, ``PORT`` the
port (9000). A request whose signature does not verify gets 401; a verified one gets 204
and one JSON line on standard output.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300  # seconds a webhook-timestamp may be off


def verify(secret: bytes, headers: dict[str, str], body: bytes, now: float) -> bool:
    """Whether one of the ``v1,`` signatures is the HMAC-SHA256 of ``id.timestamp.body``."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE:
        return False
    mac = hmac.new(secret, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    return any(
        hmac.compare_digest(expected, sig.removeprefix("v1,"))
        for sig in headers.get("webhook-signature", "").split()
        if sig.startswith("v1,")
    )


def main() -> None:
    secret = base64.b64decode(os.environ["WEBHOOK_SECRET"].removeprefix("whsec_"))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not verify(secret, headers, body, time.time()):
                self.send_response(401)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            event = json.loads(body)
            line = {"path": self.path, "id": event["id"], "type": event["type"]}
            print(json.dumps({**line, "data": event["data"]}), flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "9000"))), Handler)
    print(f"receiver: listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
