//! The NATS header block: `NATS/1.0[ <code>[ <description>]]\r\n`, then
//! `Key: Value\r\n` lines, then an empty `\r\n` line.
//!
//! Input: the header bytes of an HPUB/HMSG (the reference passes them through
//! unchecked, so they may be anything); output: a borrowed, allocation-free
//! view ([`HeaderView`]) or, for server-made messages, the bytes of a block.
//!
//! Keys keep the case they were sent with and lookups are case-sensitive, as
//! the official clients' header maps are. [`find_header`] is the reference
//! server's own lenient lookup, which works on any bytes without validating.

use bytes::{BufMut, Bytes, BytesMut};

/// Every block starts with this version word.
pub const VERSION_LINE_PREFIX: &[u8] = b"NATS/1.0";
/// The status the server sends when a request had no responders.
pub const NO_RESPONDERS_STATUS: u16 = 503;
/// The header naming the subject a no-responders status is about.
pub const NATS_SUBJECT_HEADER: &[u8] = b"Nats-Subject";

/// Why a header block could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header block does not start with NATS/1.0")]
    MissingVersion,
    #[error("malformed status on the NATS/1.0 line")]
    BadStatus,
    /// A line that is not `Key: Value` (no colon, or an empty key).
    #[error("malformed header line at byte {offset}")]
    MalformedField { offset: usize },
    /// No empty line ends the block, or bytes follow it.
    #[error("header block not terminated by an empty line")]
    Unterminated,
}

/// A validated header block, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    block: &'a [u8],
    status: Option<u16>,
    description: Option<&'a [u8]>,
    /// Offset of the first field line (just past the version line's CRLF).
    fields_start: usize,
}

impl<'a> HeaderView<'a> {
    /// Reads and validates `block`, which must be exactly one header block.
    pub fn parse(block: &'a [u8]) -> Result<Self, HeaderError> {
        if !block.starts_with(VERSION_LINE_PREFIX) {
            return Err(HeaderError::MissingVersion);
        }
        let version_end = find_crlf(block, 0).ok_or(HeaderError::Unterminated)?;
        let (status, description) = parse_status(&block[VERSION_LINE_PREFIX.len()..version_end])?;
        let view = HeaderView {
            block,
            status,
            description,
            fields_start: version_end + 2,
        };
        let mut offset = view.fields_start;
        loop {
            let line_end = find_crlf(block, offset).ok_or(HeaderError::Unterminated)?;
            if line_end == offset {
                // The empty line ends the block, and must be its last bytes.
                if line_end + 2 != block.len() {
                    return Err(HeaderError::Unterminated);
                }
                return Ok(view);
            }
            if split_field(&block[offset..line_end]).is_none() {
                return Err(HeaderError::MalformedField { offset });
            }
            offset = line_end + 2;
        }
    }

    /// The status code of the version line (`NATS/1.0 503` gives 503).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The text after the status code, trimmed.
    pub fn description(&self) -> Option<&'a [u8]> {
        self.description
    }

    /// Fields in the order sent, keys as sent, values without surrounding blanks.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            block: self.block,
            offset: self.fields_start,
        }
    }

    /// The first value of `key` (exact, case-sensitive match).
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.fields()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// Every value of `key` in order.
    pub fn get_all<'k>(&self, key: &'k [u8]) -> impl Iterator<Item = &'a [u8]> + 'k
    where
        'a: 'k,
    {
        self.fields()
            .filter(move |(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// The whole block.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.block
    }
}

/// Iterator over the `(key, value)` fields of a [`HeaderView`].
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    block: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated, so every line up to the empty one is a field.
        let line_end = find_crlf(self.block, self.offset)?;
        if line_end == self.offset {
            return None;
        }
        let field = split_field(&self.block[self.offset..line_end]);
        debug_assert!(field.is_some(), "validated block");
        self.offset = line_end + 2;
        field
    }
}

/// Parses what follows `NATS/1.0` on the version line.
fn parse_status(rest: &[u8]) -> Result<(Option<u16>, Option<&[u8]>), HeaderError> {
    let rest = trim_blanks(rest);
    if rest.is_empty() {
        return Ok((None, None));
    }
    let digits = rest.get(..3).ok_or(HeaderError::BadStatus)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(HeaderError::BadStatus);
    }
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    let description = trim_blanks(&rest[3..]);
    let description = (!description.is_empty()).then_some(description);
    Ok((Some(code), description))
}

fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|b| *b == b':')?;
    let key = &line[..colon];
    if key.is_empty() || key.iter().any(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    Some((key, trim_blanks(&line[colon + 1..])))
}

