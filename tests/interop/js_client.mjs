// Runs the official JavaScript client (nats.js v3, @nats-io/transport-node)
// against a NATS server.
//
// Usage: node tests/interop/js_client.mjs nats://127.0.0.1:PORT [USER PASSWORD | --jetstream | --consumers]
//
// Given a ws:// or wss:// URL, every connection is made with nats-core's
// `wsconnect` (the transport browsers use) instead of the Node TCP transport;
// it needs a global WebSocket (Node >= 22, or Node 20 with
// --experimental-websocket). For wss:// a private CA comes from
// NODE_EXTRA_CA_CERTS.
//
// With USER and PASSWORD (for a server started with --user/--pass) it runs the
// authentication checks instead of the messaging checks; with --jetstream (for
// a server started with -js) the JetStream checks through @nats-io/jetstream,
// which is loaded only then (exit 77 when it is not installed); with --consumers
// the consumer (consumers.get, fetch, consume), KV (@nats-io/kv) and object
// store (@nats-io/obj) checks.
//
// The client library is installed by scripts/install-interop-deps into
// tests/interop/js/node_modules (pinned by tests/interop/js/package-lock.json).
// Each check opens its own connections, prints one line ("ok" or "FAIL" and the
// reason), and is bounded by a timeout, so one broken check cannot hide the
// others or hang the run. The exit code is 0 when every check passed, 1 when
// any failed, and 77 (the usual "skipped" code) when the library is missing.
//
// "Nothing else was delivered" is checked without sleeping: nats.js queues a
// PING behind everything written before it, so after the publisher and then the
// subscriber's own connection have flushed (a round trip), every message the
// server routed has already reached the subscription's callback. Subjects are
// fixed, so run one script at a time against a server.
// tests/tests/interop_clients.rs runs this script against rnats-server and, to
// validate the script, against nats-server.

import { createRequire } from "node:module";

const require_ = createRequire(import.meta.url);

// Generous bounds, so that a loaded two-core machine does not fail a correct
// server; no check asserts on how fast anything is.
const CHECK_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 4000;

let nats;
let libraryVersion;
try {
  const require = createRequire(new URL("./js/package.json", import.meta.url));
  nats = require("@nats-io/transport-node");
  libraryVersion = require("@nats-io/transport-node/package.json").version;
} catch (error) {
  console.log(
    `NOTICE: @nats-io/transport-node is not installed (${error.code ?? error.message}); run scripts/install-interop-deps`,
  );
  process.exit(77);
}
const { connect: tcpConnect, headers, AuthorizationError, NoRespondersError, RequestError, ClosedConnectionError } = nats;

class CheckFailed extends Error {
  constructor(message) {
    super(message);
    this.name = "CheckFailed";
  }
}

function expect(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function expectEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new CheckFailed(`${what}: expected ${e}, got ${a}`);
}

const encoder = new TextEncoder();
const bytes = (text) => encoder.encode(text);

// nats-core's websocket transport, loaded only for ws:// and wss:// URLs.
function loadWsConnect() {
  if (typeof WebSocket !== "function") {
    console.log("NOTICE: this Node has no global WebSocket; run it with --experimental-websocket (Node 20) or use Node >= 22");
    process.exit(77);
  }
  const require = createRequire(new URL("./js/package.json", import.meta.url));
  return require("@nats-io/nats-core").wsconnect;
}

const isWebSocketUrl = (url) => /^wss?:\/\//.test(url);
let wsconnect;

async function open(url, options = {}) {
  let connect = tcpConnect;
  if (isWebSocketUrl(url)) {
    wsconnect ??= loadWsConnect();
    connect = wsconnect;
  }
  const client = await connect({
    servers: url,
    name: "rnats-interop-js",
    timeout: 3000,
    reconnect: false,
    ...options,
  });
  // Asynchronous errors (a -ERR from the server, a parse error) fail the check
  // that owns the connection when it closes it.
  client.interopErrors = [];
  (async () => {
    for await (const status of client.status()) {
      if (status.type === "error") client.interopErrors.push(String(status.error));
    }
  })();
  return client;
}

