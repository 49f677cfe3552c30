//! Tests of the config format as a whole: every syntax form, variables,
//! includes through an in-memory [`ConfSource`], errors and their positions,
//! snapshots of parsed trees, and properties (no input panics; every bound
//! holds).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::value::render_tree;
use super::*;

/// Files and environment variables held in memory. Includes resolve as the
/// reference's do: relative to the including file's directory.
#[derive(Default)]
struct FakeSource {
    files: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

impl FakeSource {
    fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }

    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }
}

/// Joins `path` to the directory of `from` and folds `.` and `..`.
fn join(from: &str, path: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.retain(|part| !part.is_empty());
    parts.join("/")
}

impl ConfSource for FakeSource {
    fn read_include(&self, from: &str, path: &str) -> Result<(String, String), String> {
        let resolved = join(from, path);
        match self.files.get(&resolved) {
            Some(text) => Ok((resolved, text.clone())),
            None => Err(format!("open {resolved}: no such file or directory")),
        }
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
}

fn parse_with(text: &str, source: &dyn ConfSource) -> Result<ConfValue, ConfError> {
    parse("main.conf", text, source)
}

fn root(text: &str) -> ConfMap {
    match parse_with(text, &NoSource) {
        Ok(ConfValue {
            kind: ValueKind::Map(map),
            ..
        }) => map,
        other => panic!("expected a map from {text:?}, got {other:?}"),
    }
}

fn error(text: &str) -> ConfError {
    parse_with(text, &NoSource).expect_err(text)
}

fn kinds(map: &ConfMap) -> Vec<(&str, &ValueKind)> {
    map.iter()
        .map(|entry| (entry.key.as_str(), &entry.value.kind))
        .collect()
}

fn string(text: &str) -> ValueKind {
    ValueKind::String(text.to_string())
}

fn at(error: &ConfError) -> (u32, u32) {
    (error.position.line, error.position.column)
}

#[test]
fn every_assignment_form() {
    let map = root("a = 1\nb: 2\nc 3\nd=4\ne:5\nf\t6\n\"g h\" = 7\n'i' : 8\n");
    assert_eq!(
        kinds(&map),
        [
            ("a", &ValueKind::Integer(1)),
            ("b", &ValueKind::Integer(2)),
            ("c", &ValueKind::Integer(3)),
            ("d", &ValueKind::Integer(4)),
            ("e", &ValueKind::Integer(5)),
            ("f", &ValueKind::Integer(6)),
            ("g h", &ValueKind::Integer(7)),
            ("i", &ValueKind::Integer(8)),
        ]
    );
}

#[test]
fn statements_end_at_new_lines_semicolons_and_commas() {
    let map = root("a = 1; b = 2, c = x;\r\nd = y");
    assert_eq!(
        kinds(&map),
        [
            ("a", &ValueKind::Integer(1)),
            ("b", &ValueKind::Integer(2)),
            ("c", &string("x")),
            ("d", &string("y")),
        ]
    );
    // New lines may separate a key from its value, but not follow an `=`.
    assert_eq!(
        kinds(&root("port\n\n  4222")),
        [("port", &ValueKind::Integer(4222))]
    );
    assert_eq!(
        error("port =\n4222").kind,
        ConfErrorKind::Syntax("Expected value but found new line".into())
    );
}

#[test]
fn nested_maps_and_arrays() {
    let map = root(
        "cluster {\n  port: 6222\n  auth { user: a; pass = b }\n  routes = [\n    nats://a:1\n    nats://b:2, nats://c:3,\n  ]\n}\nempty {}\nnone []\nlist [[1, 2], [], {x: 1}]",
    );
    let cluster = map.get("cluster").unwrap().as_map().unwrap();
    assert_eq!(cluster.get("port").unwrap().as_i64(), Some(6222));
    let auth = cluster.get("auth").unwrap().as_map().unwrap();
    assert_eq!(auth.get("user").unwrap().as_str(), Some("a"));
    assert_eq!(auth.get("pass").unwrap().as_str(), Some("b"));
    let routes: Vec<_> = cluster
        .get("routes")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|route| route.as_str().unwrap())
        .collect();
    assert_eq!(routes, ["nats://a:1", "nats://b:2", "nats://c:3"]);
    assert!(map.get("empty").unwrap().as_map().unwrap().is_empty());
    assert!(map.get("none").unwrap().as_array().unwrap().is_empty());
    let list = map.get("list").unwrap().as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].as_array().unwrap().len(), 2);
    assert_eq!(
        list[2].as_map().unwrap().get("x").unwrap().as_i64(),
        Some(1)
    );
}