fn trim_blanks(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Index of the next `\r\n` at or after `from`.
fn find_crlf(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .map(|index| from + index)
}

/// `block` without the header lines whose key `drop` picks; empty when
/// no header is left (the status line alone is no block).
pub fn without_headers(block: &[u8], drop: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut lines = block.split_inclusive(|&b| b == b'\n');
    let mut kept = Vec::with_capacity(block.len());
    if let Some(status) = lines.next() {
        kept.extend_from_slice(status);
    }
    let mut others = 0;
    for line in lines {
        let key = line.split(|&b| b == b':').next().unwrap_or_default();
        if line == b"\r\n" || drop(key) {
            continue;
        }
        kept.extend_from_slice(line);
        others += 1;
    }
    if others == 0 {
        return Vec::new();
    }
    kept.extend_from_slice(b"\r\n");
    kept
}

/// `block` (or an empty `NATS/1.0` block) with `key: value` in place of
/// any lines of `key`, added last (the reference's `setHeader`).
pub fn with_header(block: Option<&[u8]>, key: &[u8], value: &[u8]) -> Vec<u8> {
    let block = block.unwrap_or_default();
    let mut out = Vec::with_capacity(block.len() + key.len() + value.len() + 16);
    let mut lines = block.split_inclusive(|&b| b == b'\n');
    match lines.next() {
        Some(status) => out.extend_from_slice(status),
        None => out.extend_from_slice(b"NATS/1.0\r\n"),
    }
    for line in lines {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if line != b"\r\n" && name != key {
            out.extend_from_slice(line);
        }
    }
    for part in [key, b": ", value, b"\r\n\r\n"] {
        out.extend_from_slice(part);
    }
    out
}

/// The reference server's lookup on unvalidated bytes: `key` must start a
/// line (follow a CRLF) and be followed directly by `:`; the value skips
/// leading spaces and runs to the next CRLF.
pub fn find_header<'a>(block: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    if key.is_empty() {
        return None;
    }
    let mut offset = 0;
    while let Some(found) = block
        .get(offset..)?
        .windows(key.len())
        .position(|window| window == key)
    {
        let index = offset + found;
        // Occurrences may overlap (a key of repeated bytes), so the next try
        // starts one byte on, not past the whole key.
        offset = index + 1;
        if index < 2 || &block[index - 2..index] != b"\r\n" {
            continue;
        }
        if block.get(index + key.len()) != Some(&b':') {
            continue;
        }
        let mut start = index + key.len() + 1;
        while block.get(start) == Some(&b' ') {
            start += 1;
        }
        let end = find_crlf(block, start).unwrap_or(block.len());
        return Some(&block[start..end]);
    }
    None
}

/// `NATS/1.0 <code>[ <description>]\r\n\r\n`
pub fn write_status_block(out: &mut BytesMut, code: u16, description: Option<&str>) {
    debug_assert!((100..1000).contains(&code), "a status is three digits");
    out.reserve(VERSION_LINE_PREFIX.len() + 4 + description.map_or(0, |text| text.len() + 1) + 4);
    put_status_line(out, code, description);
    out.put_slice(b"\r\n");
}

/// The bytes of [`write_status_block`].
pub fn status_only_block(code: u16, description: Option<&str>) -> Bytes {
    let mut out = BytesMut::new();
    write_status_block(&mut out, code, description);
    out.freeze()
}

/// The reference's no-responders block (v2.15.1):
/// `NATS/1.0 503\r\nNats-Subject: <subject>\r\n\r\n`, sent as an HMSG whose
/// header length equals its total length.
pub fn write_no_responders_block(out: &mut BytesMut, subject: &[u8]) {
    out.reserve(VERSION_LINE_PREFIX.len() + 6 + NATS_SUBJECT_HEADER.len() + 2 + subject.len() + 4);
    put_status_line(out, NO_RESPONDERS_STATUS, None);
    out.put_slice(NATS_SUBJECT_HEADER);
    out.put_slice(b": ");
    out.put_slice(subject);
    out.put_slice(b"\r\n\r\n");
}

/// The bytes of [`write_no_responders_block`].
pub fn no_responders_block(subject: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_no_responders_block(&mut out, subject);
    out.freeze()
}

