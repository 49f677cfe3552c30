#!/usr/bin/env python3
"""Writes the seed corpus: fuzz/corpus/<target>/seed-*.

Sources: the differential transcripts (tests/transcripts/*.txt) become
client_parser inputs (their bytes on connection A) and server_machine scripts
(every connection, split reads, waits and closes kept); the rest are edge
cases from the unit tests written out below. Run from anywhere; rerunning
rewrites the seed-* files only (files libFuzzer added are left alone).
"""
import os, re, struct, pathlib

ROOT = pathlib.Path(__file__).resolve().parent
TRANSCRIPTS = ROOT.parent / "tests" / "transcripts"
CORPUS = ROOT / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + name)).write_bytes(data)


def unescape(text):
    chunks, cur, i = [], bytearray(), 0
    b = text.encode()
    while i < len(b):
        c = b[i]; i += 1
        if c != 0x5C:
            cur.append(c); continue
        e = chr(b[i]); i += 1
        if e == 'r': cur += b'\r'
        elif e == 'n': cur += b'\n'
        elif e == 't': cur += b'\t'
        elif e == '\\': cur += b'\\'
        elif e == 'x': cur.append(int(b[i:i+2], 16)); i += 2
        elif e == '{':
            end = b.index(b'}', i)
            rep, n = b[i:end].rsplit(b'*', 1)
            cur += rep * min(int(n), 3000); i = end + 1
        elif e == '|': chunks.append(bytes(cur)); cur = bytearray()
    chunks.append(bytes(cur))
    return [c for c in chunks if c]


def server_config(lines):
    pending, limits, access, timing = 10, 0, 0, 0
    for line in lines:
        if line.startswith("server:"):
            if "--auth" in line: access = 1
            if "--user" in line: access = 2
        if line.startswith("config:"):
            key = line[7:].split(":")[0].split("{")[0].strip()
            # Transcripts about users, permissions and accounts run in the
            # target's accounts mode (its own users, see accounts_config).
            if key in ("authorization", "accounts", "no_auth_user", "mappings"):
                access = (access & ~3) | 3
            if key == "max_connections": access |= 2 << 2
            if key == "max_control_line": limits |= 2 << 3
            if key == "max_payload": limits |= 1
            if key == "max_subscriptions": limits |= 2 << 6
    return bytes([pending, limits, access, timing])


def read_event(slot, data):
    out = b""
    for i in range(0, len(data), 65535):
        part = data[i:i+65535]
        out += bytes([1, slot]) + struct.pack("<H", len(part)) + part
    return out


