#!/usr/bin/env python3
"""Runs the official Python client (nats-py) against a NATS server.

Usage: python3 tests/interop/py_client.py nats://127.0.0.1:PORT [USER PASSWORD | --jetstream | --consumers]

Given a ws:// or wss:// URL, nats-py connects with its websocket transport
(aiohttp; exit 77 when that is not installed). For wss:// a private CA comes
from SSL_CERT_FILE, which Python's default TLS context reads.

With USER and PASSWORD (for a server started with --user/--pass) it runs the
authentication checks instead of the messaging checks; with --jetstream (for a
server started with -js) the JetStream checks through `nc.jetstream()`; with
--consumers the consumer (pull_subscribe/fetch, push subscribe) and KV checks.

Each check opens its own connections, prints one line ("ok" or "FAIL" and the
reason), and is bounded by a timeout, so one broken check cannot hide the
others or hang the run. The exit code is 0 when every check passed, 1 when any
failed, and 77 (the usual "skipped" code) when nats-py is not installed.

"Nothing else was delivered" is checked without sleeping: after the publisher
and then the subscriber's own connection have made a round trip to the server
(`round_trip`), every message the server routed is already queued in the
subscription. Subjects are fixed, so run one script at a time against a server.
tests/tests/interop_clients.rs runs this script against rnats-server and, to
validate the script, against nats-server.
"""

import asyncio
import sys
import time

try:
    import nats
    from nats import errors
    from importlib.metadata import version as package_version
except ImportError as error:
    print(f"NOTICE: nats-py is not installed ({error}); run scripts/install-interop-deps")
    sys.exit(77)

# Generous bounds, so that a loaded two-core machine does not fail a correct
# server; no check asserts on how fast anything is.
CHECK_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 4.0