async function closeAll(...clients) {
  for (const client of clients) {
    if (!client.isClosed()) await client.close();
    const closedWith = await client.closed();
    expect(closedWith === undefined, `connection closed with ${closedWith}`);
  }
  for (const client of clients) {
    expectEqual(client.interopErrors, [], "asynchronous errors");
  }
}

// A subscription whose messages are collected, in arrival order, in `.collected`
// (not `.received`: SubscriptionImpl counts messages there).
function collect(client, subject, options = {}) {
  const received = [];
  const subscription = client.subscribe(subject, {
    ...options,
    callback: (error, message) => {
      if (error) received.push({ error: String(error) });
      else received.push(message);
    },
  });
  subscription.collected = received;
  return subscription;
}

async function waitFor(predicate, what) {
  const deadline = Date.now() + REQUEST_TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new CheckFailed(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function expectNoResponders(promise, what) {
  try {
    await promise;
  } catch (error) {
    const noResponders =
      error instanceof NoRespondersError ||
      (error instanceof RequestError && error.isNoResponders());
    if (noResponders) return;
    throw new CheckFailed(`${what} failed with ${error.name}: ${error.message}, not no-responders (503)`);
  }
  throw new CheckFailed(`${what} got a reply`);
}

async function checkConnect(url) {
  const client = await open(url);
  const info = client.info;
  for (const key of ["server_id", "version", "max_payload", "headers", "proto", "client_id"]) {
    expect(info !== undefined && key in info, `INFO lacks ${key}: ${JSON.stringify(info)}`);
  }
  expect(info.headers === true, `INFO headers is ${info.headers}, the client needs true`);
  expect(client.getServer().length > 0, "getServer() is empty");
  const roundTripMs = await client.rtt();
  expect(roundTripMs >= 0, "rtt failed");
  await closeAll(client);
  let detail = `server ${info.version}, max_payload ${info.max_payload}`;
  // Not a failure: nats.js enables features (KV, the new consumer API, ...) by
  // comparing this version with the one each needs, so a drop-in should report
  // nats-server's.
  const [major, minor] = info.version.split(".").map(Number);
  if (major < 2 || (major === 2 && minor < 9)) {
    detail += " (note: clients gate features on INFO version; nats-server 2.15.1 reports 2.15.1)";
  }
  return detail;
}

async function checkLiteralSubject(url) {
  const subscriberClient = await open(url);
  const publisher = await open(url);
  const subscription = collect(subscriberClient, "interop.orders.created");
  await subscriberClient.flush();
  for (const [subject, payload] of [
    ["interop.orders.created", "first"],
    ["interop.orders.updated", "not for us"],
    ["interop.orders.created.eu", "not for us either"],
    ["interop.orders", "nor this"],
    ["interop.orders.created", "second"],
    ["interop.orders.created", ""],
  ]) {
    publisher.publish(subject, payload);
  }
  await publisher.flush();
  await subscriberClient.flush();
  const received = subscription.collected;
  expectEqual(received.map((m) => m.string()), ["first", "second", ""], "payloads");
  for (const message of received) {
    expectEqual(message.subject, "interop.orders.created", "subject");
    expect(!message.reply, `unexpected reply subject ${message.reply}`);
    expect(!message.headers, "unexpected headers");
  }
  await closeAll(subscriberClient, publisher);
  return "3 of 6 publishes matched";
}

async function checkWildcards(url) {
  const subscriberClient = await open(url);
  const publisher = await open(url);
  const star = collect(subscriberClient, "interop.*.price");
  const full = collect(subscriberClient, "interop.market.>");
  await subscriberClient.flush();
  const subjects = [
    "interop.eur.price",
    "interop.market.eur",
    "interop.market.eur.price",
    "interop.market.price",
    "interop.price",
    "interop.a.b.price",
    "interop.market",
    "other.usd.price",
  ];
  subjects.forEach((subject, index) => publisher.publish(subject, String(index)));
  await publisher.flush();
  await subscriberClient.flush();
  expectEqual(
    star.collected.map((m) => m.subject),
    ["interop.eur.price", "interop.market.price"],
    "'*' subscription",
  );
  expectEqual(
    full.collected.map((m) => m.subject),
    ["interop.market.eur", "interop.market.eur.price", "interop.market.price"],
    "'>' subscription",
  );
  await closeAll(subscriberClient, publisher);
  return "'*' got 2, '>' got 3";
}

async function checkQueueGroup(url) {
  const members = [await open(url), await open(url), await open(url)];
  const observerClient = await open(url);
  const publisher = await open(url);
  const subscriptions = members.map((m) => collect(m, "interop.jobs", { queue: "workers" }));
  const observer = collect(observerClient, "interop.jobs");
  for (const client of [...members, observerClient]) await client.flush();
  const messageCount = 60;
  for (let index = 0; index < messageCount; index++) publisher.publish("interop.jobs", `job-${index}`);
  await publisher.flush();
  for (const client of [...members, observerClient]) await client.flush();
  const expected = Array.from({ length: messageCount }, (_, index) => `job-${index}`).sort();
  const delivered = subscriptions.flatMap((s) => s.collected.map((m) => m.string())).sort();
  expectEqual(delivered, expected, "messages across the group (each exactly once)");
  expectEqual(observer.collected.map((m) => m.string()).sort(), expected, "messages to the plain subscriber beside the group");
  const counts = subscriptions.map((s) => s.collected.length);
  expect(counts.filter((c) => c > 0).length >= 2, `one member took everything: ${counts}`);
  await closeAll(...members, observerClient, publisher);
  return `${messageCount} messages split [${counts.join(", ")}]`;
}

async function checkRequestReply(url) {
  const responderClient = await open(url);
  const requester = await open(url);
  responderClient.subscribe("interop.service", {
    callback: (error, message) => {
      if (!error) message.respond(`echo:${message.string()}`);
    },
  });
  await responderClient.flush();
  const reply = await requester.request("interop.service", "ping", { timeout: REQUEST_TIMEOUT_MS });
  expectEqual(reply.string(), "echo:ping", "reply");
  expect(reply.subject.startsWith("_INBOX."), `reply delivered on ${reply.subject}`);
  const replies = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      requester.request("interop.service", `n${i}`, { timeout: REQUEST_TIMEOUT_MS }),
    ),
  );
  expectEqual(
    replies.map((r) => r.string()),
    Array.from({ length: 10 }, (_, i) => `echo:n${i}`),
    "concurrent replies",
  );
  // A request with its own inbox subscription (noMux) takes the other code path.
  const own = await requester.request("interop.service", "solo", { timeout: REQUEST_TIMEOUT_MS, noMux: true });
  expectEqual(own.string(), "echo:solo", "noMux reply");
  await closeAll(responderClient, requester);
  return "1 + 10 concurrent + 1 noMux requests answered";
}