#[test]
fn top_level_blocks_and_json() {
    let expected = [("listen", &string("0.0.0.0:4222"))];
    assert_eq!(kinds(&root("{ listen: 0.0.0.0:4222 }")), expected);
    assert_eq!(
        kinds(&root(
            "{\n  {\n    listen: 0.0.0.0:4222 // note\n  }\n  # c\n}\n# c2\n"
        )),
        expected
    );
    let json = root(
        r#"{
          "http_port": 8227,
          "write_deadline": "1h",
          "cluster": {"port": 6222, "routes": ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]},
          "jetstream": {"store_dir": "/tmp/nats"
                        "max_mem": 1000000,}
        }"#,
    );
    assert_eq!(json.len(), 4);
    assert_eq!(json.get("write_deadline").unwrap().as_str(), Some("1h"));
    assert!(root("{}").is_empty());
    // A stray closing brace after the last value is accepted.
    assert_eq!(root("accounts { users = [{}]}\n}\n").len(), 1);
    assert_eq!(root("port = 1 }").len(), 1);
    // An unclosed block is accepted once its last line has ended.
    assert_eq!(root("{ port = 1\n").len(), 1);
    assert_eq!(
        error("{ port = 1").kind,
        ConfErrorKind::Syntax(
            "Expected a block-level value to end with a new line, comment or EOF, but got 'EOF' \
             instead."
                .into()
        )
    );
}

#[test]
fn comments_of_both_styles() {
    let map = root(
        "# hash\n// slashes\na = 1 # trailing\nb = 2 // trailing\nc = [ # in array\n  1 // one\n  2\n]\nd { # in map\n  e = x#y // the hash is part of x#y\n}\n",
    );
    assert_eq!(map.get("a").unwrap().as_i64(), Some(1));
    assert_eq!(map.get("b").unwrap().as_i64(), Some(2));
    assert_eq!(map.get("c").unwrap().as_array().unwrap().len(), 2);
    let d = map.get("d").unwrap().as_map().unwrap();
    assert_eq!(d.get("e").unwrap().as_str(), Some("x#y"));
    assert!(root("# only\n// comments\n").is_empty());
    assert!(root("").is_empty());
}

#[test]
fn quotes_and_escapes() {
    let map = root(
        r#"a = "tab\tnl\ncr\rquote\"back\\hex\x41"
b = 'raw \t "double" stays'
c = 'multi
line'
d = "über"
e = plain\x41text
f = ""
"#,
    );
    assert_eq!(
        map.get("a").unwrap().as_str(),
        Some("tab\tnl\ncr\rquote\"back\\hexA")
    );
    assert_eq!(
        map.get("b").unwrap().as_str(),
        Some("raw \\t \"double\" stays")
    );
    assert_eq!(map.get("c").unwrap().as_str(), Some("multi\nline"));
    assert_eq!(map.get("d").unwrap().as_str(), Some("über"));
    assert_eq!(map.get("e").unwrap().as_str(), Some("plainAtext"));
    assert_eq!(map.get("f").unwrap().as_str(), Some(""));
    assert_eq!(
        error("a = \"bad \\q\"").kind,
        ConfErrorKind::Syntax(
            "Invalid escape character 'q'. Only the following escape characters are allowed: \
             \\xXX, \\t, \\n, \\r, \\\", \\\\."
                .into()
        )
    );
    assert_eq!(
        error("a = \"\\xZZ\"").kind,
        ConfErrorKind::Syntax("Expected two hexadecimal digits after '\\x', but got 'ZZ'".into())
    );
    assert_eq!(error("a = \"\\xff\"").kind, ConfErrorKind::InvalidUtf8);
    assert_eq!(
        error("a = \"open").kind,
        ConfErrorKind::Syntax("Unexpected EOF.".into())
    );
    assert_eq!(
        error("a = 'open").kind,
        ConfErrorKind::Syntax("Unexpected EOF.".into())
    );
}

