// A sample receiver for poller's webhooks (Node.js, `npm ci && node server.js`).
//
// It verifies each request's Standard Webhooks signature with the `standardwebhooks`
// package and deduplicates by `webhook-id`: poller delivers every event at least once,
// under the same id every time, so the id is what makes a receiver exactly-once.
//
// Environment: WEBHOOK_SECRET (the sink's whsec_... secret, required), PORT (9000; 0 picks
// a free one), HOST (0.0.0.0). It prints one JSON line per request on standard output:
// {"listening": PORT} first, then {"id", "type", "path", "verified", "duplicate", "data"}.
// A bad signature is answered 401, a duplicate 204 like a first delivery (so poller stops
// retrying it) but is not processed again.
"use strict";

const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const MAX_BODY = 1024 * 1024;
const REMEMBERED = 100000; // ids kept for deduplication; the oldest are forgotten first

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error("receiver: set WEBHOOK_SECRET to the sink's whsec_... secret");
  process.exit(2);
}
const webhook = new Webhook(secret);
const seen = new Set();

function remember(id) {
  seen.add(id);
  if (seen.size > REMEMBERED) {
    seen.delete(seen.values().next().value);
  }
}

function answer(res, status, body) {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function handle(req, body, res) {
  const id = req.headers["webhook-id"];
  let event;
  try {
    event = webhook.verify(body.toString("utf8"), req.headers);
  } catch (err) {
    console.log(JSON.stringify({ id, path: req.url, verified: false, error: err.message }));
    return answer(res, 401, { error: "invalid signature" });
  }
  const duplicate = seen.has(id);
  console.log(
    JSON.stringify({ id, type: event.type, path: req.url, verified: true, duplicate, data: event.data }),
  );
  if (!duplicate) {
    remember(id);
    // Process the event here: it is verified and new.
  }
  return answer(res, 204);
}

const server = http.createServer((req, res) => {
  if (req.method !== "POST") {
    return answer(res, 405, { error: "POST only" });
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      answer(res, 413, { error: "body too large" });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (size <= MAX_BODY) {
      handle(req, Buffer.concat(chunks), res);
    }
  });
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}

server.listen(Number(process.env.PORT ?? 9000), process.env.HOST ?? "0.0.0.0", () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