async function checkNoResponders(url) {
  const client = await open(url);
  const started = performance.now();
  await expectNoResponders(
    client.request("interop.nobody.home", "anyone?", { timeout: REQUEST_TIMEOUT_MS }),
    "request to a subject with no subscribers",
  );
  const elapsedMs = performance.now() - started;
  await expectNoResponders(
    client.request("interop.nobody.home", "anyone?", { timeout: REQUEST_TIMEOUT_MS, noMux: true }),
    "noMux request to a subject with no subscribers",
  );
  await closeAll(client);
  return `NoRespondersError in ${elapsedMs.toFixed(1)} ms`;
}

async function checkHeaders(url) {
  const subscriberClient = await open(url);
  const publisher = await open(url);
  const subscription = collect(subscriberClient, "interop.headers");
  await subscriberClient.flush();
  const sent = headers();
  sent.set("X-Interop-One", "first");
  sent.set("X-Interop-Two", "a value with spaces");
  sent.append("X-Multi", "a");
  sent.append("X-Multi", "b");
  publisher.publish("interop.headers", "with headers", { headers: sent });
  const only = headers();
  only.set("Only-Header", "yes");
  publisher.publish("interop.headers", "", { headers: only });
  publisher.publish("interop.headers", "no headers");
  await publisher.flush();
  await subscriberClient.flush();
  const received = subscription.collected;
  expectEqual(received.length, 3, "message count");
  expectEqual(received[0].string(), "with headers", "first payload");
  const first = received[0].headers;
  expect(first !== undefined, "first message lost its headers");
  expectEqual([...first], [...sent], "first headers");
  expectEqual(first.values("X-Multi"), ["a", "b"], "multi-value header");
  expect(!first.hasError, `first headers report status ${first.code}`);
  expectEqual(received[1].string(), "", "second payload");
  expectEqual([...(received[1].headers ?? [])], [["Only-Header", ["yes"]]], "second headers");
  expectEqual(received[2].string(), "no headers", "third payload");
  expect(!received[2].headers, "third message has headers");

  subscriberClient.subscribe("interop.headers.echo", {
    callback: (error, message) => {
      if (error) return;
      const echo = headers();
      echo.set("Echo", message.headers?.get("Request-Id") ?? "missing");
      message.respond(message.data, { headers: echo });
    },
  });
  await subscriberClient.flush();
  const requestHeaders = headers();
  requestHeaders.set("Request-Id", "42");
  const reply = await publisher.request("interop.headers.echo", "req", {
    timeout: REQUEST_TIMEOUT_MS,
    headers: requestHeaders,
  });
  expectEqual(reply.headers?.get("Echo"), "42", "reply header");
  await closeAll(subscriberClient, publisher);
  return "multi-value, header-only, plain and request headers round-tripped";
}