#[test]
fn block_strings() {
    let map = root("text = (\nline one\n  line two (with parens)\n)\nnext = 1\n");
    assert_eq!(
        map.get("text").unwrap().as_str(),
        Some("\nline one\n  line two (with parens)\n")
    );
    assert_eq!(map.get("next").unwrap().as_i64(), Some(1));
    assert_eq!(
        root("t = (\nx\n)").get("t").unwrap().as_str(),
        Some("\nx\n")
    );
    assert_eq!(
        error("t = (\nx )\n").kind,
        ConfErrorKind::Syntax("Unexpected EOF processing block.".into())
    );
}

#[test]
fn unquoted_strings_numbers_and_addresses() {
    let map = root(
        "url = nats://user:pw@host:4222\naddr = 127.0.0.1:4222\nip = 10.0.0.1\nsecs = 10s\ndur = 1h30m\nms = 1ms\nneg = -42\nf = 2.5\nnf = -0.25\nz = 0\nword = hello-world",
    );
    assert_eq!(
        kinds(&map),
        [
            ("url", &string("nats://user:pw@host:4222")),
            ("addr", &string("127.0.0.1:4222")),
            ("ip", &string("10.0.0.1")),
            ("secs", &string("10s")),
            ("dur", &string("1h30m")),
            ("ms", &string("1ms")),
            ("neg", &ValueKind::Integer(-42)),
            ("f", &ValueKind::Float(2.5)),
            ("nf", &ValueKind::Float(-0.25)),
            ("z", &ValueKind::Integer(0)),
            ("word", &string("hello-world")),
        ]
    );
    // Arrays of integers work, including `[1]`, which the reference misreads.
    let numbers = root("a = [1]\nb = [1,2,3]");
    assert_eq!(
        numbers.get("a").unwrap().as_array().unwrap()[0].as_i64(),
        Some(1)
    );
    assert_eq!(numbers.get("b").unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn size_suffixes() {
    let map = root(
        "k = 8k\nkb = 4kb\nki = 3ki\nkib = 4KiB\nm = 1m\nmb = 2MB\nmi = 2Mi\ng = 2g\ngb = 22GB\nt = 1T\ntb = 1tb\np = 1p\npb = 1PB\ne = 1e\neb = 7EB\nneg = -2K",
    );
    let expected: [(&str, i64); 16] = [
        ("k", 8_000),
        ("kb", 4 << 10),
        ("ki", 3 << 10),
        ("kib", 4 << 10),
        ("m", 1_000_000),
        ("mb", 2 << 20),
        ("mi", 2 << 20),
        ("g", 2_000_000_000),
        ("gb", 22 << 30),
        ("t", 1_000_000_000_000),
        ("tb", 1 << 40),
        ("p", 1_000_000_000_000_000),
        ("pb", 1 << 50),
        ("e", 1_000_000_000_000_000_000),
        ("eb", 7 << 60),
        ("neg", -2_000),
    ];
    for (key, number) in expected {
        assert_eq!(map.get(key).unwrap().as_i64(), Some(number), "{key}");
    }
    assert_eq!(
        error("a = 8EB").kind,
        ConfErrorKind::IntegerOutOfRange("8EB".into())
    );
    assert_eq!(
        error("a = 99999999999999999999").kind,
        ConfErrorKind::IntegerOutOfRange("99999999999999999999".into())
    );
    assert_eq!(
        error("a = 1kbb").kind,
        ConfErrorKind::InvalidSizeSuffix("1kbb".into())
    );
}

#[test]
fn booleans_in_any_case() {
    let map =
        root("a = true\nb = FALSE\nc = Yes\nd = no\ne = ON\nf = off\ng = \"true\"\nh = truex");
    assert_eq!(
        kinds(&map),
        [
            ("a", &ValueKind::Bool(true)),
            ("b", &ValueKind::Bool(false)),
            ("c", &ValueKind::Bool(true)),
            ("d", &ValueKind::Bool(false)),
            ("e", &ValueKind::Bool(true)),
            ("f", &ValueKind::Bool(false)),
            ("g", &string("true")),
            ("h", &string("truex")),
        ]
    );
}

#[test]
fn datetimes() {
    let map = root("now = 2016-05-04T18:53:41Z");
    assert_eq!(
        map.get("now").unwrap().kind,
        ValueKind::DateTime(ConfDateTime::parse("2016-05-04T18:53:41Z").unwrap())
    );
    assert_eq!(
        error("a = 12-3").kind,
        ConfErrorKind::Syntax("All ISO8601 dates must be in full Zulu form.".into())
    );
    assert_eq!(
        error("a = 2016-05-04").kind,
        ConfErrorKind::Syntax("Expected 'T' in ISO8601 datetime, but found 'EOF' instead.".into())
    );
    assert_eq!(
        error("a = 2016-13-04T18:53:41Z").kind,
        ConfErrorKind::InvalidDateTime("2016-13-04T18:53:41Z".into())
    );
}

#[test]
fn variables_from_the_file_are_scoped_by_maps() {
    let map = root("index = 22\nnest {\n  index = 11\n  foo = $index\n  deeper { bar = $index }\n}\nbar = $index\nlist = [ { v = $index } ]");
    assert_eq!(map.get("bar").unwrap().as_i64(), Some(22));
    let nest = map.get("nest").unwrap().as_map().unwrap();
    assert_eq!(nest.get("foo").unwrap().as_i64(), Some(11));
    let deeper = nest.get("deeper").unwrap().as_map().unwrap();
    assert_eq!(deeper.get("bar").unwrap().as_i64(), Some(11));
    let list = map.get("list").unwrap().as_array().unwrap();
    assert_eq!(
        list[0].as_map().unwrap().get("v").unwrap().as_i64(),
        Some(22)
    );
    // Read entries are marked, which excuses them from "unknown field".
    assert!(map.entry("index").unwrap().is_referenced());
    assert!(!map.entry("bar").unwrap().is_referenced());
    // Whole trees can be copied; the copy sits where `$name` was written.
    let copied = root("a { x = [1, 2] }\nb = $a");
    let b = copied.get("b").unwrap();
    assert_eq!(b.as_map(), copied.get("a").unwrap().as_map());
    assert_eq!((b.position.line, b.position.column), (2, 5));
    // An inner map's keys are gone once it closes; names are case-sensitive.
    let gone = error("authorization { u = x }\nserver_name = $u");
    assert_eq!(
        gone.kind,
        ConfErrorKind::VariableNotFound { name: "u".into() }
    );
    assert_eq!(at(&gone), (2, 15));
    assert!(matches!(
        error("Port = 1\nx = $port").kind,
        ConfErrorKind::VariableNotFound { .. }
    ));
    // A bcrypt hash is not a variable.
    assert_eq!(
        root("password: $2a$11$ooo")
            .get("password")
            .unwrap()
            .as_str(),
        Some("$2a$11$ooo")
    );
}

#[test]
fn variables_from_the_environment() {
    let source = FakeSource::default()
        .env("PORT", "4333")
        .env("NAME", "xyz")
        .env("REF", "$PORT")
        .env("QUOTED", "'3xyz'")
        .env("DIGITS_THEN_TEXT", "3xyz")
        .env("SIZE", "3Gyz")
        .env("LIST", "[1, 2]")
        .env("CYCLE_A", "$CYCLE_B")
        .env("CYCLE_B", "$CYCLE_A")
        .env("BROKEN", "\"open");
    let parsed = parse_with(
        "a = $PORT\nb = $NAME\nc = $REF\nd = $QUOTED\ne = $DIGITS_THEN_TEXT\nf = $SIZE\ng = $LIST",
        &source,
    )
    .unwrap();
    let map = parsed.as_map().unwrap();
    assert_eq!(map.get("a").unwrap().as_i64(), Some(4333));
    assert_eq!(map.get("b").unwrap().as_str(), Some("xyz"));
    assert_eq!(map.get("c").unwrap().as_i64(), Some(4333));
    assert_eq!(map.get("d").unwrap().as_str(), Some("3xyz"));
    assert_eq!(map.get("e").unwrap().as_str(), Some("3xyz"));
    assert_eq!(map.get("f").unwrap().as_str(), Some("3Gyz"));
    let list = map.get("g").unwrap().as_array().unwrap();
    assert_eq!((list[1].position.line, list[1].position.column), (7, 5));
    // The file's own keys come before the environment.
    let shadowed = parse_with("PORT = 1\na = $PORT", &source).unwrap();
    assert_eq!(
        shadowed.as_map().unwrap().get("a").unwrap().as_i64(),
        Some(1)
    );

    let cycle = parse_with("a = $CYCLE_A", &source).unwrap_err();
    assert_eq!(
        cycle.to_string(),
        "main.conf:1:5: variable reference for 'CYCLE_A' could not be parsed: \
         $CYCLE_A:1:4: variable reference for 'CYCLE_B' could not be parsed: \
         $CYCLE_B:1:4: variable reference cycle for 'CYCLE_A'"
    );
    let broken = parse_with("a = $BROKEN", &source).unwrap_err();
    assert!(matches!(broken.kind, ConfErrorKind::VariableInvalid { .. }));
    let missing = parse_with("a = 1\nb = $MISSING", &source).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "main.conf:2:5: variable reference for 'MISSING' can not be found"
    );
}

#[test]
fn includes_resolve_relative_to_the_including_file() {
    let source = FakeSource::default()
        .file(
            "conf/main.conf",
            "include sub/a.conf\nmax_payload = $x\nauth { include 'sub/b.conf'; extra = 1 }",
        )
        .file(
            "conf/sub/a.conf",
            "port = 4444\nx = 5\ninclude \"../common.conf\"",
        )
        .file("conf/common.conf", "debug = true")
        .file("conf/sub/b.conf", "user = alice");
    let text = source.files["conf/main.conf"].clone();
    let parsed = parse("conf/main.conf", &text, &source).unwrap();
    let map = parsed.as_map().unwrap();
    let keys: Vec<_> = map.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(keys, ["port", "x", "debug", "max_payload", "auth"]);
    assert_eq!(map.get("max_payload").unwrap().as_i64(), Some(5));
    assert!(map.entry("x").unwrap().is_referenced());
    let port = map.entry("port").unwrap();
    assert_eq!(&*port.key_position.file, "conf/sub/a.conf");
    let debug = map.entry("debug").unwrap();
    assert_eq!(debug.key_position.to_string(), "conf/common.conf:1:1");
    let auth = map.get("auth").unwrap().as_map().unwrap();
    assert_eq!(auth.get("user").unwrap().as_str(), Some("alice"));
    assert_eq!(auth.get("extra").unwrap().as_i64(), Some(1));
    // The keyword is case-insensitive, and a quoted "include" is a plain key.
    let upper = parse("conf/x.conf", "INCLUDE common.conf", &source).unwrap();
    assert!(upper.as_map().unwrap().get("debug").is_some());
    let quoted = parse("conf/x.conf", "\"include\" common.conf", &source).unwrap();
    assert_eq!(
        quoted.as_map().unwrap().get("include").unwrap().as_str(),
        Some("common.conf")
    );
}

#[test]
fn included_files_do_not_see_the_includers_variables() {
    let source = FakeSource::default().file("uses.conf", "port = $y");
    let error = parse_with("y = 7\ninclude uses.conf", &source).unwrap_err();
    assert_eq!(
        error.to_string(),
        "main.conf:2:1: error parsing include file 'uses.conf', \
         uses.conf:1:8: variable reference for 'y' can not be found"
    );
}

#[test]
fn include_errors() {
    let source = FakeSource::default()
        .file("self.conf", "include self.conf")
        .file("a.conf", "include b.conf")
        .file("b.conf", "include a.conf")
        .file("bad.conf", "port = [");
    let missing = parse_with("include nope.conf", &source).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "main.conf:1:1: error parsing include file 'nope.conf', open nope.conf: no such file or directory"
    );
    let cycle = parse_with("include self.conf", &source).unwrap_err();
    let ConfErrorKind::IncludeInvalid { inner, .. } = cycle.kind else {
        panic!("{cycle:?}");
    };
    assert_eq!(
        inner.kind,
        ConfErrorKind::IncludeCycle {
            path: "self.conf".into()
        }
    );
    assert!(parse_with("include a.conf", &source).is_err());
    let root_cycle = parse(
        "main.conf",
        "include main.conf",
        &FakeSource::default().file("main.conf", ""),
    );
    assert!(matches!(
        root_cycle.unwrap_err().kind,
        ConfErrorKind::IncludeCycle { .. }
    ));
    let bad = parse_with("\n  include bad.conf", &source).unwrap_err();
    assert_eq!(
        bad.to_string(),
        "main.conf:2:3: error parsing include file 'bad.conf', bad.conf:1:9: Unexpected EOF processing array."
    );
    assert_eq!(
        error("include [x]").kind,
        ConfErrorKind::Syntax("Expected include value but found start of an array".into())
    );
}

