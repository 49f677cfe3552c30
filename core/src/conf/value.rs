//! The tree a config file parses into, and the reference's value conversions.
//!
//! Every value and every map key remembers where it was written
//! ([`Position`], which names its file: values pulled in by `include` keep
//! the included file's name), so that checks made long after parsing can
//! still point at the text.
//!
//! Invariants:
//! - A [`ConfMap`] holds each key (compared exactly, case-sensitively, as the
//!   reference's Go map does) at most once; assigning a key again replaces
//!   the value in place, so the entry order is the order of first
//!   appearance and the value is the last one written.
//! - Integers are already scaled by their size suffix (`1K` is 1000, `1KB`
//!   1024); an overflow is an error at parse time, never a wrapped number.

use std::fmt;
use std::sync::Arc;

/// Where a key or value starts: file, 1-based line, 1-based column (counted
/// in characters).
///
/// The reference prints columns 0-based on a file's first line and 1-based
/// on every later line (an artifact of its lexer); rnats counts 1-based
/// everywhere.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The file as the caller named it (the root) or as
    /// [`ConfSource::read_include`](super::ConfSource::read_include) resolved
    /// it (an include).
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub fn new(file: Arc<str>, line: u32, column: u32) -> Self {
        debug_assert!(line >= 1);
        debug_assert!(column >= 1);
        Position { file, line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One parsed value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfValue {
    pub kind: ValueKind,
    /// Where the value's text starts; for a value taken from a variable, where
    /// the `$name` reference is.
    pub position: Position,
}

/// The types of value the format has.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// Quoted, unquoted, `( ... )` block, IP-like (`127.0.0.1:4222`) and bcrypt
    /// (`$2a$...`) strings all end up here.
    String(String),
    /// Already multiplied by its size suffix.
    Integer(i64),
    Float(f64),
    /// `true/false/yes/no/on/off`, any case, unquoted.
    Bool(bool),
    /// An unquoted `YYYY-MM-DDTHH:MM:SSZ`.
    DateTime(ConfDateTime),
    Array(Vec<ConfValue>),
    Map(ConfMap),
}

impl ValueKind {
    /// The type's name with its article, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueKind::String(_) => "a string",
            ValueKind::Integer(_) => "an integer",
            ValueKind::Float(_) => "a float",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::DateTime(_) => "a datetime",
            ValueKind::Array(_) => "an array",
            ValueKind::Map(_) => "a map",
        }
    }
}