async function checkAutoUnsubscribe(url) {
  const subscriberClient = await open(url);
  const publisher = await open(url);
  const subscription = collect(subscriberClient, "interop.limited");
  subscription.unsubscribe(3);
  await subscriberClient.flush();
  for (let index = 0; index < 5; index++) publisher.publish("interop.limited", String(index));
  await publisher.flush();
  await subscriberClient.flush();
  expectEqual(subscription.collected.map((m) => m.string()), ["0", "1", "2"], "messages before the limit");
  expect(subscription.isClosed(), "subscription is not closed after its limit");
  // The server must have dropped the interest too: a request now finds no one.
  await expectNoResponders(
    publisher.request("interop.limited", "still there?", { timeout: REQUEST_TIMEOUT_MS }),
    "request after the limit (the server kept the subscription)",
  );
  // The same limit given at subscribe time (SUB then UNSUB <sid> <max>).
  const limited = collect(subscriberClient, "interop.limited.option", { max: 2 });
  await subscriberClient.flush();
  for (let index = 0; index < 4; index++) publisher.publish("interop.limited.option", String(index));
  await publisher.flush();
  await subscriberClient.flush();
  expectEqual(limited.collected.map((m) => m.string()), ["0", "1"], "messages before the subscribe-time limit");
  await closeAll(subscriberClient, publisher);
  return "3 of 5 and 2 of 4 delivered, then no responders";
}

async function checkDrainAndClose(url) {
  const subscriberClient = await open(url);
  const publisher = await open(url);
  const handled = [];
  subscriberClient.subscribe("interop.drain", {
    callback: async (error, message) => {
      if (!error) handled.push(message.string());
    },
  });
  await subscriberClient.flush();
  for (let index = 0; index < 50; index++) publisher.publish("interop.drain", String(index));
  await publisher.flush();
  await subscriberClient.drain();
  expect(subscriberClient.isClosed(), "subscriber connection is not closed after drain()");
  expectEqual(await subscriberClient.closed(), undefined, "closed() after drain");
  expectEqual(handled, Array.from({ length: 50 }, (_, i) => String(i)), "messages handled by drain");

  // Draining a publisher sends what it had buffered before closing.
  const receiver = await open(url);
  const subscription = collect(receiver, "interop.drain.pub");
  await receiver.flush();
  for (let index = 0; index < 20; index++) publisher.publish("interop.drain.pub", String(index));
  await publisher.drain();
  expect(publisher.isClosed(), "publisher connection is not closed after drain()");
  // The publisher's last bytes and its close race the receiver's own round trip
  // (two connections), so the messages are awaited rather than synced.
  await waitFor(() => subscription.collected.length >= 20, "20 messages from the drained publisher");
  await receiver.flush();
  expectEqual(
    subscription.collected.map((m) => m.string()),
    Array.from({ length: 20 }, (_, i) => String(i)),
    "messages from the drained publisher",
  );
  let publishError;
  try {
    publisher.publish("interop.drain.pub", "too late");
  } catch (error) {
    publishError = error;
  }
  expect(publishError instanceof ClosedConnectionError, `publish after close threw ${publishError}`);
  await receiver.close();
  expect(receiver.isClosed(), "close() left the connection open");
  await closeAll(subscriberClient, publisher, receiver);
  return "50 in-flight messages handled, 20 buffered publishes sent";
}