#[test]
fn include_depth_is_bounded() {
    let mut source = FakeSource::default();
    for level in 0..40 {
        source = source.file(
            &format!("f{level}.conf"),
            &format!("include f{}.conf", level + 1),
        );
    }
    let error = parse_with("include f0.conf", &source).unwrap_err();
    let mut innermost = &error;
    while let ConfErrorKind::IncludeInvalid { inner, .. } = &innermost.kind {
        innermost = inner;
    }
    assert_eq!(
        innermost.kind,
        ConfErrorKind::IncludeTooDeep {
            max: MAX_INCLUDE_DEPTH
        }
    );
}

#[test]
fn errors_carry_line_and_column() {
    let cases: [(&str, (u32, u32), &str); 12] = [
        ("port", (1, 1), "config is invalid: key 'port' has no value"),
        ("a = 1\n  b", (2, 3), "config is invalid: key 'b' has no value"),
        ("= 1", (1, 1), "Unexpected key separator '='"),
        (
            "port = 1 2",
            (1, 10),
            "Expected a top-level value to end with a new line, comment or EOF, but got '2' instead.",
        ),
        (
            "{ a = 1 2 }",
            (1, 9),
            "Expected a block-level value to end with a new line, comment or EOF, but got '2' instead.",
        ),
        ("a = [1,,2]", (1, 8), "Unexpected array value terminator ','."),
        (
            "a = [1 2]",
            (1, 8),
            "Expected an array value terminator ',' or an array terminator ']', but got '2' instead.",
        ),
        ("a {\n  b = 1", (2, 8), "Unexpected EOF processing map."),
        ("a { b }", (1, 5), "config is invalid: key 'b' has no value"),
        ("a { = 1 }", (1, 5), "Unexpected key separator '='."),
        ("a = .5", (1, 5), "Floats must start with a digit"),
        (
            "a = 1.x",
            (1, 7),
            "Floats must have a digit after the '.', but got 'x' instead.",
        ),
    ];
    for (text, position, message) in cases {
        let error = error(text);
        assert_eq!(at(&error), position, "{text:?}: {error}");
        assert_eq!(error.kind.to_string(), message, "{text:?}");
        assert_eq!(&*error.position.file, "main.conf");
    }
    assert_eq!(
        error("a = 1\nb = [1,,2]").to_string(),
        "main.conf:2:8: Unexpected array value terminator ','."
    );
}