class CheckFailed(Exception):
    """A check saw something other than what nats-server does."""


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_equal(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


async def connect(url, **options):
    async def on_error(error):
        # Asynchronous errors (a -ERR from the server, a parse error) fail the check
        # that owns the connection when it next looks.
        connection_errors.append(f"{type(error).__name__}: {error}")

    connection_errors = []
    client = await nats.connect(
        servers=[url],
        name="rnats-interop-py",
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=on_error,
        **options,
    )
    client.interop_errors = connection_errors
    return client


async def close_all(*clients):
    for client in clients:
        if not client.is_closed:
            await client.close()
    for client in clients:
        expect(not client.interop_errors, f"asynchronous errors: {client.interop_errors}")


async def round_trip(client):
    """Returns once the server has processed everything the client sent before.

    nats-py's flush() writes its PING straight to the socket while earlier
    commands may still wait in the client's buffer for the flusher task, so the
    PONG alone does not prove the server saw them. Pushing the buffer out first
    and then making the round trip does.
    """
    await client._flush_pending(force_flush=True)
    await client.flush()


def ready_messages(subscription):
    """Messages already queued in a subscription (call after a round trip)."""
    messages = []
    while not subscription._pending_queue.empty():
        messages.append(subscription._pending_queue.get_nowait())
        subscription._pending_queue.task_done()
    return messages


async def check_connect(url):
    client = await connect(url)
    expect(client.is_connected, "not connected after connect()")
    info = client._server_info
    for key in ("server_id", "version", "max_payload", "headers", "proto"):
        expect(key in info, f"INFO lacks {key!r}: {info}")
    expect(info["headers"] is True, f"INFO headers is {info['headers']!r}, the client needs true")
    expect(client.max_payload > 0, f"max_payload is {client.max_payload}")
    expect(client.client_id is not None, "INFO has no client_id")
    round_trip_s = await client.rtt()
    expect(round_trip_s >= 0, "rtt failed")
    version = info["version"]
    await close_all(client)
    detail = f"server {version}, max_payload {info['max_payload']}"
    # Not a failure: nats-py's JetStream manager picks consumer-create subjects by
    # this version (>= 2.9), so a drop-in should report nats-server's.
    server_version = client.connected_server_version
    if (server_version.major, server_version.minor) < (2, 9):
        detail += " (note: clients gate features on INFO version; nats-server 2.15.1 reports 2.15.1)"
    return detail


async def check_literal_subject(url):
    subscriber_client = await connect(url)
    publisher = await connect(url)
    subscription = await subscriber_client.subscribe("interop.orders.created")
    await round_trip(subscriber_client)
    for subject, payload in [
        ("interop.orders.created", b"first"),
        ("interop.orders.updated", b"not for us"),
        ("interop.orders.created.eu", b"not for us either"),
        ("interop.orders", b"nor this"),
        ("interop.orders.created", b"second"),
        ("interop.orders.created", b""),
    ]:
        await publisher.publish(subject, payload)
    await round_trip(publisher)
    await round_trip(subscriber_client)
    received = ready_messages(subscription)
    expect_equal([m.data for m in received], [b"first", b"second", b""], "payloads")
    for message in received:
        expect_equal(message.subject, "interop.orders.created", "subject")
        expect_equal(message.reply, "", "reply subject")
        expect(message.headers is None, f"unexpected headers {message.headers}")
    await close_all(subscriber_client, publisher)
    return "3 of 6 publishes matched"


async def check_wildcards(url):
    subscriber_client = await connect(url)
    publisher = await connect(url)
    star = await subscriber_client.subscribe("interop.*.price")
    full = await subscriber_client.subscribe("interop.market.>")
    await round_trip(subscriber_client)
    subjects = [
        "interop.eur.price",
        "interop.market.eur",
        "interop.market.eur.price",
        "interop.market.price",
        "interop.price",
        "interop.a.b.price",
        "interop.market",
        "other.usd.price",
    ]
    for index, subject in enumerate(subjects):
        await publisher.publish(subject, str(index).encode())
    await round_trip(publisher)
    await round_trip(subscriber_client)
    star_subjects = [m.subject for m in ready_messages(star)]
    full_subjects = [m.subject for m in ready_messages(full)]
    expect_equal(star_subjects, ["interop.eur.price", "interop.market.price"], "'*' subscription")
    expect_equal(
        full_subjects,
        ["interop.market.eur", "interop.market.eur.price", "interop.market.price"],
        "'>' subscription",
    )
    await close_all(subscriber_client, publisher)
    return "'*' got 2, '>' got 3"


async def check_queue_group(url):
    members = [await connect(url) for _ in range(3)]
    observer_client = await connect(url)
    publisher = await connect(url)
    subscriptions = [await m.subscribe("interop.jobs", queue="workers") for m in members]
    observer = await observer_client.subscribe("interop.jobs")
    for client in members + [observer_client]:
        await round_trip(client)
    message_count = 60
    for index in range(message_count):
        await publisher.publish("interop.jobs", f"job-{index}".encode())
    await round_trip(publisher)
    per_member = []
    for client, subscription in zip(members, subscriptions):
        await round_trip(client)
        per_member.append([m.data.decode() for m in ready_messages(subscription)])
    await round_trip(observer_client)
    everything = sorted(m.data.decode() for m in ready_messages(observer))
    delivered = sorted(p for payloads in per_member for p in payloads)
    expected = sorted(f"job-{index}" for index in range(message_count))
    expect_equal(delivered, expected, "messages across the group (each exactly once)")
    expect_equal(everything, expected, "messages to the plain subscriber beside the group")
    counts = [len(payloads) for payloads in per_member]
    expect(sum(1 for c in counts if c > 0) >= 2, f"one member took everything: {counts}")
    await close_all(*members, observer_client, publisher)
    return f"{message_count} messages split {counts}"


async def check_request_reply(url):
    responder_client = await connect(url)
    requester = await connect(url)

    async def respond(message):
        await message.respond(b"echo:" + message.data)

    await responder_client.subscribe("interop.service", cb=respond)
    await round_trip(responder_client)
    reply = await requester.request("interop.service", b"ping", timeout=REQUEST_TIMEOUT_S)
    expect_equal(reply.data, b"echo:ping", "reply")
    expect(reply.subject.startswith("_INBOX."), f"reply delivered on {reply.subject!r}")
    replies = await asyncio.gather(
        *(requester.request("interop.service", f"n{i}".encode(), timeout=REQUEST_TIMEOUT_S) for i in range(10))
    )
    expect_equal([r.data for r in replies], [f"echo:n{i}".encode() for i in range(10)], "concurrent replies")
    await close_all(responder_client, requester)
    return "1 + 10 concurrent requests answered"


async def check_no_responders(url):
    client = await connect(url)
    started = time.monotonic()
    try:
        await client.request("interop.nobody.home", b"anyone?", timeout=REQUEST_TIMEOUT_S)
    except errors.NoRespondersError:
        pass
    except errors.TimeoutError:
        raise CheckFailed("request timed out instead of failing with no responders (503)")
    else:
        raise CheckFailed("request to a subject with no subscribers got a reply")
    elapsed_ms = (time.monotonic() - started) * 1000
    # Old-style requests (one inbox subscription per request) get the status too.
    try:
        await client.request("interop.nobody.home", b"anyone?", timeout=REQUEST_TIMEOUT_S, old_style=True)
    except errors.NoRespondersError:
        pass
    except errors.TimeoutError:
        raise CheckFailed("old-style request timed out instead of failing with no responders")
    else:
        raise CheckFailed("old-style request to a subject with no subscribers got a reply")
    await close_all(client)
    return f"NoRespondersError in {elapsed_ms:.1f} ms"


async def check_headers(url):
    subscriber_client = await connect(url)
    publisher = await connect(url)
    subscription = await subscriber_client.subscribe("interop.headers")
    await round_trip(subscriber_client)
    sent = {"X-Interop-One": "first", "X-Interop-Two": "a value with spaces", "Content-Type": "text/plain"}
    await publisher.publish("interop.headers", b"with headers", headers=sent)
    await publisher.publish("interop.headers", b"", headers={"Only-Header": "yes"})
    await publisher.publish("interop.headers", b"no headers")
    await round_trip(publisher)
    await round_trip(subscriber_client)
    received = ready_messages(subscription)
    expect_equal(len(received), 3, "message count")
    expect_equal(received[0].data, b"with headers", "first payload")
    expect_equal(received[0].headers, sent, "first headers")
    expect_equal(received[1].data, b"", "second payload")
    expect_equal(received[1].headers, {"Only-Header": "yes"}, "second headers")
    expect_equal(received[2].data, b"no headers", "third payload")
    expect(not received[2].headers, f"third message has headers {received[2].headers}")

    async def echo_headers(message):
        request_id = (message.headers or {}).get("Request-Id", "missing")
        await subscriber_client.publish(message.reply, message.data, headers={"Echo": request_id})

    await subscriber_client.subscribe("interop.headers.echo", cb=echo_headers)
    await round_trip(subscriber_client)
    reply = await publisher.request(
        "interop.headers.echo", b"req", timeout=REQUEST_TIMEOUT_S, headers={"Request-Id": "42"}
    )
    expect_equal(reply.headers, {"Echo": "42"}, "reply headers")
    await close_all(subscriber_client, publisher)
    return "3 headers, header-only, plain and request headers round-tripped"


async def check_auto_unsubscribe(url):
    subscriber_client = await connect(url)
    publisher = await connect(url)
    subscription = await subscriber_client.subscribe("interop.limited")
    await subscription.unsubscribe(limit=3)
    await round_trip(subscriber_client)
    for index in range(5):
        await publisher.publish("interop.limited", str(index).encode())
    await round_trip(publisher)
    await round_trip(subscriber_client)
    received = [m.data for m in ready_messages(subscription)]
    expect_equal(received, [b"0", b"1", b"2"], "messages before the limit")
    # The server must have dropped the interest too: a request now finds no one.
    try:
        await publisher.request("interop.limited", b"still there?", timeout=REQUEST_TIMEOUT_S)
    except errors.NoRespondersError:
        pass
    except errors.TimeoutError:
        raise CheckFailed("server kept the subscription after its limit (request timed out, no 503)")
    else:
        raise CheckFailed("server kept the subscription after its limit (request answered)")
    await close_all(subscriber_client, publisher)
    return "3 of 5 delivered, then no responders"


async def check_drain_and_close(url):
    subscriber_client = await connect(url)
    publisher = await connect(url)
    closed = asyncio.Event()

    async def on_closed():
        closed.set()

    subscriber_client._closed_cb = on_closed
    handled = []

    async def slow_handler(message):
        await asyncio.sleep(0.002)
        handled.append(message.data)

    await subscriber_client.subscribe("interop.drain", cb=slow_handler)
    await round_trip(subscriber_client)
    for index in range(50):
        await publisher.publish("interop.drain", str(index).encode())
    await round_trip(publisher)
    await subscriber_client.drain()
    expect(subscriber_client.is_closed, "subscriber connection is not closed after drain()")
    expect(closed.is_set(), "closed callback did not run")
    expect_equal(handled, [str(i).encode() for i in range(50)], "messages handled by drain")

    # Draining a publisher sends what it had buffered before closing.
    receiver = await connect(url)
    subscription = await receiver.subscribe("interop.drain.pub")
    await round_trip(receiver)
    for index in range(20):
        await publisher.publish("interop.drain.pub", str(index).encode())
    await publisher.drain()
    expect(publisher.is_closed, "publisher connection is not closed after drain()")
    # The publisher's last bytes and its close race the receiver's own round trip
    # (two connections), so the messages are awaited rather than synced.
    drained = []
    try:
        for _ in range(20):
            drained.append((await subscription.next_msg(timeout=REQUEST_TIMEOUT_S)).data)
    except errors.TimeoutError:
        pass
    expect_equal(drained, [str(i).encode() for i in range(20)], "messages from the drained publisher")
    await round_trip(receiver)
    expect_equal(ready_messages(subscription), [], "messages after the drained publisher's 20")
    try:
        await publisher.publish("interop.drain.pub", b"too late")
    except errors.ConnectionClosedError:
        pass
    else:
        raise CheckFailed("publish after close did not raise ConnectionClosedError")
    await receiver.close()
    expect(receiver.is_closed, "close() left the connection open")
    await close_all(subscriber_client, publisher, receiver)
    return "50 in-flight messages handled, 20 buffered publishes sent"


async def accepted(url, subject, **options):
    """Connecting with `options` works and a message round-trips on `subject`."""
    client = await connect(url, **options)
    subscription = await client.subscribe(subject)
    await client.publish(subject, b"inside")
    message = await subscription.next_msg(timeout=REQUEST_TIMEOUT_S)
    expect_equal(message.data, b"inside", "payload")
    await close_all(client)
    return "connected and round-tripped a message"


async def refused(url, **options):
    """Connecting with `options` must fail with 'Authorization Violation'."""
    try:
        client = await connect(url, **options)
    except Exception as error:
        expect("Authorization Violation" in str(error), f"refused with {type(error).__name__}: {error}")
        return f"refused: {error}"
    await client.close()
    raise CheckFailed("the server accepted the connection")


def auth_checks(user, password):
    """Checks for a server started with --user/--pass: the right pair is accepted,
    a wrong or missing one is refused with 'Authorization Violation'."""

    return [
        ("auth: right user and password", lambda url: accepted(url, "interop.auth", user=user, password=password)),
        ("auth: wrong password", lambda url: refused(url, user=user, password=password + "-wrong")),
        ("auth: no credentials", lambda url: refused(url)),
    ]


def creds_checks(good, bad):
    """Checks for a server in operator mode: a `.creds` file of a user of a
    trusted account is accepted, one of an unknown account is refused."""

    return [
        ("creds: a user of a trusted account", lambda url: accepted(url, "interop.creds", user_credentials=good)),
        ("creds: a user of an unknown account", lambda url: refused(url, user_credentials=bad)),
    ]


def require_nkeys():
    """Exits 77 (skipped) when the `nkeys` package nats-py signs with is missing."""
    try:
        import nkeys  # noqa: F401
    except ImportError as error:
        print(f"NOTICE: nkeys is not installed ({error}); run scripts/install-interop-deps")
        sys.exit(77)


JS_STREAM = "INTEROP_PY"


async def check_jetstream_stream(url):
    """Create a stream, publish with acks and a duplicate msg id, read its info
    and a message back, delete it: all through nats-py's JetStream context."""
    from nats.js import api as js_api
    from nats.js import errors as js_errors

    client = await connect(url)
    js = client.jetstream(timeout=REQUEST_TIMEOUT_S)
    created = await js.add_stream(name=JS_STREAM, subjects=["interop.py.>"])
    expect_equal(created.config.name, JS_STREAM, "created stream name")
    expect_equal(created.config.storage, js_api.StorageType.FILE, "default storage")
    expect_equal(created.state.messages, 0, "messages of a new stream")

    first = await js.publish("interop.py.a", b"one")
    expect_equal((first.stream, first.seq, bool(first.duplicate)), (JS_STREAM, 1, False), "first ack")
    second = await js.publish("interop.py.b", b"two", headers={"Nats-Msg-Id": "id-1"})
    expect_equal((second.seq, bool(second.duplicate)), (2, False), "second ack")
    again = await js.publish("interop.py.b", b"two", headers={"Nats-Msg-Id": "id-1"})
    expect_equal((again.seq, bool(again.duplicate)), (2, True), "ack of the duplicate msg id")
    try:
        await js.publish("interop.py.c", b"x", headers={"Nats-Expected-Last-Sequence": "1"})
        raise CheckFailed("a wrong Nats-Expected-Last-Sequence was accepted")
    except js_errors.APIError as error:
        expect_equal(error.err_code, 10071, "err_code of a wrong expected last sequence")

    info = await js.stream_info(JS_STREAM)
    state = (info.state.messages, info.state.first_seq, info.state.last_seq)
    expect_equal(state, (2, 1, 2), "stream state (messages, first, last)")
    expect(info.state.bytes > 0, f"stream bytes {info.state.bytes}")

    message = await js.get_msg(JS_STREAM, seq=2)
    expect_equal((message.subject, message.seq, message.data), ("interop.py.b", 2, b"two"), "message 2")
    expect_equal(message.headers.get("Nats-Msg-Id"), "id-1", "stored Nats-Msg-Id")
    last = await js.get_last_msg(JS_STREAM, "interop.py.a")
    expect_equal((last.seq, last.data), (1, b"one"), "last message on interop.py.a")
    try:
        await js.get_msg(JS_STREAM, seq=99)
        raise CheckFailed("sequence 99 was found")
    except js_errors.NotFoundError:
        pass

    names = await js.streams_info()
    expect_equal([s.config.name for s in names], [JS_STREAM], "stream list")
    expect_equal(await js.delete_stream(JS_STREAM), True, "delete")
    try:
        await js.stream_info(JS_STREAM)
        raise CheckFailed("the deleted stream still has info")
    except js_errors.NotFoundError:
        pass
    account = await js.account_info()
    expect_equal(account.streams, 0, "streams after the delete")
    await close_all(client)
    return "created, 2 stored + 1 duplicate acked, info, get, get last, delete"


JS_PULL_STREAM = "INTEROP_PY_PULL"
JS_PUSH_STREAM = "INTEROP_PY_PUSH"


async def check_jetstream_pull_consumer(url):
    """A durable pull consumer through pull_subscribe: fetch, ack, ack_sync,
    nak and the redelivery, consumer info, an empty fetch timing out."""
    from nats.js import api as js_api

    client = await connect(url)
    js = client.jetstream(timeout=REQUEST_TIMEOUT_S)
    await js.add_stream(name=JS_PULL_STREAM, subjects=["interop.pyc.>"])
    for i in range(1, 6):
        await js.publish(f"interop.pyc.{'a' if i % 2 else 'b'}", f"m{i}".encode())
    pull = await js.pull_subscribe("interop.pyc.>", durable="worker", stream=JS_PULL_STREAM)
    first = await pull.fetch(batch=3, timeout=2)
    expect_equal([m.data for m in first], [b"m1", b"m2", b"m3"], "first fetch")
    expect_equal(
        [(m.metadata.sequence.stream, m.metadata.sequence.consumer, m.metadata.num_delivered) for m in first],
        [(1, 1, 1), (2, 2, 1), (3, 3, 1)],
        "first fetch (stream seq, consumer seq, delivered)",
    )
    expect_equal([m.metadata.num_pending for m in first], [4, 3, 2], "num_pending of the first fetch")
    expect_equal(first[0].subject, "interop.pyc.a", "subject of message 1")
    await first[0].ack()
    await first[1].ack_sync()
    await first[2].nak()
    # The NAK is processed apart from the pull request: message 3 comes back
    # before or after 4 and 5, in this fetch or the next.
    second = []
    while len(second) < 3:
        second.extend(await pull.fetch(batch=3 - len(second), timeout=2))
    second.sort(key=lambda m: m.metadata.sequence.stream)
    expect_equal([m.data for m in second], [b"m3", b"m4", b"m5"], "messages after the nak")
    expect_equal([m.metadata.num_delivered for m in second], [2, 1, 1], "delivery counts after the nak")
    for message in second:
        await message.ack_sync()
    info = await pull.consumer_info()
    expect_equal(info.config.ack_policy, js_api.AckPolicy.EXPLICIT, "ack policy")
    expect_equal(
        (info.num_pending, info.num_ack_pending, info.num_redelivered, info.delivered.stream_seq, info.ack_floor.stream_seq),
        (0, 0, 0, 5, 5),
        "consumer info (pending, ack pending, redelivered, delivered, ack floor)",
    )
    try:
        await pull.fetch(batch=1, timeout=0.5)
        raise CheckFailed("a fetch with nothing to deliver returned messages")
    except errors.TimeoutError:
        pass
    await js.publish("interop.pyc.b", b"m6")
    late = await pull.fetch(batch=2, timeout=1)
    expect_equal([m.data for m in late], [b"m6"], "a fetch of 2 with 1 available")
    await late[0].term()
    await pull.unsubscribe()
    names = await js.consumers_info(JS_PULL_STREAM)
    expect_equal([c.name for c in names], ["worker"], "consumer list")
    expect_equal(await js.delete_consumer(JS_PULL_STREAM, "worker"), True, "consumer delete")
    await js.delete_stream(JS_PULL_STREAM)
    await close_all(client)
    return "fetched 3, ack/ack_sync/nak, redelivered once, info exact, empty fetch timed out, term, delete"


async def check_jetstream_push_consumer(url):
    """An ephemeral push consumer with a filter, explicit acks."""
    client = await connect(url)
    js = client.jetstream(timeout=REQUEST_TIMEOUT_S)
    await js.add_stream(name=JS_PUSH_STREAM, subjects=["interop.pyp.>"])
    for i in range(1, 6):
        await js.publish(f"interop.pyp.{'a' if i % 2 else 'b'}", f"m{i}".encode())
    sub = await js.subscribe("interop.pyp.a", stream=JS_PUSH_STREAM, manual_ack=True)
    received = []
    for _ in range(3):
        message = await sub.next_msg(timeout=2)
        received.append((message.subject, message.data, message.metadata.sequence.stream))
        await message.ack_sync()
    expect_equal(
        received,
        [("interop.pyp.a", b"m1", 1), ("interop.pyp.a", b"m3", 3), ("interop.pyp.a", b"m5", 5)],
        "push deliveries (subject, data, stream seq)",
    )
    await js.publish("interop.pyp.a", b"m6")
    message = await sub.next_msg(timeout=2)
    expect_equal((message.data, message.metadata.sequence.stream), (b"m6", 6), "a live push delivery")
    await message.ack()
    info = await sub.consumer_info()
    expect_equal((info.num_pending, info.delivered.stream_seq), (0, 6), "push consumer info")
    await sub.unsubscribe()
    await js.delete_stream(JS_PUSH_STREAM)
    await close_all(client)
    return "3 stored + 1 live delivered on the filter, acked"


async def check_key_value(url):
    """A KV bucket: put, get, create, update at a revision, delete, history,
    keys, and a watcher that sees the current values then a live update."""
    from nats.js import errors as js_errors

    client = await connect(url)
    js = client.jetstream(timeout=REQUEST_TIMEOUT_S)
    kv = await js.create_key_value(bucket="interop_py", history=5)
    expect_equal(await kv.put("color", b"red"), 1, "revision of the first put")
    expect_equal(await kv.put("color", b"blue"), 2, "revision of the second put")
    entry = await kv.get("color")
    expect_equal((entry.key, entry.value, entry.revision), ("color", b"blue", 2), "get color")
    expect_equal(await kv.create("size", b"L"), 3, "create size")
    try:
        await kv.create("size", b"M")
        raise CheckFailed("create of an existing key succeeded")
    except js_errors.KeyWrongLastSequenceError:
        pass
    expect_equal(await kv.update("size", b"XL", last=3), 4, "update size at revision 3")
    try:
        await kv.update("size", b"S", last=3)
        raise CheckFailed("update at a stale revision succeeded")
    except js_errors.KeyWrongLastSequenceError:
        pass
    watcher = await kv.watchall()
    seen = []
    while True:
        update = await watcher.updates(timeout=2)
        if update is None:
            break
        seen.append((update.key, update.value, update.revision))
    expect_equal(seen, [("color", b"blue", 2), ("size", b"XL", 4)], "watcher's current values")
    await kv.put("color", b"green")
    update = await watcher.updates(timeout=2)
    expect_equal((update.key, update.value, update.revision), ("color", b"green", 5), "watched update")
    await watcher.stop()
    await kv.delete("size")
    try:
        await kv.get("size")
        raise CheckFailed("a deleted key was found")
    except js_errors.KeyNotFoundError:
        pass
    history = await kv.history("color")
    expect_equal([e.value for e in history], [b"red", b"blue", b"green"], "history of color")
    expect_equal(await kv.keys(), ["color"], "keys")
    status = await kv.status()
    expect_equal((status.bucket, status.history), ("interop_py", 5), "bucket status")
    expect_equal(await js.delete_key_value("interop_py"), True, "bucket delete")
    await close_all(client)
    return "put/get/create/update/delete, history 3, keys, watcher saw 2 then 1 live"


async def check_object_store(url):
    """An object store: put of a 1 MiB object in chunks, get with its
    digest checked by the client, info, list, delete."""
    from nats.js import errors as js_errors

    client = await connect(url)
    js = client.jetstream(timeout=REQUEST_TIMEOUT_S)
    obs = await js.create_object_store(bucket="interop_py_obj")
    data = bytes((i * 7 + i // 251) % 256 for i in range(1 << 20))
    info = await obs.put("blob", data)
    expect_equal((info.name, info.size, info.chunks), ("blob", 1 << 20, 8), "put info (128 KiB chunks)")
    result = await obs.get("blob")
    expect_equal(result.data == data, True, "the object read back")
    expect_equal(result.info.digest, info.digest, "digest")
    await obs.put("small", b"tiny")
    names = sorted(entry.name for entry in await obs.list())
    expect_equal(names, ["blob", "small"], "list")
    await obs.delete("small")
    try:
        await obs.get("small")
        raise CheckFailed("a deleted object was found")
    except js_errors.ObjectNotFoundError:
        pass
    expect_equal(await js.delete_object_store("interop_py_obj"), True, "bucket delete")
    await close_all(client)
    return "1 MiB in 8 chunks read back with its digest, list, delete"


CONSUMER_CHECKS = [
    ("jetstream: pull consumer", check_jetstream_pull_consumer),
    ("jetstream: push consumer", check_jetstream_push_consumer),
    ("jetstream: key-value", check_key_value),
    ("jetstream: object store", check_object_store),
]


JETSTREAM_CHECKS = [
    ("jetstream: stream lifecycle", check_jetstream_stream),
]


CHECKS = [
    ("connect", check_connect),
    ("pub/sub literal subject", check_literal_subject),
    ("pub/sub wildcards * and >", check_wildcards),
    ("queue group of 3", check_queue_group),
    ("request/reply", check_request_reply),
    ("no responders", check_no_responders),
    ("headers round trip", check_headers),
    ("auto-unsubscribe after N", check_auto_unsubscribe),
    ("drain and close", check_drain_and_close),
]


def require_websocket_transport(url):
    """Exits 77 (skipped) when a websocket URL is given and aiohttp is missing."""
    if not url.startswith(("ws://", "wss://")):
        return
    try:
        import aiohttp  # noqa: F401  (nats-py imports it when it opens a websocket)
    except ImportError as error:
        print(f"NOTICE: aiohttp is not installed ({error}); run scripts/install-interop-deps")
        sys.exit(77)


async def main(url, checks):
    print(f"nats-py {package_version('nats-py')} against {url}")
    failed = []
    for name, check in checks:
        # asyncio.wait, not wait_for: nats.errors.TimeoutError (a request that timed
        # out) subclasses asyncio.TimeoutError and must not read as the check's own.
        task = asyncio.create_task(check(url))
        done, _ = await asyncio.wait({task}, timeout=CHECK_TIMEOUT_S)
        if not done:
            task.cancel()
            failed.append(name)
            print(f"FAIL {name}: no result within {CHECK_TIMEOUT_S:.0f} s", flush=True)
        elif task.exception() is not None:
            error = task.exception()
            failed.append(name)
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
        else:
            print(f"ok   {name}: {task.result()}", flush=True)
    if failed:
        print(f"nats-py: {len(failed)} of {len(checks)} checks failed: {', '.join(failed)}")
        return 1
    print(f"nats-py: all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2:
        require_websocket_transport(sys.argv[1])
    if len(sys.argv) == 2:
        sys.exit(asyncio.run(main(sys.argv[1], CHECKS)))
    if len(sys.argv) == 3 and sys.argv[2] == "--jetstream":
        sys.exit(asyncio.run(main(sys.argv[1], JETSTREAM_CHECKS)))
    if len(sys.argv) == 3 and sys.argv[2] == "--consumers":
        sys.exit(asyncio.run(main(sys.argv[1], CONSUMER_CHECKS)))
    if len(sys.argv) == 5 and sys.argv[2] == "--creds":
        require_nkeys()
        sys.exit(asyncio.run(main(sys.argv[1], creds_checks(sys.argv[3], sys.argv[4]))))
    if len(sys.argv) == 4:
        sys.exit(asyncio.run(main(sys.argv[1], auth_checks(sys.argv[2], sys.argv[3]))))
    print("usage: py_client.py nats://HOST:PORT|ws://HOST:PORT [USER PASSWORD | --jetstream | --consumers | --creds GOOD BAD]", file=sys.stderr)
    sys.exit(2)