// Connecting with `options` works and a message round-trips on `subject`.
async function accepted(url, subject, options) {
  const client = await open(url, options);
  const subscription = collect(client, subject);
  client.publish(subject, "inside");
  await client.flush();
  expectEqual(subscription.collected.map((m) => m.string()), ["inside"], "payloads");
  await closeAll(client);
  return "connected and round-tripped a message";
}

// Connecting with `options` must fail with 'Authorization Violation'.
async function refused(url, options) {
  let client;
  try {
    client = await open(url, options);
  } catch (error) {
    expect(
      error instanceof AuthorizationError && /Authorization Violation/.test(error.message),
      `refused with ${error.name}: ${error.message}`,
    );
    return `refused: ${error.name}: ${error.message}`;
  }
  await client.close();
  throw new CheckFailed("the server accepted the connection");
}

// Checks for a server started with --user/--pass: the right pair is accepted, a
// wrong or missing one is refused with 'Authorization Violation'.
function authChecks(user, pass) {
  return [
    ["auth: right user and password", (url) => accepted(url, "interop.auth", { user, pass })],
    ["auth: wrong password", (url) => refused(url, { user, pass: `${pass}-wrong` })],
    ["auth: no credentials", (url) => refused(url, {})],
  ];
}

// Checks for a server in operator mode: a .creds file of a user of a trusted
// account is accepted, one of an unknown account is refused.
function credsChecks(good, bad) {
  const { readFileSync } = require_("node:fs");
  const authenticator = (path) => nats.credsAuthenticator(new TextEncoder().encode(readFileSync(path, "utf8")));
  return [
    ["creds: a user of a trusted account", (url) => accepted(url, "interop.creds", { authenticator: authenticator(good) })],
    ["creds: a user of an unknown account", (url) => refused(url, { authenticator: authenticator(bad) })],
  ];
}

const JS_STREAM = "INTEROP_JS";

// Loads @nats-io/jetstream, or exits 77 (skipped) when it is not installed.
function loadJetStream() {
  try {
    const require = createRequire(new URL("./js/package.json", import.meta.url));
    return require("@nats-io/jetstream");
  } catch (error) {
    console.log(
      `NOTICE: @nats-io/jetstream is not installed (${error.code ?? error.message}); run scripts/install-interop-deps`,
    );
    process.exit(77);
  }
}