#[test]
fn reference_quirks_that_are_kept() {
    // Verified with `nats-server -c f.conf -t` (v2.15.1).
    // `key =` at the very end is an empty string.
    assert_eq!(root("port =").get("port").unwrap().as_str(), Some(""));
    // A duplicated key keeps its first place and its last value.
    let map = root("a = 1\nb = 2\na = 3");
    assert_eq!(
        kinds(&map),
        [("a", &ValueKind::Integer(3)), ("b", &ValueKind::Integer(2))]
    );
    // `${NAME}` is not a special form: `}` ends the unquoted `${NAME`.
    assert_eq!(
        error("port = ${X}").kind,
        ConfErrorKind::VariableNotFound { name: "{X".into() }
    );
    // Unquoted strings stop at `'`, which is swallowed.
    assert_eq!(root("a = it'").get("a").unwrap().as_str(), Some("it"));
    assert!(matches!(error("a = it's").kind, ConfErrorKind::Syntax(_)));
    // A lone '/' after a value is skipped like a blank.
    assert_eq!(
        root("port = 4222 / ").get("port").unwrap().as_i64(),
        Some(4222)
    );
    // Windows line ends.
    assert_eq!(
        root("a = 1\r\nb = x\r\n").get("b").unwrap().as_str(),
        Some("x")
    );
}