def transcripts():
    for path in sorted(TRANSCRIPTS.glob("*.txt")):
        lines = [l.strip() for l in path.read_text().splitlines()]
        slots, events, parser_bytes = {}, b"", b""
        def slot_of(name):
            if name not in slots:
                slots[name] = len(slots) % 4
                nonlocal events
                events += bytes([0, slots[name] | 0x80])
            return slots[name]
        for line in lines:
            if not line or line.startswith("#") or ":" in line.split(">")[0] and not ">" in line:
                continue
            if line.startswith(("server:", "config:", "known-difference:")):
                continue
            if line.startswith("wait "):
                events += bytes([2]) + struct.pack("<H", min(int(line[5:]) // 10, 65535))
            elif line == "mark":
                continue
            elif line.startswith("open "):
                slot_of(line[5:].strip())
            elif line.startswith("close "):
                events += bytes([5, slot_of(line[6:].strip())])
            elif ">" in line:
                pos = line.index(">")
                name = line[:pos].strip() or "A"
                body = line[pos+1:]
                body = body[1:] if body.startswith(" ") else body
                slot = slot_of(name)
                for chunk in unescape(body.rstrip()):
                    events += read_event(slot, chunk)
                    if name == "A":
                        parser_bytes += chunk
        events += bytes([2, 0x10, 0x27])  # 100 s pass
        stem = path.stem
        write("server_machine", stem, server_config(lines) + events)
        # client_parser: default-ish limits (1024 control line, 4080 payload), headers on.
        write("client_parser", stem, bytes([255, 255, 0x80 | 7]) + parser_bytes)
        if stem == "split-frames":
            write("client_parser", stem + "-bytewise", bytes([255, 255, 0x80]) + parser_bytes)


def parser_edges():
    cases = {
        "pub-basic": b"PUB foo 5\r\nhello\r\n",
        "pub-reply": b"PUB foo bar 0\r\n\r\n",
        "hpub": b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        "sub-queue": b"SUB foo q 1\r\nUNSUB 1 5\r\n",
        "connect": b'CONNECT {"verbose":false,"headers":true}\r\nPING\r\nPONG\r\n',
        "lowercase": b"pub foo 1\r\nx\r\nping\r\n",
        "bare-lf": b"PING\nPUB a 1\nx\n",
        "info-ok": b'INFO {"server_id":"x"}\r\n+OK\r\n',
        "err": b"-ERR 'oops'\r\n",
        "hmsg": b"HMSG foo 1 0 0\r\n\r\n",
        "bad-size": b"PUB foo 1234567890\r\n",
        "payload-too-big": b"PUB foo 9999\r\n",
        "tabs": b"SUB\tfoo\t\t1\r\n",
        "unknown": b"FOO\r\n",
    }
    for name, data in cases.items():
        write("client_parser", name, bytes([255, 255, 0x80 | 3]) + data)
    write("client_parser", "tiny-limits", bytes([1, 1, 0x80 | 1]) + b"PUB foo.bar 17\r\n0123456789abcdefg\r\n")


def server_edges():
    # Slow consumer: two connections, a slow subscriber, a publisher flooding.
    sub = b'CONNECT {"verbose":false}\r\nSUB > 1\r\nSUB foo q 2\r\n'
    pub = b'CONNECT {"verbose":false}\r\n' + b"PUB foo 100\r\n" + b"x" * 100 + b"\r\n"
    ev = bytes([0, 0, 0, 0x81]) + read_event(0, sub) + read_event(1, pub * 20)
    ev += bytes([4, 0, 50, 0]) + bytes([3, 0]) + read_event(1, pub * 5)
    write("server_machine", "slow-consumer", bytes([0, 0, 0, 0]) + ev)
    # PING flood without reading.
    ev = bytes([0, 0]) + read_event(0, b"CONNECT {}\r\n" + b"PING\r\n" * 300)
    write("server_machine", "ping-flood", bytes([2, 0, 0, 0]) + ev)
    # Keepalive: stale connection after pings go unanswered; auth timeout.
    ev = bytes([0, 0x80, 0, 0x81]) + read_event(0, b"CONNECT {}\r\n") + bytes([2, 200, 0]) * 6
    write("server_machine", "stale", bytes([10, 0, 2, 1 | (1 << 3) | (2 << 5)]) + ev)
    # Auto-unsubscribe, queue groups, lame duck, write stall.
    ev = bytes([0, 0x80, 0, 0x81])
    ev += read_event(0, b'CONNECT {"verbose":true,"headers":true,"no_responders":true}\r\nSUB a 1\r\nSUB a g 2\r\nSUB a g 3\r\nUNSUB 1 2\r\nPUB a r 1\r\nx\r\nSUB r 9\r\nHPUB nobody r 12 12\r\nNATS/1.0\r\n\r\n\r\n')
    ev += read_event(1, b'CONNECT {}\r\nSUB a g 1\r\nPUB a 0\r\n\r\nPUB a 0\r\n\r\nPUB a 0\r\n\r\n')
    ev += bytes([7]) + bytes([6, 1]) + bytes([5, 0])
    write("server_machine", "mixed", bytes([12, 0, 0, 0]) + ev)
    # Accounts mode (byte 2 = 3): a restricted user in A, a user of B, and
    # the no_auth_user; violations, imports across accounts, responses, mappings.
    ev = bytes([0, 0x80, 0, 0x81, 0, 0x82])
    ev += read_event(0, b'CONNECT {"user":"a","pass":"b","verbose":false,"headers":true}\r\n'
                        b'SUB foo.* 1\r\nSUB q.x w 2\r\nSUB q.y w 3\r\nSUB bar 4\r\nSUB svc.* 5\r\nSUB n.> 6\r\n'
                        b'PUB foo.no 0\r\n\r\nPUB m.x 1\r\nm\r\nPUB m.y 1\r\nm\r\n')
    ev += read_event(1, b'CONNECT {"user":"c","pass":"d","verbose":false,"headers":true,"no_responders":true}\r\n'
                        b'SUB imp.foo.> 1\r\nSUB r.1 2\r\nPUB call.time r.1 1\r\n?\r\nPUB call.none r.1 0\r\n\r\n')
    ev += read_event(0, b'PUB foo.bar 2\r\nhi\r\nPUB foo.secret 1\r\ns\r\nPUB r.1 1\r\nx\r\n')
    ev += read_event(2, b'CONNECT {"verbose":false}\r\nSUB > 1\r\nPUB foo.q 0\r\n\r\n')
    ev += read_event(1, b'CONNECT {"user":"a","pass":"b"}\r\nPUB x 0\r\n\r\n')
    ev += bytes([2, 200, 0])
    write("server_machine", "accounts", bytes([12, 0, 3, 0]) + ev)


def small_targets():
    # header_block
    for name, data in {
        "plain": b"NATS/1.0\r\n\r\n",
        "fields": b"NATS/1.0\r\nA: b\r\nNats-Msg-Id: 1\r\nA: c\r\n\r\n",
        "status": b"NATS/1.0 503\r\n\r\n",
        "status-desc": b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n",
        "bad-status": b"NATS/1.0 50x\r\n\r\n",
        "unterminated": b"NATS/1.0\r\nA: b\r\n",
        "no-colon": b"NATS/1.0\r\nAb\r\n\r\n",
    }.items():
        write("header_block", name, data)
    # subject: control byte 0 = subject only; 0x80|n = n-byte second string first.
    for i, s in enumerate([b"foo.bar", b"foo.*", b"foo.>", b">", b"*", b".foo", b"foo.", b"foo..bar",
                           b"foo.>.bar", b"foo bar", b"foo.\x00", b"\xff.\xfe", b"", b"foo\tbar", b"a\x0cb"]):
        write("subject", "s%02d" % i, b"\x00" + s)
    for i, (second, s) in enumerate([(b"q", b"foo.bar"), (b"foo.bar", b"foo.*"), (b"a.b.c", b"a.>"),
                                     (b"q 1", b"foo"), (b"foo", b"foo.>"), (b"foo.bar", b"*.*")]):
        write("subject", "pair%02d" % i, bytes([0x80 | len(second)]) + second + s)
    # sublist_ops: arbitrary bytes; a few patterns of plausible op streams.
    write("sublist_ops", "ops0", bytes(range(64)))
    write("sublist_ops", "ops1", bytes([3]) + bytes([0, 2, 0, 1, 4, 0, 1, 7, 3, 2, 0, 3]) * 8)
    write("sublist_ops", "ops2", bytes([1, 0, 1, 0, 3, 1, 1, 5, 2, 0, 3, 1, 3, 0, 1]) * 10)
    # connect_json
    for name, data in {
        "empty-object": b"{}",
        "full": b'{"verbose":false,"pedantic":true,"tls_required":false,"name":"n","lang":"rust","version":"1.0","protocol":1,"echo":true,"headers":true,"no_responders":true,"user":"a","pass":"b","auth_token":"tok"}',
        "go-case": b'{"VERBOSE":true,"Echo":false}',
        "null-fields": b'{"name":null,"protocol":null}',
        "bad-types": b'{"verbose":"yes"}',
        "float-protocol": b'{"protocol":1.0}',
        "escapes": b'{"name":"\\u00e9\\ud83d\\ude00\\n"}',
        "nested": b'{"x":[{"y":{"z":[1,2,3]}}]}',
        "invalid": b'{"verbose":',
        "dup-keys": b'{"echo":true,"echo":false}',
    }.items():
        write("connect_json", name, data)
    # conf: main \0 a.conf \0 b.conf \0 c.conf \0 $A \0 $B \0 $C
    confs = {
        "basic": b"port: 4222\nmax_payload: 1MB\nserver_name: n1\n",
        "auth": b"authorization {\n  user: a\n  password: \"b\"\n  timeout: 2\n}\n",
        "json": b'{"port": 4222, "max_connections": 10, "ping_interval": "2m"}',
        "vars": b"index = 22\nnest {\n  index = 11\n  foo = $index\n  deeper { bar = $index }\n}\nbar = $index\nlist = [ { v = $index } ]",
        "include": b"include a.conf\nport: $A\n\0server_name: x\ninclude 'sub/b.conf'\n\0max_payload: 2k\n\0\x008\0",
        "include-cycle": b"include a.conf\n\0include a.conf\n",
        "env-cycle": b"a = $A\n\0\0\0\0$B\0$A\0",
        "blocks": b"s = (\n  raw text\n)\narr = [1, 2, 3]\nt = 2021-01-01T00:00:00Z\nf = 1.5\nb = true\n// c\n# d\n",
        "sizes": b"a = 1kb\nb = 1KiB\nc = 9223372036854775807\nd = 1kbb\n",
        "dup-and-nesting": b"a { b { c { d { e [ [ [ { f: 1 } ] ] ] } } } }\n",
        "users": b'authorization {\n  default_permissions: { publish: "p.>", allow_responses: { max: 2, expires: "1s" } }\n  users: [ {user: a, password: b, permissions: { publish: { allow: ["x.>"], deny: "x.y" }, subscribe: ["s.*", "q.> w"] }}, {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4} ]\n}\nno_auth_user: a\n',
        "accounts": b'accounts {\n  A: { users: [ {user: a, password: b} ], exports: [ {stream: "f.>"}, {service: "s.*", accounts: [B], response_type: stream, threshold: "5s"} ], mappings: { "m.*": "n.$1" } }\n  B: { users: [ {user: c, password: d} ], imports: [ {stream: {account: A, subject: "f.>"}, prefix: p}, {service: {account: A, subject: "s.x"}, to: x} ] }\n}\nmappings { "w": [ {destination: l, weight: 40%}, {destination: r, weight: 60} ] }\nsystem_account: A\n',
        "tls": b'tls { cert_file: a.pem, key_file: a.key, ca_file: ca.pem, verify_and_map: true, timeout: "1s", handshake_first: true }\nallow_non_tls: false\nlame_duck_duration: "30s"\nlame_duck_grace_period: "5s"\n',
    }
    for name, data in confs.items():
        write("conf", name, data)

    confs_ws = {
        "websocket": b'websocket { listen: "127.0.0.1:-1", no_tls: true, same_origin: true, allowed_origins: ["http://a"], handshake_timeout: "2s", headers { X-A: b }, compression: false }\n',
    }
    for name, data in confs_ws.items():
        write("conf", name, data)


def mask(payload, key=b"\x11\x7e\xa5\x03"):
    return key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_frame(b0, payload, masked=True):
    n = len(payload)
    bit = 0x80 if masked else 0
    if n <= 125:
        head = bytes([b0, bit | n])
    elif n < 65536:
        head = bytes([b0, bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, bit | 127]) + struct.pack(">Q", n)
    return head + (mask(payload) if masked else payload)


def websocket_targets():
    frames = {
        "pub": ws_frame(0x82, b"CONNECT {}\r\nPUB a 2\r\nhi\r\n"),
        "fragments": ws_frame(0x02, b"PUB a 5\r\nhe") + ws_frame(0x89, b"p") + ws_frame(0x80, b"llo\r\n"),
        "long": ws_frame(0x82, b"x" * 300) + ws_frame(0x81, b"y" * 70000),
        "close": ws_frame(0x88, b"\x03\xe8bye") + ws_frame(0x82, b"after"),
        "close-bad": ws_frame(0x88, b"\x00\x01") + ws_frame(0x88, b"\x03"),
        "unmasked": ws_frame(0x82, b"PING\r\n", masked=False),
        "bad-opcode": ws_frame(0x83, b"x"),
        "huge-length": bytes([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]) + b"\x01\x02\x03\x04",
    }
    for name, data in frames.items():
        write("websocket_frames", name, b"\x01" + data)
        write("websocket_frames", name + "-nomask", b"\x5a" + data)
    import zlib

    def deflate(data):
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4]
    msg = deflate(b"CONNECT {}\r\nSUB a 1\r\nPUB a 5\r\nhello\r\n" * 3)
    compressed = {
        "deflate": ws_frame(0xc2, msg) + ws_frame(0x82, b"PING\r\n"),
        "deflate-fragments": ws_frame(0x42, msg[:5]) + ws_frame(0x89, b"") + ws_frame(0x80, msg[5:]),
        "deflate-bomb": ws_frame(0xc2, deflate(b"a" * 300000)),
        "deflate-junk": ws_frame(0xc2, b"\xff" * 20),
    }
    for name, data in compressed.items():
        write("websocket_frames", name, b"\x03" + data)
    good = (b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
    requests = {
        "good": good,
        "origin": good.replace(b"\r\n\r\n", b"\r\nOrigin: http://a.example.com\r\n\r\n"),
        "origin-bad": good.replace(b"\r\n\r\n", b"\r\nOrigin: null\r\n\r\n"),
        "post": good.replace(b"GET", b"POST"),
        "http10": good.replace(b"HTTP/1.1\r\nHost: localhost:8080", b"HTTP/1.0"),
        "bare-lf": good.replace(b"\r\n", b"\n"),
        "no-host": good.replace(b"Host: localhost:8080\r\n", b""),
        "garbage": b"\x16\x03\x01\x00\xa5\r\n\r\n",
        "no-masking": good.replace(b"\r\n\r\n", b"\r\nNats-No-Masking: true\r\nUser-Agent: Mozilla/5.0\r\n\r\n"),
    }
    for name, data in requests.items():
        write("websocket_handshake", name, b"\x06" + data)


def jetstream_consumer_seeds():
    """Seeds for jetstream_consumer: a control byte, then records `op body`
    split at NUL (op % 8 the kind, op // 8 the choice; see the target)."""

    def rec(kind, choice, body=b""):
        return bytes([kind + 8 * choice]) + body

    def api(index, body=b""):
        return rec(0, index, body)

    def pull(consumer, body=b""):
        return rec(1, consumer, body)

    def publish(subject, body):
        return rec(2, subject, body)

    def ack(delivery, body, sync=False):
        return rec(3, 2 * delivery + (1 if sync else 0), body)

    def ack_on(subject, body, consumer=0):
        return rec(4, consumer, subject + b" " + body)

    def time(tenths):
        return rec(5, tenths - 1)

    sync = rec(6, 0)

    def interest(on):
        return rec(7, 1 if on else 0)

    seeds = {
        "pull-ack": (0, [
            api(1, b'{"stream_name":"S","config":{"name":"C","ack_policy":"explicit","max_waiting":2}}'),
            publish(0, b"one"), publish(1, b"two"), publish(2, b"three"),
            pull(0, b'{"batch":2}'),
            ack(0, b"+ACK"), ack(1, b"-NAK", sync=True),
            pull(0, b"1"), ack(2, b"+TERM no", sync=True), ack(2, b"+WPI"),
            pull(0, b'{"batch":3,"no_wait":true}'),
            api(5), api(7), api(8, b'{"offset":0}'), time(30), api(9),
        ]),
        "expires-heartbeat-redelivery": (0, [
            api(3, b'{"stream_name":"S","config":{"durable_name":"D","ack_policy":"explicit","ack_wait":1000000000,"max_deliver":3,"backoff":[1000000000,2000000000]}}'),
            pull(1, b'{"batch":5,"expires":500000000,"idle_heartbeat":100000000}'),
            time(2), time(2), publish(0, b"x"), time(5),
            pull(1, b'{"batch":1,"expires":5000000000}'), time(12), time(25),
            pull(1, b'{"batch":1,"max_bytes":3}'),
            pull(1, b'{"batch":1,"expires":1000000000}'), pull(1, b'{"batch":1,"expires":1000000000}'),
            pull(1, b'{"batch":1,"expires":1000000000}'), pull(1, b'{"batch":1,"expires":1000000000}'),
            api(6), api(10), time(20),
        ]),
        "push-flow-control": (2, [
            api(4, b'{"stream_name":"S","config":{"name":"P","deliver_subject":"push.p","ack_policy":"explicit","flow_control":true,"idle_heartbeat":1000000000}}'),
            sync, interest(True), publish(0, b"a"), sync, publish(1, b"b"), sync, time(15),
            ack(0, b"+ACK", sync=True), interest(False), time(32), interest(True),
            ack_on(b"$JS.ACK.S.P.1.2.2.0.0", b"+ACK"), ack_on(b"$JS.FC.S.P.abc", b""),
        ]),
        "flow-control-acks": (2, [
            api(4, b'{"stream_name":"S","config":{"name":"P","deliver_subject":"push.p","ack_policy":"flow_control","max_ack_pending":2}}'),
            sync, interest(True), publish(0, b"a"), sync, publish(1, b"b"), sync, publish(2, b"c"), sync,
            ack_on(b"$JS.FC.S.P.0001", b"NATS/1.0\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n"),
            time(12), ack_on(b"$JS.FC.S.P.0002", b"NATS/1.0\r\nNats-Last-Consumer: 9\r\nNats-Last-Stream: x\r\n\r\n"),
            ack(0, b"+ACK", sync=True), time(12),
        ]),
        "bad-input": (1, [
            api(2, b'{"stream_name":"S","config":{"name":"F","filter_subject":"s.1","ack_policy":"all"}}'),
            api(0, b'{"stream_name":"S","config":{"ack_policy":"none","inactive_threshold":1000000000}}'),
            api(1, b'{'), api(1, b''), api(11, b'{"stream_name":"T","config":{"name":"C"}}'),
            publish(1, b"f"), publish(1, b"g"),
            pull(2, b"-1"), pull(2, b'{"batch":-1}'), pull(2, b"hello"),
            pull(2, b'{"batch":1,"expires":9223372036854775807,"no_wait":true}'),
            pull(2, b'{"batch":1,"idle_heartbeat":5}'), pull(4, b"1"),
            ack(0, b"+XYZ"), ack(0, b"+NXT {\"batch\":2}", sync=True), ack(1, b"-NAK {\"delay\":1000}"),
            ack_on(b"$JS.ACK.S.F.1", b"+ACK"), ack_on(b"$JS.ACK.S.F.1.999.999.0.0", b"+ACK"),
            ack_on(b"$JS.ACK.D.H.S.F.1.1.1.0.0.R", b"+ACK"),
            api(13, b'{"seq":1}'), api(12, b'{}'), api(15), time(10),
        ]),
    }
    for name, (control, records) in seeds.items():
        write("jetstream_consumer", name, bytes([control]) + b"\0".join(records))


def jetstream_restore_seeds():
    """Backups before compression (control bit 7: the target compresses
    them): a whole archive, cut ones, a foreign one; and compressed bytes
    as nats-server writes them (S2's identifier)."""
    def uvarint(v):
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7f) | 0x80); v >>= 7
        out.append(v)
        return bytes(out)
    def entry(name, ts=0, seq=0, hdr=b"", payload=b""):
        zz = (ts << 1) ^ (ts >> 63)
        return (uvarint(len(name)) + uvarint(zz & (2**64 - 1)) + uvarint(seq) +
                uvarint(len(hdr)) + uvarint(len(payload)) + name + hdr + payload)
    state = b'{"messages":3,"bytes":90,"first_seq":2,"last_seq":7,"consumer_count":1}'
    consumer = (b'{"config":{"durable_name":"C","name":"C","ack_policy":"explicit","deliver_policy":"all",'
                b'"replay_policy":"instant"},"state":{"delivered":{"consumer_seq":2,"stream_seq":3},'
                b'"ack_floor":{"consumer_seq":1,"stream_seq":2},"pending":{"3":{"Sequence":2,"Timestamp":5}}}}')
    hdr = b"NATS/1.0\r\nNats-TTL: 1s\r\n\r\n"
    body = (b"NATSARC1" + entry(b"state.json", 5, 0, b"", state) + entry(b"consumers/C", 5, 0, b"", consumer)
            + entry(b"r.a", 10, 2, b"", b"one") + entry(b"r.b", 11, 4, hdr, b"two")
            + entry(b"r.c", 12, 5, b"", b"three"))
    end = entry(b"")
    write("jetstream_restore", "whole", bytes([0x80 | 3]) + body + end)
    write("jetstream_restore", "whole-small-chunks", bytes([0x80]) + body + end)
    write("jetstream_restore", "no-end", bytes([0x80 | 1]) + body)
    write("jetstream_restore", "cut-entry", bytes([0x80 | 1]) + body[:-4])
    write("jetstream_restore", "empty-stream", bytes([0x80]) + b"NATSARC1" +
          entry(b"state.json", 0, 0, b"", b'{"first_seq":9,"last_seq":8}') + end)
    write("jetstream_restore", "tar", bytes([0x80]) + b"meta.inf" + bytes(504))
    write("jetstream_restore", "s2", bytes([2]) + b"\xff\x06\x00\x00S2sTwO\x00\x05\x00\x00abcde")
    # The same archive in S2's framing (control bit 6), and real backups
    # nats-server made (as a client sends them).
    write("jetstream_restore", "whole-s2", bytes([0xc0 | 3]) + body + end)
    write("jetstream_restore", "tar-s2", bytes([0xc0]) + b"meta.inf" + bytes(249) + b"ustar\x0000" + bytes(248))
    testdata = ROOT.parent / "core" / "src" / "jetstream" / "testdata"
    for name in ("file", "memory"):
        backup = (testdata / f"nats-server-{name}-stream.backup").read_bytes()
        write("jetstream_restore", f"nats-server-{name}", bytes([1]) + backup)