// Create a stream, publish with acks and a duplicate msg id, read its info and
// a message back, delete it: through jetstreamManager() and jetstream().
async function checkJetStreamStream(url) {
  const { jetstream, jetstreamManager, JetStreamApiError } = loadJetStream();
  const client = await open(url);
  const jsm = await jetstreamManager(client, { timeout: REQUEST_TIMEOUT_MS });
  const created = await jsm.streams.add({ name: JS_STREAM, subjects: ["interop.js.>"] });
  expectEqual([created.config.name, created.config.storage, created.state.messages], [JS_STREAM, "file", 0], "created stream");

  const js = jetstream(client, { timeout: REQUEST_TIMEOUT_MS });
  const first = await js.publish("interop.js.a", "one");
  expectEqual([first.stream, first.seq, first.duplicate], [JS_STREAM, 1, false], "first ack");
  const second = await js.publish("interop.js.b", "two", { msgID: "id-1" });
  expectEqual([second.seq, second.duplicate], [2, false], "second ack");
  const again = await js.publish("interop.js.b", "two", { msgID: "id-1" });
  expectEqual([again.seq, again.duplicate], [2, true], "ack of the duplicate msg id");
  try {
    await js.publish("interop.js.c", "x", { expect: { lastSequence: 1 } });
    throw new CheckFailed("a wrong expected last sequence was accepted");
  } catch (error) {
    if (error instanceof CheckFailed) throw error;
    expect(error instanceof JetStreamApiError, `refused with ${error.name}: ${error.message}`);
    expectEqual(error.code, 10071, "err_code of a wrong expected last sequence");
  }

  const info = await jsm.streams.info(JS_STREAM);
  expectEqual(
    [info.state.messages, info.state.first_seq, info.state.last_seq, info.state.num_subjects],
    [2, 1, 2, 2],
    "stream state (messages, first, last, subjects)",
  );
  expect(info.state.bytes > 0, `stream bytes ${info.state.bytes}`);

  const message = await jsm.streams.getMessage(JS_STREAM, { seq: 2 });
  expectEqual([message.subject, message.seq, message.string()], ["interop.js.b", 2, "two"], "message 2");
  expectEqual(message.header.get("Nats-Msg-Id"), "id-1", "stored Nats-Msg-Id");
  const last = await jsm.streams.getMessage(JS_STREAM, { last_by_subj: "interop.js.a" });
  expectEqual([last.seq, last.string()], [1, "one"], "last message on interop.js.a");
  expectEqual(await jsm.streams.getMessage(JS_STREAM, { seq: 99 }), null, "sequence 99");

  const names = [];
  for await (const name of jsm.streams.names()) names.push(name);
  expectEqual(names, [JS_STREAM], "stream names");
  expectEqual(await jsm.streams.delete(JS_STREAM), true, "delete");
  try {
    await jsm.streams.info(JS_STREAM);
    throw new CheckFailed("the deleted stream still has info");
  } catch (error) {
    if (error instanceof CheckFailed) throw error;
    expectEqual(error.code, 10059, `err_code of info on a deleted stream (${error.message})`);
  }
  expectEqual((await jsm.getAccountInfo()).streams, 0, "streams after the delete");
  await closeAll(client);
  return "created, 2 stored + 1 duplicate acked, info, get, get last, delete";
}

// Loads a nats.js package (@nats-io/kv, @nats-io/obj), or exits 77
// (skipped) when it is not installed.
function loadPackage(name) {
  try {
    const require = createRequire(new URL("./js/package.json", import.meta.url));
    return require(name);
  } catch (error) {
    console.log(`NOTICE: ${name} is not installed (${error.code ?? error.message}); run scripts/install-interop-deps`);
    process.exit(77);
  }
}

// Stores five messages m1..m5 on <prefix>.a / <prefix>.b (odd on a).
async function storeFive(js, prefix) {
  for (let i = 1; i <= 5; i++) await js.publish(`${prefix}.${i % 2 ? "a" : "b"}`, `m${i}`);
}

// Takes `count` messages from a consumer with fetch (several if needed).
async function fetchCount(consumer, count) {
  const messages = [];
  for (let round = 0; round < 4 && messages.length < count; round++) {
    const batch = await consumer.fetch({ max_messages: count - messages.length, expires: 2000 });
    for await (const message of batch) messages.push(message);
  }
  return messages;
}