#[test]
fn lowercase_lookup_keeps_the_original_text() {
    let map = root("Max_Payload = 1\nDEBUG = true");
    assert_eq!(
        map.get_ignore_case("max_payload").unwrap().as_i64(),
        Some(1)
    );
    assert_eq!(map.entry_ignore_case("debug").unwrap().key, "DEBUG");
    assert!(map.get("debug").is_none());
}

#[test]
fn nesting_depth_is_bounded() {
    let deep_arrays = format!("a = {}{}", "[".repeat(500), "]".repeat(500));
    assert_eq!(
        error(&deep_arrays).kind,
        ConfErrorKind::NestingTooDeep {
            max: MAX_NESTING_DEPTH
        }
    );
    let deep_maps = format!("a = {}{}", "{ b = ".repeat(300), "}".repeat(300));
    assert!(matches!(
        error(&deep_maps).kind,
        ConfErrorKind::NestingTooDeep { .. }
    ));
    let deep_blocks = "{".repeat(1000);
    assert!(matches!(
        error(&deep_blocks).kind,
        ConfErrorKind::NestingTooDeep { .. }
    ));
    let fits = format!("a = {}{}", "[".repeat(100), "]".repeat(100));
    assert!(parse_with(&fits, &NoSource).is_ok());
}

#[test]
fn variable_expansion_is_bounded() {
    // Each line doubles the tree: 2^40 values if nothing stopped it.
    let mut text = String::from("v0 = [1, 1]\n");
    for level in 1..40 {
        text.push_str(&format!("v{level} = [$v{}, $v{}]\n", level - 1, level - 1));
    }
    assert_eq!(
        error(&text).kind,
        ConfErrorKind::TooManyValues { max: MAX_VALUES }
    );
    let mut source = FakeSource::default();
    for level in 0..40 {
        source = source.env(&format!("E{level}"), &format!("$E{}", level + 1));
    }
    let error = parse_with("a = $E0", &source).unwrap_err();
    let mut innermost = &error;
    while let ConfErrorKind::VariableInvalid { inner, .. } = &innermost.kind {
        innermost = inner;
    }
    assert_eq!(
        innermost.kind,
        ConfErrorKind::VariableTooDeep {
            max: MAX_VARIABLE_DEPTH
        }
    );
}