impl ConfValue {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Integer(number) => Some(number),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ValueKind::Bool(flag) => Some(flag),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&ConfMap> {
        match &self.kind {
            ValueKind::Map(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[ConfValue]> {
        match &self.kind {
            ValueKind::Array(items) => Some(items),
            _ => None,
        }
    }

    /// How many values this tree holds, itself included; the parser charges
    /// this against its budget whenever it copies a tree.
    pub fn node_count(&self) -> usize {
        match &self.kind {
            ValueKind::Array(items) => 1 + items.iter().map(ConfValue::node_count).sum::<usize>(),
            ValueKind::Map(map) => {
                1 + map
                    .iter()
                    .map(|entry| entry.value.node_count())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }

    /// Moves this value and everything under it to `position`: a value copied
    /// out of an environment variable is reported where `$NAME` was written,
    /// since the variable's text has no file of its own.
    pub(crate) fn relocate(&mut self, position: &Position) {
        self.position = position.clone();
        match &mut self.kind {
            ValueKind::Array(items) => items.iter_mut().for_each(|item| item.relocate(position)),
            ValueKind::Map(map) => map.entries.iter_mut().for_each(|entry| {
                entry.key_position = position.clone();
                entry.value.relocate(position);
            }),
            _ => {}
        }
    }
}

/// One `key = value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The key as written (quotes removed, case kept).
    pub key: String,
    pub key_position: Position,
    pub value: ConfValue,
    /// Whether a later `$key` read this entry. The reference excuses such
    /// entries from "unknown field": they are variable definitions.
    pub(crate) referenced: bool,
}

impl MapEntry {
    /// Whether a `$key` reference elsewhere in the file read this entry.
    pub fn is_referenced(&self) -> bool {
        self.referenced
    }
}

/// A map in the order its keys were first written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfMap {
    entries: Vec<MapEntry>,
}

impl ConfMap {
    pub fn new() -> Self {
        ConfMap::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, MapEntry> {
        self.entries.iter()
    }

    /// The entry whose key is exactly `key`.
    pub fn entry(&self, key: &str) -> Option<&MapEntry> {
        self.entries.iter().find(|entry| entry.key == key)
    }

    /// The value whose key is exactly `key` (variables resolve this way).
    pub fn get(&self, key: &str) -> Option<&ConfValue> {
        self.entry(key).map(|entry| &entry.value)
    }

    /// The last entry whose key equals `key` ignoring ASCII case, as the
    /// reference's option processing matches keys. Two keys differing only in
    /// case are distinct entries; the later one in the file wins here.
    pub fn entry_ignore_case(&self, key: &str) -> Option<&MapEntry> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.key.eq_ignore_ascii_case(key))
    }

    pub fn get_ignore_case(&self, key: &str) -> Option<&ConfValue> {
        self.entry_ignore_case(key).map(|entry| &entry.value)
    }

    /// Sets `key`, replacing (in place) a value already there.
    pub(crate) fn insert(&mut self, entry: MapEntry) {
        match self.entries.iter_mut().find(|old| old.key == entry.key) {
            Some(old) => *old = entry,
            None => self.entries.push(entry),
        }
    }

    /// The entry for `key`, for a variable lookup that marks it as read.
    pub(crate) fn entry_mut(&mut self, key: &str) -> Option<&mut MapEntry> {
        self.entries.iter_mut().find(|entry| entry.key == key)
    }

    pub(crate) fn into_entries(self) -> Vec<MapEntry> {
        self.entries
    }
}

impl<'a> IntoIterator for &'a ConfMap {
    type Item = &'a MapEntry;
    type IntoIter = std::slice::Iter<'a, MapEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// A validated `YYYY-MM-DDTHH:MM:SSZ` (UTC) timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfDateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl ConfDateTime {
    /// Reads exactly `YYYY-MM-DDTHH:MM:SSZ`, rejecting impossible dates and
    /// times (the reference's `time.Parse` does the same).
    pub fn parse(text: &str) -> Option<ConfDateTime> {
        let bytes = text.as_bytes();
        if bytes.len() != 20 {
            return None;
        }
        let shape_ok = bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            19 => *byte == b'Z',
            _ => byte.is_ascii_digit(),
        });
        if !shape_ok {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> u16 {
            bytes[range]
                .iter()
                .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'))
        };
        let year = number(0..4);
        let month = number(5..7) as u8;
        let day = number(8..10) as u8;
        let hour = number(11..13) as u8;
        let minute = number(14..16) as u8;
        let second = number(17..19) as u8;
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(ConfDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }
}

impl fmt::Display for ConfDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The multiplier of a size suffix, lower-cased: a bare letter is a power of
/// 1000, the letter followed by `b`, `i` or `ib` a power of 1024 (so `1KB` is
/// 1024, as in the reference).
pub fn size_multiplier(suffix_lowercase: &str) -> Option<i64> {
    debug_assert!(!suffix_lowercase.bytes().any(|b| b.is_ascii_uppercase()));
    let mut chars = suffix_lowercase.chars();
    let Some(letter) = chars.next() else {
        return Some(1);
    };
    let power: u32 = match letter {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    let base: i64 = match chars.as_str() {
        "" => 1000,
        "b" | "i" | "ib" => 1024,
        _ => return None,
    };
    // 1024^6 = 2^60 and 1000^6 = 10^18 both fit in an i64.
    Some(base.pow(power))
}

/// Nanoseconds in one of Go's duration units.
fn duration_unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses Go's `time.ParseDuration` syntax (`"1h30m"`, `"500ms"`, `"-1.5s"`,
/// `"0"`) into signed nanoseconds. The error text is Go's, so messages built
/// on it read as the reference's do.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if first != b'.' && !first.is_ascii_digit() {
            return Err(invalid());
        }
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for digit in rest[..integer_len].bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(digit - b'0')))
                .filter(|w| *w <= LIMIT)
                .ok_or_else(invalid)?;
        }
        rest = &rest[integer_len..];
        // The fraction keeps as many digits as fit; later ones cannot matter
        // at nanosecond resolution.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut fraction_len = 0;
        if let Some(after_dot) = rest.strip_prefix('.') {
            fraction_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflowed = false;
            for digit in after_dot[..fraction_len].bytes() {
                if overflowed {
                    continue;
                }
                match fraction
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(digit - b'0')))
                    .filter(|f| *f <= LIMIT)
                {
                    Some(next) => {
                        fraction = next;
                        scale *= 10.0;
                    }
                    None => overflowed = true,
                }
            }
            rest = &after_dot[fraction_len..];
        }
        if integer_len == 0 && fraction_len == 0 {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration \"{text}\""));
        }
        let unit_nanos = duration_unit_nanos(unit)
            .ok_or_else(|| format!("time: unknown unit \"{unit}\" in duration \"{text}\""))?;
        rest = &rest[unit_len..];
        let mut value = whole
            .checked_mul(unit_nanos)
            .filter(|v| *v <= LIMIT)
            .ok_or_else(invalid)?;
        if fraction > 0 {
            value = value
                .checked_add((fraction as f64 * (unit_nanos as f64 / scale)) as u64)
                .filter(|v| *v <= LIMIT)
                .ok_or_else(invalid)?;
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        // LIMIT itself is i64::MIN's magnitude.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// A compact, position-carrying rendering of a tree, one line per value: what
/// the snapshot tests pin. Positions name their file only when it is not the
/// root's (values brought in by `include`).
pub fn render_tree(value: &ConfValue) -> String {
    let mut out = String::new();
    render_into(&mut out, value, &value.position.file, 0);
    out
}

fn render_position(position: &Position, root_file: &str) -> String {
    if &*position.file == root_file {
        format!("@{}:{}", position.line, position.column)
    } else {
        format!("@{position}")
    }
}

fn render_into(out: &mut String, value: &ConfValue, root_file: &str, indent: usize) {
    use std::fmt::Write;
    let pad = "  ".repeat(indent);
    let at = render_position(&value.position, root_file);
    // Writing to a String cannot fail.
    let _ = match &value.kind {
        ValueKind::String(text) => writeln!(out, "String({text:?}) {at}"),
        ValueKind::Integer(number) => writeln!(out, "Integer({number}) {at}"),
        ValueKind::Float(number) => writeln!(out, "Float({number:?}) {at}"),
        ValueKind::Bool(flag) => writeln!(out, "Bool({flag}) {at}"),
        ValueKind::DateTime(stamp) => writeln!(out, "DateTime({stamp}) {at}"),
        ValueKind::Array(items) => {
            let _ = writeln!(out, "Array {at}");
            for item in items {
                let _ = write!(out, "{pad}  - ");
                render_into(out, item, root_file, indent + 1);
            }
            Ok(())
        }
        ValueKind::Map(map) => {
            let _ = writeln!(out, "Map {at}");
            for entry in map {
                let used = if entry.referenced {
                    " (referenced)"
                } else {
                    ""
                };
                let key_at = render_position(&entry.key_position, root_file);
                let _ = write!(out, "{pad}  {:?} {key_at}{used} = ", entry.key);
                render_into(out, &entry.value, root_file, indent + 1);
            }
            Ok(())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_suffixes_follow_the_reference() {
        assert_eq!(size_multiplier(""), Some(1));
        assert_eq!(size_multiplier("k"), Some(1000));
        assert_eq!(size_multiplier("kb"), Some(1024));
        assert_eq!(size_multiplier("ki"), Some(1024));
        assert_eq!(size_multiplier("kib"), Some(1024));
        assert_eq!(size_multiplier("m"), Some(1_000_000));
        assert_eq!(size_multiplier("mib"), Some(1 << 20));
        assert_eq!(size_multiplier("g"), Some(1_000_000_000));
        assert_eq!(size_multiplier("gb"), Some(1 << 30));
        assert_eq!(size_multiplier("tb"), Some(1 << 40));
        assert_eq!(size_multiplier("pb"), Some(1 << 50));
        assert_eq!(size_multiplier("e"), Some(1_000_000_000_000_000_000));
        assert_eq!(size_multiplier("eb"), Some(1 << 60));
        assert_eq!(size_multiplier("kbb"), None);
        assert_eq!(size_multiplier("kbi"), None);
        assert_eq!(size_multiplier("x"), None);
    }

    #[test]
    fn go_durations() {
        let second = 1_000_000_000i64;
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("2m"), Ok(120 * second));
        assert_eq!(parse_go_duration("500ms"), Ok(second / 2));
        assert_eq!(parse_go_duration("1h30m"), Ok(5400 * second));
        assert_eq!(parse_go_duration("1.5s"), Ok(3 * second / 2));
        assert_eq!(parse_go_duration(".5s"), Ok(second / 2));
        assert_eq!(parse_go_duration("-2s"), Ok(-2 * second));
        assert_eq!(parse_go_duration("+2s"), Ok(2 * second));
        assert_eq!(parse_go_duration("1us"), Ok(1000));
        assert_eq!(parse_go_duration("1µs"), Ok(1000));
        assert_eq!(parse_go_duration("3ns"), Ok(3));
        assert_eq!(parse_go_duration("2562047h47m16.854775807s"), Ok(i64::MAX));
        assert_eq!(parse_go_duration("-2562047h47m16.854775808s"), Ok(i64::MIN));
        assert_eq!(
            parse_go_duration("2562047h47m16.854775808s"),
            Err("time: invalid duration \"2562047h47m16.854775808s\"".to_string())
        );
        assert_eq!(
            parse_go_duration("1x"),
            Err("time: unknown unit \"x\" in duration \"1x\"".to_string())
        );
        assert_eq!(
            parse_go_duration("1"),
            Err("time: missing unit in duration \"1\"".to_string())
        );
        assert_eq!(
            parse_go_duration(""),
            Err("time: invalid duration \"\"".to_string())
        );
        assert!(parse_go_duration(".s").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("1h-1m").is_err());
    }

    #[test]
    fn datetimes_are_validated() {
        let stamp = ConfDateTime::parse("2016-05-04T18:53:41Z").unwrap();
        assert_eq!(stamp.to_string(), "2016-05-04T18:53:41Z");
        assert!(ConfDateTime::parse("2016-02-29T00:00:00Z").is_some());
        assert!(ConfDateTime::parse("2015-02-29T00:00:00Z").is_none());
        assert!(ConfDateTime::parse("2016-13-01T00:00:00Z").is_none());
        assert!(ConfDateTime::parse("2016-01-01T24:00:00Z").is_none());
        assert!(ConfDateTime::parse("2016-01-01T00:00:60Z").is_none());
        assert!(ConfDateTime::parse("2016-01-01 00:00:00Z").is_none());
    }
}