// A durable pull consumer through consumers.get: fetch, ack, ackAck, nak and
// the redelivery, info, an empty fetch, then consume() for live messages.
async function checkPullConsumer(url) {
  const { jetstream, jetstreamManager, AckPolicy } = loadJetStream();
  const client = await open(url);
  const jsm = await jetstreamManager(client, { timeout: REQUEST_TIMEOUT_MS });
  const stream = "INTEROP_JS_PULL";
  await jsm.streams.add({ name: stream, subjects: ["interop.jsc.>"] });
  const js = jetstream(client, { timeout: REQUEST_TIMEOUT_MS });
  await storeFive(js, "interop.jsc");
  await jsm.consumers.add(stream, { durable_name: "worker", ack_policy: AckPolicy.Explicit });
  const consumer = await js.consumers.get(stream, "worker");

  const first = await fetchCount(consumer, 3);
  expectEqual(
    first.map((m) => [m.string(), m.subject, m.info.streamSequence, m.info.deliverySequence, m.info.deliveryCount, m.info.pending]),
    [["m1", "interop.jsc.a", 1, 1, 1, 4], ["m2", "interop.jsc.b", 2, 2, 1, 3], ["m3", "interop.jsc.a", 3, 3, 1, 2]],
    "first fetch (data, subject, stream seq, consumer seq, deliveries, pending)",
  );
  first[0].ack();
  expectEqual(await first[1].ackAck(), true, "ackAck of message 2");
  first[2].nak();
  // The nak is processed apart from the pull: message 3 comes back before or after 4 and 5.
  const second = (await fetchCount(consumer, 3)).sort((a, b) => a.seq - b.seq);
  expectEqual(
    second.map((m) => [m.string(), m.info.deliveryCount]),
    [["m3", 2], ["m4", 1], ["m5", 1]],
    "messages after the nak (data, deliveries)",
  );
  for (const message of second) expectEqual(await message.ackAck(), true, `ackAck of ${message.string()}`);
  const info = await consumer.info();
  expectEqual(
    [info.num_pending, info.num_ack_pending, info.num_redelivered, info.delivered.stream_seq, info.ack_floor.stream_seq],
    [0, 0, 0, 5, 5],
    "consumer info (pending, ack pending, redelivered, delivered, ack floor)",
  );
  const empty = await consumer.fetch({ max_messages: 1, expires: 1000 });
  const none = [];
  for await (const message of empty) none.push(message.string());
  expectEqual(none, [], "a fetch with nothing to deliver");

  const live = await consumer.consume({ max_messages: 10 });
  const consumed = [];
  const done = (async () => {
    for await (const message of live) {
      consumed.push([message.string(), message.info.streamSequence]);
      message.ack();
      if (consumed.length === 2) break;
    }
  })();
  await js.publish("interop.jsc.a", "m6");
  await js.publish("interop.jsc.b", "m7");
  await done;
  expectEqual(consumed, [["m6", 6], ["m7", 7]], "consumed live messages");
  await live.close();

  const names = [];
  for await (const c of jsm.consumers.list(stream)) names.push(c.name);
  expectEqual(names, ["worker"], "consumer list");
  expectEqual(await jsm.consumers.delete(stream, "worker"), true, "consumer delete");
  await jsm.streams.delete(stream);
  await closeAll(client);
  return "fetched 3, ack/ackAck/nak, redelivered once, info exact, empty fetch, consumed 2 live, delete";
}

// A KV bucket: put, get, create, update at a revision, delete, history, keys,
// and a watcher that sees the current values then a live update.
async function checkKeyValue(url) {
  const { Kvm } = loadPackage("@nats-io/kv");
  const client = await open(url);
  const kvm = new Kvm(client);
  const kv = await kvm.create("interop_js", { history: 5 });
  expectEqual(await kv.put("color", "red"), 1, "revision of the first put");
  expectEqual(await kv.put("color", "blue"), 2, "revision of the second put");
  const entry = await kv.get("color");
  expectEqual([entry.key, entry.string(), entry.revision, entry.operation], ["color", "blue", 2, "PUT"], "get color");
  expectEqual(await kv.create("size", "L"), 3, "create size");
  let refused = false;
  try {
    await kv.create("size", "M");
  } catch {
    refused = true;
  }
  expect(refused, "create of an existing key succeeded");
  expectEqual(await kv.update("size", "XL", 3), 4, "update size at revision 3");
  refused = false;
  try {
    await kv.update("size", "S", 3);
  } catch {
    refused = true;
  }
  expect(refused, "update at a stale revision succeeded");

  const watcher = await kv.watch({ key: ">" });
  const seen = [];
  const watching = (async () => {
    for await (const e of watcher) {
      seen.push([e.key, e.string(), e.revision]);
      if (seen.length === 3) break;
    }
  })();
  await waitFor(() => seen.length === 2, "the watcher's current values");
  await kv.put("color", "green");
  await watching;
  expectEqual(seen, [["color", "blue", 2], ["size", "XL", 4], ["color", "green", 5]], "watched entries");
  watcher.stop();

  await kv.delete("size");
  expectEqual((await kv.get("size"))?.operation, "DEL", "a deleted key's entry");
  const history = [];
  for await (const e of await kv.history({ key: "color" })) history.push(e.string());
  expectEqual(history, ["red", "blue", "green"], "history of color");
  const keys = [];
  for await (const key of await kv.keys()) keys.push(key);
  expectEqual(keys, ["color"], "keys");
  const status = await kv.status();
  expectEqual([status.bucket, status.history, status.values], ["interop_js", 5, 6], "bucket status (values include the delete marker)");
  expectEqual(await kv.destroy(), true, "bucket destroy");
  await closeAll(client);
  return "put/get/create/update/delete, history 3, keys, watcher saw 2 then 1 live";
}