const SNAPSHOT_SERVER: &str = r#"# A typical server file.
listen: 127.0.0.1:4222
server_name: "n1"
max_payload: 2MB
ping_interval: "2m"
debug: true
now = 2016-05-04T18:53:41Z

authorization {
  USER_PASS = $2a$11$ooo
  user: alice
  password: $USER_PASS
  timeout: 0.5
}

cluster {
  routes = [
    nats-route://a:6222 // first
    'nats-route://b:6222'
  ]
}
"#;

#[test]
fn snapshot_of_a_server_file() {
    let parsed = parse_with(SNAPSHOT_SERVER, &NoSource).unwrap();
    insta::assert_snapshot!(render_tree(&parsed));
}

#[test]
fn snapshot_of_a_json_file_with_includes_and_env() {
    let source = FakeSource::default()
        .file(
            "accounts.conf",
            "A { users = [ {user: a, password: $PASS} ] }\nB {}",
        )
        .env("PASS", "\"s3cr3t\"");
    let parsed = parse_with(
        "{\n  \"port\": 4222,\n  \"accounts\": { include accounts.conf },\n  \"limits\": [1K, 1KB, -3, 2.5, off]\n}\n",
        &source,
    )
    .unwrap();
    insta::assert_snapshot!(render_tree(&parsed));
}