fn put_status_line(out: &mut BytesMut, code: u16, description: Option<&str>) {
    out.put_slice(VERSION_LINE_PREFIX);
    out.put_u8(b' ');
    out.put_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
    if let Some(text) = description {
        out.put_u8(b' ');
        out.put_slice(text.as_bytes());
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_header_replaces_or_adds_the_key() {
        use super::with_header;
        assert_eq!(with_header(None, b"K", b"v"), b"NATS/1.0\r\nK: v\r\n\r\n");
        assert_eq!(
            with_header(Some(b"NATS/1.0\r\nA: 1\r\nK: old\r\n\r\n"), b"K", b"v"),
            b"NATS/1.0\r\nA: 1\r\nK: v\r\n\r\n"
        );
    }

    use super::*;

    /// Fuzz finding (header_block): a key whose first occurrence overlaps the
    /// real one (here "\n\n" right after a CRLF's own LF) was skipped.
    #[test]
    fn find_header_sees_overlapping_occurrences() {
        let block = b"NATS/1.0\r\nA: c\r\n\n\n: v\r\n\r\n";
        assert_eq!(find_header(block, b"\n\n"), Some(&b"v"[..]));
    }

    #[test]
    fn plain_block_with_fields() {
        let block = b"NATS/1.0\r\nNats-Msg-Id: 1\r\nfoo:bar \r\nfoo: baz\r\n\r\n";
        let view = HeaderView::parse(block).expect("valid");
        assert_eq!(view.status(), None);
        assert_eq!(view.description(), None);
        let fields: Vec<_> = view.fields().collect();
        assert_eq!(
            fields,
            vec![
                (&b"Nats-Msg-Id"[..], &b"1"[..]),
                (&b"foo"[..], &b"bar"[..]),
                (&b"foo"[..], &b"baz"[..])
            ]
        );
        assert_eq!(view.get(b"foo"), Some(&b"bar"[..]));
        assert_eq!(view.get(b"FOO"), None, "lookup is case-sensitive");
        assert_eq!(
            view.get_all(b"foo").collect::<Vec<_>>(),
            vec![&b"bar"[..], &b"baz"[..]]
        );
    }

    #[test]
    fn status_and_description() {
        let view = HeaderView::parse(b"NATS/1.0 503\r\n\r\n").expect("valid");
        assert_eq!((view.status(), view.description()), (Some(503), None));
        let view =
            HeaderView::parse(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n")
                .expect("valid");
        assert_eq!(view.status(), Some(408));
        assert_eq!(view.description(), Some(&b"Request Timeout"[..]));
        assert_eq!(view.get(b"Nats-Pending-Messages"), Some(&b"1"[..]));
    }

    #[test]
    fn malformed_blocks() {
        assert_eq!(HeaderView::parse(b""), Err(HeaderError::MissingVersion));
        assert_eq!(
            HeaderView::parse(b"NATS/2.0\r\n\r\n"),
            Err(HeaderError::MissingVersion)
        );
        assert_eq!(
            HeaderView::parse(b"NATS/1.0 5x3\r\n\r\n"),
            Err(HeaderError::BadStatus)
        );
        assert_eq!(
            HeaderView::parse(b"NATS/1.0 50\r\n\r\n"),
            Err(HeaderError::BadStatus)
        );
        assert_eq!(
            HeaderView::parse(b"NATS/1.0\r\n"),
            Err(HeaderError::Unterminated)
        );
        assert_eq!(
            HeaderView::parse(b"NATS/1.0\r\n\r\nx"),
            Err(HeaderError::Unterminated)
        );
        assert_eq!(
            HeaderView::parse(b"NATS/1.0\r\nnocolon\r\n\r\n"),
            Err(HeaderError::MalformedField { offset: 10 })
        );
        assert_eq!(
            HeaderView::parse(b"NATS/1.0\r\n: v\r\n\r\n"),
            Err(HeaderError::MalformedField { offset: 10 })
        );
    }

    #[test]
    fn written_blocks() {
        assert_eq!(&status_only_block(503, None)[..], b"NATS/1.0 503\r\n\r\n");
        assert_eq!(
            &status_only_block(408, Some("Request Timeout"))[..],
            b"NATS/1.0 408 Request Timeout\r\n\r\n"
        );
        let block = no_responders_block(b"nobody");
        assert_eq!(&block[..], b"NATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n");
        // The reference computes this length as 32 plus the subject's.
        assert_eq!(block.len(), 32 + b"nobody".len());
        let view = HeaderView::parse(&block).expect("own blocks are valid");
        assert_eq!(view.status(), Some(503));
        assert_eq!(view.get(NATS_SUBJECT_HEADER), Some(&b"nobody"[..]));
    }

    #[test]
    fn lenient_lookup_like_the_reference() {
        let block = b"NATS/1.0\r\nXfoo: 1\r\nfoo:  2\r\nfoo: 3\r\n\r\n";
        assert_eq!(find_header(block, b"foo"), Some(&b"2"[..]));
        assert_eq!(find_header(block, b"Xfoo"), Some(&b"1"[..]));
        assert_eq!(find_header(block, b"bar"), None);
        assert_eq!(find_header(b"NATS/1.0\r\nfoo", b"foo"), None);
        assert_eq!(find_header(b"NATS/1.0\r\nfoo:x", b"foo"), Some(&b"x"[..]));
    }
}
