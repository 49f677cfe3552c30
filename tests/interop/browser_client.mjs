// The page script of the browser test (tests/tests/websocket.rs): bundled with
// esbuild from the npm-installed @nats-io/nats-core, loaded by headless
// Chromium from the test's own HTTP server, it connects with `wsconnect` over
// ws:// the way a browser application does.
//
// The server URL comes in the page's query (`?server=ws://HOST:PORT`). The
// page subscribes to browser.in, checks a publish to itself with headers and a
// request/reply to its own responder, then publishes browser.ready; the test
// answers with three messages on browser.in (one larger than a browser's 4 KiB
// frames) and the page sends what it received back on browser.out. Everything
// is also written into <pre id="result"> as JSON for the test to read from the
// dumped DOM, and the page finally asks the test server for /done, which
// releases the image that holds the page's load event (so --dump-dom waits).

import { headers, wsconnect } from "@nats-io/nats-core";

const TIMEOUT_MS = 10000;

function show(result) {
  document.getElementById("result").textContent = JSON.stringify(result);
}

async function run() {
  const server = new URLSearchParams(location.search).get("server");
  const nc = await wsconnect({ servers: server, name: "rnats-browser", reconnect: false, timeout: 5000 });
  const result = { server: nc.getServer(), userAgent: navigator.userAgent };

  const incoming = nc.subscribe("browser.in", { max: 3 });
  const own = nc.subscribe("browser.self", { max: 1 });
  nc.subscribe("browser.svc", { callback: (error, message) => error || message.respond(`re: ${message.string()}`) });
  const sent = headers();
  sent.set("X-Browser", "chromium");
  nc.publish("browser.self", "to myself", { headers: sent });
  for await (const message of own) {
    result.self = { data: message.string(), header: message.headers?.get("X-Browser") ?? null };
  }
  const reply = await nc.request("browser.svc", "ping", { timeout: TIMEOUT_MS });
  result.reply = reply.string();

  nc.publish("browser.ready", "ready");
  result.received = [];
  for await (const message of incoming) {
    result.received.push({
      subject: message.subject,
      length: message.data.length,
      head: message.string().slice(0, 16),
      header: message.headers?.get("X-Test") ?? null,
    });
  }
  nc.publish("browser.out", JSON.stringify(result.received));
  await nc.flush();
  await nc.close();
  result.closed = true;
  return result;
}

try {
  show(await Promise.race([
    run(),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no result within ${TIMEOUT_MS} ms`)), TIMEOUT_MS)),
  ]));
} catch (error) {
  show({ error: `${error.name}: ${error.message}` });
}
await fetch("/done");