#[test]
fn snapshot_of_options() {
    let source = FakeSource::default()
        .file("auth.conf", "authorization { token: $TOKEN_VAR }")
        .env("TOKEN_VAR", "abc");
    let (options, unsupported) = load_options(
        "server.conf",
        "limit = 5\nmax_subs = $limit\nport: 4222\nmax_connections: 0\nwrite_deadline: 10\ninclude auth.conf\njetstream { store_dir: /tmp }\nmqtt { port: 1883 }",
        &source,
    )
    .unwrap();
    insta::assert_debug_snapshot!((options, unsupported));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_with(&text, &NoSource);
        let _ = load_options("p.conf", &text, &NoSource);
    }

    #[test]
    fn config_like_text_never_panics(
        text in proptest::collection::vec(
            prop_oneof![
                Just("a"), Just("b"), Just(" "), Just("\t"), Just("\n"), Just("\r"),
                Just("="), Just(":"), Just("{"), Just("}"), Just("["), Just("]"),
                Just(","), Just(";"), Just("#"), Just("//"), Just("/"), Just("\""),
                Just("'"), Just("\\"), Just("\\x4"), Just("$a"), Just("$b"), Just("$E"),
                Just("1"), Just("-"), Just("."), Just("k"), Just("KB"), Just("("),
                Just("\n)\n"), Just("include "), Just("true"), Just("2016-05-04T18:53:41Z"),
                Just("include inc.conf\n"), Just("é"),
            ],
            0..60,
        ).prop_map(|parts| parts.concat())
    ) {
        let source = FakeSource::default()
            .file("inc.conf", "a = 1\ninclude inc.conf")
            .env("E", "[$E]");
        let _ = parse_with(&text, &source);
        let _ = load_options("p.conf", &text, &source);
    }

    #[test]
    fn nesting_is_bounded_at_any_depth(depth in 0usize..400, map in any::<bool>()) {
        let (open, close) = if map { ("{ k = ", "}") } else { ("[", "]") };
        let text = format!("a = {}1{}", open.repeat(depth), close.repeat(depth));
        let result = parse_with(&text, &NoSource);
        if depth <= MAX_NESTING_DEPTH {
            prop_assert!(result.is_ok(), "{:?}", result);
        } else {
            prop_assert!(
                matches!(result, Err(ConfError { kind: ConfErrorKind::NestingTooDeep { .. }, .. })),
                "{:?}", result
            );
        }
    }

    #[test]
    fn integers_round_trip(number in any::<i64>()) {
        let map = root(&format!("n = {number}"));
        prop_assert_eq!(map.get("n").unwrap().as_i64(), Some(number));
    }
}