async function checkObjectStore(url) {
  const { Objm } = loadPackage("@nats-io/obj");
  const client = await open(url);
  const objm = new Objm(client);
  const store = await objm.create("interop_js_obj");
  const data = new Uint8Array(1 << 20).map((_, i) => (i * 7 + Math.floor(i / 251)) % 256);
  const info = await store.putBlob({ name: "blob" }, data);
  expectEqual([info.name, info.size, info.chunks], ["blob", 1 << 20, 8], "put info (128 KiB chunks)");
  const read = await store.getBlob("blob");
  expect(read !== null && read.length === data.length && read.every((b, i) => b === data[i]), "the object read back differs");
  expectEqual((await store.info("blob")).digest, info.digest, "digest");
  await store.putBlob({ name: "small" }, new TextEncoder().encode("tiny"));
  const names = (await store.list()).map((entry) => entry.name).sort();
  expectEqual(names, ["blob", "small"], "list");
  await store.delete("small");
  expectEqual(await store.get("small"), null, "a deleted object");
  expectEqual(await store.destroy(), true, "bucket destroy");
  await closeAll(client);
  return "1 MiB in 8 chunks read back with its digest, list, delete";
}

const CONSUMER_CHECKS = [
  ["jetstream: pull consumer (consumers.get, fetch, consume)", checkPullConsumer],
  ["jetstream: key-value", checkKeyValue],
  ["jetstream: object store", checkObjectStore],
];

const JETSTREAM_CHECKS = [["jetstream: stream lifecycle", checkJetStreamStream]];

const CHECKS = [
  ["connect", checkConnect],
  ["pub/sub literal subject", checkLiteralSubject],
  ["pub/sub wildcards * and >", checkWildcards],
  ["queue group of 3", checkQueueGroup],
  ["request/reply", checkRequestReply],
  ["no responders", checkNoResponders],
  ["headers round trip", checkHeaders],
  ["auto-unsubscribe after N", checkAutoUnsubscribe],
  ["drain and close", checkDrainAndClose],
];

async function main(url, checks) {
  const transport = isWebSocketUrl(url) ? "@nats-io/nats-core wsconnect" : "@nats-io/transport-node";
  console.log(`nats.js (${transport} ${libraryVersion}) against ${url}`);
  const failed = [];
  for (const [name, check] of checks) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`no result within ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS);
    });
    try {
      const detail = await Promise.race([check(url), timeout]);
      console.log(`ok   ${name}: ${detail}`);
    } catch (error) {
      failed.push(name);
      console.log(`FAIL ${name}: ${error.name}: ${error.message}`);
    } finally {
      clearTimeout(timer);
    }
  }
  if (failed.length > 0) {
    console.log(`nats.js: ${failed.length} of ${checks.length} checks failed: ${failed.join(", ")}`);
    return 1;
  }
  console.log(`nats.js: all ${checks.length} checks passed`);
  return 0;
}

const [url, user, pass, ...extra] = process.argv.slice(2);
const jetstreamMode = user === "--jetstream" && pass === undefined;
const consumersMode = user === "--consumers" && pass === undefined;
const credsMode = user === "--creds" && pass !== undefined && extra.length === 1;
const flagMode = jetstreamMode || consumersMode;
if (url === undefined || (user !== undefined && pass === undefined && !flagMode) || (extra.length > 0 && !credsMode)) {
  console.error("usage: js_client.mjs nats://HOST:PORT|ws://HOST:PORT [USER PASSWORD | --jetstream | --consumers | --creds GOOD BAD]");
  process.exit(2);
}
const checks = jetstreamMode
  ? JETSTREAM_CHECKS
  : consumersMode
    ? CONSUMER_CHECKS
    : credsMode
      ? credsChecks(pass, extra[0])
      : user === undefined
        ? CHECKS
        : authChecks(user, pass);
// Exit explicitly: a check that timed out may leave a connection open.
process.exit(await main(url, checks));