def jetstream_feed_seeds():
    """Seeds for jetstream_feed: a control byte, then records `op body`
    split at NUL (op % 4 the kind, op // 4 odd: the source; see the target)."""

    def rec(kind, source, body=b""):
        # 8 more: never a NUL, the same kind and feed.
        return bytes([8 + kind + 4 * source]) + body

    # Answer both feeds validly, deliver in order, with a gap, old ones,
    # flow control and heartbeats, then silence.
    records = [rec(0, 0), rec(0, 1)]
    for seq in range(1, 4):
        records += [rec(2, 0, bytes([1, seq, seq, 1])), rec(2, 1, bytes([1, seq, seq, 4 - seq]))]
    records += [rec(2, 0, bytes([1, 6, 4, 1])), rec(2, 0, bytes([1, 2, 5, 1])),
                rec(3, 1, b"1"), rec(3, 1, b"4"), rec(3, 0), rec(3, 0), rec(0, 0),
                rec(2, 0, bytes([1, 9, 1, 1])), rec(1, 1, b"$JS.ACK.O.c.1.1.1.1.0 x")]
    write("jetstream_feed", "in-order", bytes([0]) + b"\0".join(records))
    write("jetstream_feed", "file-mirror", bytes([1]) + b"\0".join(records))
    errors = [rec(0, 0, b'{"error":{"code":404,"err_code":10059,"description":"stream not found"}}'),
              rec(0, 1, b'{"error":{"code":400,"err_code":10225,"description":"x"}}'),
              rec(0, 1, b"not json"), rec(3, 0), rec(3, 0), rec(3, 0)]
    write("jetstream_feed", "errors", bytes([0]) + b"\0".join(errors))


def fast_batch_seeds():
    # control byte (0 store, 1 duplicate, 2 refuse, 4 timeout first,
    # 8 server full) then a reply subject; records split at NUL.
    def r(control, id, flow, gap, seq, op):
        return bytes([control]) + b"_INBOX.p.%s.%s.%s.%d.%d.$FI" % (id, flow, gap, seq, op)
    write("fast_batch", "in-order", b"\0".join(
        [r(0, b"a", b"2", b"fail", 1, 0)] + [r(0, b"a", b"2", b"fail", n, 1) for n in range(2, 8)]
        + [r(0, b"a", b"2", b"fail", 8, 2)]))
    write("fast_batch", "gaps", b"\0".join([
        r(0, b"g", b"10", b"ok", 1, 0), r(0, b"g", b"10", b"ok", 3, 1), r(0, b"g", b"10", b"ok", 4, 4),
        r(2, b"g", b"10", b"ok", 5, 1), r(0, b"g", b"10", b"ok", 6, 3),
        r(0, b"f", b"10", b"fail", 1, 0), r(0, b"f", b"10", b"fail", 3, 1), r(0, b"f", b"10", b"fail", 4, 2)]))
    write("fast_batch", "duplicates", b"\0".join([
        r(0, b"d", b"0", b"fail", 1, 0), r(1, b"d", b"0", b"fail", 2, 1), r(1, b"d", b"0", b"fail", 3, 2),
        r(1, b"e", b"99999", b"fail", 1, 2), r(2, b"h", b"1", b"fail", 1, 0)]))
    write("fast_batch", "many", b"\0".join(
        [r(0, b"m%d" % n, b"5", b"fail", 1, 0) for n in range(6)]
        + [r(8, b"full", b"5", b"fail", 1, 0), r(4, b"m0", b"5", b"fail", 2, 1), r(0, b"m1", b"5", b"ok", 1, 4)]))
    write("fast_batch", "malformed", b"\0".join([
        b"\x00x.$FI", b"\x00a.b.10.maybe.1.0.$FI", b"\x00a.b.10.fail.1.9.$FI", b"\x00.$FI",
        b"\x00a.b.9223372036854775808.fail.1.0.$FI", b"\x00a.b.10.fail.18446744073709551615.2.$FI"]))


transcripts()
parser_edges()
server_edges()
small_targets()
websocket_targets()
jetstream_consumer_seeds()
jetstream_restore_seeds()
jetstream_feed_seeds()
fast_batch_seeds()
for d in sorted(CORPUS.iterdir()):
    print(d.name, len(list(d.iterdir())))
