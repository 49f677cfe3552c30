//! The config text parser: one pass of recursive descent over characters,
//! building the value tree as it goes.
//!
//! The accepted grammar is the reference lexer's, state for state: which
//! characters end an unquoted string, when a run of digits turns into a
//! string (`10s`) or an IP address (`127.0.0.1`), that new lines may sit
//! between a key and its value but not after a top-level `=`, and so on. The
//! few deliberate differences are listed in the module above.
//!
//! Variables need the maps still being built: `$name` looks through every
//! enclosing map, innermost first, before the environment. Those maps
//! therefore live on an explicit stack ([`Parser::frames`]) rather than in
//! the recursion's locals; arrays do not scope variables and stay local.
//!
//! Invariants:
//! - `Session::depth` counts the maps, arrays, top-level blocks, includes and
//!   environment expansions open right now; it never exceeds
//!   [`MAX_NESTING_DEPTH`], which bounds the recursion.
//! - `frames` is never empty while a document is being parsed; its bottom is
//!   the document's root map.

use std::sync::Arc;

use super::value::{size_multiplier, ConfDateTime, ConfMap, ConfValue, MapEntry, ValueKind};
use super::{
    ConfError, ConfErrorKind, ConfSource, Position, MAX_INCLUDE_DEPTH, MAX_NESTING_DEPTH,
    MAX_TEXT_BYTES, MAX_VALUES, MAX_VARIABLE_DEPTH,
};

/// The key an environment variable's value is parsed under (`pk=<value>`).
const ENV_VALUE_KEY: &str = "pk";
/// A `$2a$...` "variable" is a bcrypt hash, kept as the literal string.
const BCRYPT_PREFIX: &str = "2a$";

pub(super) fn parse_root(
    file_name: &str,
    text: &str,
    source: &dyn ConfSource,
) -> Result<ConfValue, ConfError> {
    let file: Arc<str> = Arc::from(file_name);
    let mut session = Session {
        source,
        depth: 0,
        include_chain: vec![file_name.to_string()],
        env_chain: Vec::new(),
        values_left: MAX_VALUES,
        text_bytes_left: MAX_TEXT_BYTES,
    };
    let start = Position::new(file.clone(), 1, 1);
    session.charge_text(text.len(), &start)?;
    let root = Parser::new(text, file, &mut session).parse_document()?;
    debug_assert_eq!(session.depth, 0);
    debug_assert_eq!(session.include_chain.len(), 1);
    Ok(ConfValue {
        kind: ValueKind::Map(root),
        position: start,
    })
}

/// What all the parsers of one [`parse_root`] call (root file, includes,
/// environment values) share: the source and the budgets.
struct Session<'s> {
    source: &'s dyn ConfSource,
    depth: usize,
    /// Resolved paths of the files being parsed, outermost first.
    include_chain: Vec<String>,
    /// Environment variables being expanded, outermost first.
    env_chain: Vec<String>,
    values_left: usize,
    text_bytes_left: usize,
}

impl Session<'_> {
    fn charge_values(&mut self, count: usize, at: &Position) -> Result<(), ConfError> {
        match self.values_left.checked_sub(count) {
            Some(left) => {
                self.values_left = left;
                Ok(())
            }
            None => Err(ConfError::new(
                at.clone(),
                ConfErrorKind::TooManyValues { max: MAX_VALUES },
            )),
        }
    }

    fn charge_text(&mut self, bytes: usize, at: &Position) -> Result<(), ConfError> {
        match self.text_bytes_left.checked_sub(bytes) {
            Some(left) => {
                self.text_bytes_left = left;
                Ok(())
            }
            None => Err(ConfError::new(
                at.clone(),
                ConfErrorKind::TooMuchText {
                    max: MAX_TEXT_BYTES,
                },
            )),
        }
    }

    fn enter(&mut self, at: &Position) -> Result<(), ConfError> {
        if self.depth >= MAX_NESTING_DEPTH {
            return Err(ConfError::new(
                at.clone(),
                ConfErrorKind::NestingTooDeep {
                    max: MAX_NESTING_DEPTH,
                },
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        debug_assert!(self.depth > 0);
        self.depth -= 1;
    }
}

/// A read position in the text. Copyable, so a number that turns out to be a
/// string can rewind to its first character.
#[derive(Clone, Copy)]
struct Cursor<'t> {
    text: &'t str,
    offset: usize,
    line: u32,
    column: u32,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.text[self.offset..].chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.peek()?;
        self.offset += next.len_utf8();
        if next == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(next)
    }

    fn bump_while(&mut self, mut keep: impl FnMut(char) -> bool) -> &'t str {
        let start = self.offset;
        while let Some(next) = self.peek() {
            if !keep(next) {
                break;
            }
            self.bump();
        }
        &self.text[start..self.offset]
    }
}

/// Whether `c` ends an unquoted string or a number (the reference's set).
fn ends_unquoted(c: Option<char>) -> bool {
    matches!(
        c,
        None | Some('\n' | '\r' | ';' | ',' | ']' | '}' | ' ' | '\t')
    )
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_size_letter(c: char) -> bool {
    matches!(c.to_ascii_lowercase(), 'k' | 'm' | 'g' | 't' | 'p' | 'e')
}

/// A character quoted for an error message, as the reference prints it.
fn shown(c: Option<char>) -> String {
    match c {
        None => String::from("EOF"),
        Some('\n') => String::from("\\n"),
        Some(c) => c.to_string(),
    }
}

/// Where a key was read, which changes which errors its lexer reports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyContext {
    Top,
    Map,
}

enum Statement {
    Assign { key: String, position: Position },
    Include { path: String, position: Position },
}

struct Parser<'t, 'x, 's> {
    cursor: Cursor<'t>,
    file: Arc<str>,
    /// The maps being built, outermost (the document root) first.
    frames: Vec<ConfMap>,
    session: &'x mut Session<'s>,
}

impl<'t, 'x, 's> Parser<'t, 'x, 's> {
    fn new(text: &'t str, file: Arc<str>, session: &'x mut Session<'s>) -> Self {
        Parser {
            cursor: Cursor {
                text,
                offset: 0,
                line: 1,
                column: 1,
            },
            file,
            frames: Vec::new(),
            session,
        }
    }

    fn here(&self) -> Position {
        Position::new(self.file.clone(), self.cursor.line, self.cursor.column)
    }

    fn syntax<T>(&self, message: impl Into<String>) -> Result<T, ConfError> {
        Err(ConfError::new(
            self.here(),
            ConfErrorKind::Syntax(message.into()),
        ))
    }

    fn skip_whitespace(&mut self) {
        self.cursor.bump_while(char::is_whitespace);
    }

    fn skip_blanks(&mut self) {
        self.cursor.bump_while(is_blank);
    }

    /// Skips a `#` or `//` comment if one starts here, up to (not over) the
    /// end of its line.
    fn skip_comment(&mut self) -> bool {
        let starts = match self.cursor.peek() {
            Some('#') => true,
            Some('/') => self.cursor.peek_second() == Some('/'),
            _ => false,
        };
        if starts {
            self.cursor.bump_while(|c| c != '\n' && c != '\r');
        }
        starts
    }

    fn current_frame(&mut self) -> &mut ConfMap {
        self.frames
            .last_mut()
            .expect("a document always has its root frame")
    }

    fn set(&mut self, key: String, key_position: Position, value: ConfValue) {
        self.current_frame().insert(MapEntry {
            key,
            key_position,
            value,
            referenced: false,
        });
    }

    /// The top level of a file: statements, optionally wrapped in (nested)
    /// `{ }` blocks, which add nothing but grouping.
    fn parse_document(mut self) -> Result<ConfMap, ConfError> {
        debug_assert!(self.frames.is_empty());
        self.frames.push(ConfMap::new());
        let mut blocks_open = 0usize;
        loop {
            self.skip_whitespace();
            if self.skip_comment() {
                continue;
            }
            match self.cursor.peek() {
                // An unclosed top-level block at the end is accepted: the
                // reference does so whenever the last line ends with a new line.
                None => break,
                Some('{') => {
                    let at = self.here();
                    self.session.enter(&at)?;
                    self.cursor.bump();
                    blocks_open += 1;
                    continue;
                }
                Some('}') if blocks_open > 0 => {
                    self.cursor.bump();
                    blocks_open -= 1;
                    self.session.leave();
                    continue;
                }
                Some('/') => {
                    return self.syntax("Unexpected '/' (comments start with '#' or '//')")
                }
                Some(_) => {}
            }
            match self.parse_key(KeyContext::Top)? {
                Statement::Include { path, position } => self.include(&path, &position)?,
                Statement::Assign { key, position } => {
                    self.skip_whitespace();
                    let value = match self.cursor.peek() {
                        // A stray closing brace at the end reads as a key; the
                        // reference allows it for JSON-like files.
                        None if key == "}" => break,
                        None => {
                            return Err(ConfError::new(
                                position,
                                ConfErrorKind::KeyWithoutValue { key },
                            ))
                        }
                        Some('=' | ':') => {
                            self.cursor.bump();
                            self.parse_value()?
                        }
                        Some(_) => self.parse_value()?,
                    };
                    self.set(key, position, value);
                }
            }
            self.end_top_value(&mut blocks_open)?;
        }
        for _ in 0..blocks_open {
            self.session.leave();
        }
        debug_assert_eq!(self.frames.len(), 1);
        Ok(self.frames.pop().unwrap_or_default())
    }

    /// After a top-level value: blanks and a comment, then a new line, `;`,
    /// `,`, `}` (closing a block, or ignored outside one) or the end.
    fn end_top_value(&mut self, blocks_open: &mut usize) -> Result<(), ConfError> {
        loop {
            self.skip_blanks();
            if self.skip_comment() {
                continue;
            }
            match self.cursor.peek() {
                // Like the reference, a block may end unclosed, but only after
                // a line end.
                None if *blocks_open == 0 => return Ok(()),
                Some('\n' | '\r' | ';' | ',') => {
                    self.cursor.bump();
                    return Ok(());
                }
                Some('}') => {
                    self.cursor.bump();
                    if *blocks_open > 0 {
                        *blocks_open -= 1;
                        self.session.leave();
                    }
                    return Ok(());
                }
                // The reference skips a lone '/' here as if it were a blank.
                Some('/') => {
                    self.cursor.bump();
                }
                other => {
                    let level = if *blocks_open > 0 { "block" } else { "top" };
                    return self.syntax(format!(
                        "Expected a {level}-level value to end with a new line, comment or EOF, \
                         but got '{}' instead.",
                        shown(other)
                    ));
                }
            }
        }
    }

    /// A key (quoted or not), or the `include` keyword with its path. The
    /// cursor is on the key's first character.
    fn parse_key(&mut self, context: KeyContext) -> Result<Statement, ConfError> {
        let position = self.here();
        let dot = if context == KeyContext::Map { "." } else { "" };
        match self.cursor.peek() {
            Some(separator @ ('=' | ':')) => {
                self.syntax(format!("Unexpected key separator '{separator}'{dot}"))
            }
            Some(quote @ ('"' | '\'')) => {
                self.cursor.bump();
                let key = self.cursor.bump_while(|c| c != quote);
                if self.cursor.bump().is_none() {
                    return self.syntax(match context {
                        KeyContext::Top => "Unexpected EOF.",
                        KeyContext::Map => "Unexpected EOF processing quoted map key.",
                    });
                }
                Ok(Statement::Assign {
                    key: key.to_string(),
                    position,
                })
            }
            _ => {
                let key = self
                    .cursor
                    .bump_while(|c| !c.is_whitespace() && c != '=' && c != ':');
                debug_assert!(!key.is_empty());
                match self.cursor.peek() {
                    None if context == KeyContext::Map => {
                        self.syntax("Unexpected EOF processing map key.")
                    }
                    Some(c) if c.is_whitespace() && key.eq_ignore_ascii_case("include") => {
                        let path = self.parse_include_path()?;
                        Ok(Statement::Include { path, position })
                    }
                    _ => Ok(Statement::Assign {
                        key: key.to_string(),
                        position,
                    }),
                }
            }
        }
    }

    /// The path after `include `: quoted with either quote (no escapes), or
    /// bare up to a blank, new line, `;` or `}`.
    fn parse_include_path(&mut self) -> Result<String, ConfError> {
        self.skip_blanks();
        let found = |what: &str| format!("Expected include value but found {what}");
        match self.cursor.peek() {
            Some(quote @ ('"' | '\'')) => {
                self.cursor.bump();
                let path = self.cursor.bump_while(|c| c != quote);
                if self.cursor.bump().is_none() {
                    let which = if quote == '"' {
                        "double quoted"
                    } else {
                        "quoted"
                    };
                    return self.syntax(format!("Unexpected EOF in {which} include"));
                }
                Ok(path.to_string())
            }
            Some('[') => self.syntax(found("start of an array")),
            Some('{') => self.syntax(found("start of a map")),
            Some('(') => self.syntax(found("start of a block")),
            Some('-' | '0'..='9') => self.syntax(found("start of a number")),
            Some('\\') => self.syntax(found("escape sequence")),
            Some('\n' | '\r') => self.syntax(found("new line")),
            None => self.syntax(found("EOF")),
            Some(_) => {
                let path = self
                    .cursor
                    .bump_while(|c| !matches!(c, '\n' | '\r' | ';' | '}' | ' ' | '\t' | '\''));
                if self.cursor.peek() == Some('\'') {
                    self.cursor.bump();
                }
                Ok(path.to_string())
            }
        }
    }

    /// Parses an included file on its own (it does not see this file's
    /// variables) and merges its keys into the map being built.
    fn include(&mut self, path: &str, at: &Position) -> Result<(), ConfError> {
        if self.session.include_chain.len() > MAX_INCLUDE_DEPTH {
            return Err(ConfError::new(
                at.clone(),
                ConfErrorKind::IncludeTooDeep {
                    max: MAX_INCLUDE_DEPTH,
                },
            ));
        }
        let (resolved, text) =
            self.session
                .source
                .read_include(&self.file, path)
                .map_err(|reason| {
                    ConfError::new(
                        at.clone(),
                        ConfErrorKind::IncludeUnreadable {
                            path: path.to_string(),
                            reason,
                        },
                    )
                })?;
        if self.session.include_chain.contains(&resolved) {
            return Err(ConfError::new(
                at.clone(),
                ConfErrorKind::IncludeCycle { path: resolved },
            ));
        }
        self.session.charge_text(text.len(), at)?;
        self.session.enter(at)?;
        self.session.include_chain.push(resolved.clone());
        let parsed =
            Parser::new(&text, Arc::from(resolved.as_str()), self.session).parse_document();
        self.session.include_chain.pop();
        self.session.leave();
        let included = parsed.map_err(|inner| {
            ConfError::new(
                at.clone(),
                ConfErrorKind::IncludeInvalid {
                    path: path.to_string(),
                    inner: Box::new(inner),
                },
            )
        })?;
        for entry in included.into_entries() {
            self.current_frame().insert(entry);
        }
        Ok(())
    }

    /// One value, after optional blanks. The cursor must not be on a blank
    /// line's end unless that is an error ("Expected value but found new
    /// line").
    fn parse_value(&mut self) -> Result<ConfValue, ConfError> {
        self.skip_blanks();
        let position = self.here();
        self.session.charge_values(1, &position)?;
        let kind = match self.cursor.peek() {
            Some('[') => self.parse_array(&position)?,
            Some('{') => ValueKind::Map(self.parse_map(&position)?),
            Some('\'') => {
                self.cursor.bump();
                let text = self.cursor.bump_while(|c| c != '\'');
                if self.cursor.bump().is_none() {
                    return self.syntax("Unexpected EOF.");
                }
                ValueKind::String(text.to_string())
            }
            Some('"') => self.parse_double_quoted()?,
            Some('(') => self.parse_block_string()?,
            Some('-' | '0'..='9') => self.parse_number(&position)?,
            Some('.') => return self.syntax("Floats must start with a digit"),
            Some('\n' | '\r') => return self.syntax("Expected value but found new line"),
            // `key =` at the very end is an empty string to the reference.
            None => ValueKind::String(String::new()),
            Some(_) => return self.parse_unquoted(&position),
        };
        Ok(ConfValue { kind, position })
    }

    fn parse_array(&mut self, at: &Position) -> Result<ValueKind, ConfError> {
        self.session.enter(at)?;
        self.cursor.bump();
        let mut items = Vec::new();
        'items: loop {
            self.skip_whitespace();
            if self.skip_comment() {
                continue;
            }
            match self.cursor.peek() {
                Some(']') => {
                    self.cursor.bump();
                    break;
                }
                Some(',' | '/') => return self.syntax("Unexpected array value terminator ','."),
                None => return self.syntax("Unexpected EOF processing array."),
                Some(_) => items.push(self.parse_value()?),
            }
            loop {
                self.skip_blanks();
                if self.skip_comment() {
                    continue;
                }
                match self.cursor.peek() {
                    // A lone '/' separates like a comma in the reference.
                    Some(',' | '\n' | '\r' | '/') => {
                        self.cursor.bump();
                        continue 'items;
                    }
                    Some(']') => {
                        self.cursor.bump();
                        break 'items;
                    }
                    None => return self.syntax("Unexpected EOF processing array."),
                    other => {
                        return self.syntax(format!(
                            "Expected an array value terminator ',' or an array terminator ']', \
                             but got '{}' instead.",
                            shown(other)
                        ))
                    }
                }
            }
        }
        self.session.leave();
        Ok(ValueKind::Array(items))
    }

    fn parse_map(&mut self, at: &Position) -> Result<ConfMap, ConfError> {
        self.session.enter(at)?;
        self.cursor.bump();
        self.frames.push(ConfMap::new());
        'entries: loop {
            self.skip_whitespace();
            if self.skip_comment() {
                continue;
            }
            match self.cursor.peek() {
                Some('}') => {
                    self.cursor.bump();
                    break;
                }
                Some(']') => return self.syntax("Unexpected array end ']' processing map."),
                // The reference drops a lone '/' before a key.
                Some('/') => {
                    self.cursor.bump();
                    continue;
                }
                None => return self.syntax("Unexpected EOF processing map."),
                Some(_) => {}
            }
            match self.parse_key(KeyContext::Map)? {
                Statement::Include { path, position } => self.include(&path, &position)?,
                Statement::Assign { key, position } => {
                    self.skip_whitespace();
                    if matches!(self.cursor.peek(), Some('=' | ':')) {
                        self.cursor.bump();
                        self.skip_whitespace();
                    }
                    match self.cursor.peek() {
                        Some(',') => return self.syntax("Unexpected map value terminator ','."),
                        Some('}') => {
                            return Err(ConfError::new(
                                position,
                                ConfErrorKind::KeyWithoutValue { key },
                            ))
                        }
                        None => return self.syntax("Unexpected EOF processing map."),
                        Some(_) => {}
                    }
                    let value = self.parse_value()?;
                    self.set(key, position, value);
                }
            }
            loop {
                self.skip_blanks();
                if self.skip_comment() {
                    continue;
                }
                match self.cursor.peek() {
                    Some(';' | ',' | '\n' | '\r' | '/') => {
                        self.cursor.bump();
                        continue 'entries;
                    }
                    Some('}') => {
                        self.cursor.bump();
                        break 'entries;
                    }
                    None => return self.syntax("Unexpected EOF processing map."),
                    other => {
                        return self.syntax(format!(
                            "Expected a map value terminator ',' or a map terminator '}}', \
                             but got '{}' instead.",
                            shown(other)
                        ))
                    }
                }
            }
        }
        self.session.leave();
        let map = self.frames.pop().unwrap_or_default();
        debug_assert!(!self.frames.is_empty());
        Ok(map)
    }

    fn parse_double_quoted(&mut self) -> Result<ValueKind, ConfError> {
        self.cursor.bump();
        let mut bytes = Vec::new();
        loop {
            match self.cursor.peek() {
                None => return self.syntax("Unexpected EOF."),
                Some('"') => {
                    self.cursor.bump();
                    break;
                }
                Some('\\') => {
                    self.cursor.bump();
                    self.parse_escape(&mut bytes)?;
                }
                Some(c) => {
                    self.cursor.bump();
                    push_char(&mut bytes, c);
                }
            }
        }
        Ok(ValueKind::String(self.utf8(bytes)?))
    }

    /// After a `\`: one of `\xHH \t \n \r \" \\`, appended to `bytes`.
    fn parse_escape(&mut self, bytes: &mut Vec<u8>) -> Result<(), ConfError> {
        match self.cursor.bump() {
            Some('t') => bytes.push(b'\t'),
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('"') => bytes.push(b'"'),
            Some('\\') => bytes.push(b'\\'),
            Some('x') => {
                let first = self.cursor.bump();
                let second = self.cursor.bump();
                if [first, second]
                    .iter()
                    .any(|c| matches!(c, Some('\n' | '\r')))
                {
                    return self.syntax(
                        "Expected two hexadecimal digits after '\\x', but hit end of line",
                    );
                }
                let digits: String = [first, second].iter().flatten().collect();
                match u8::from_str_radix(&digits, 16) {
                    Ok(byte) if digits.len() == 2 => bytes.push(byte),
                    _ => {
                        return self.syntax(format!(
                            "Expected two hexadecimal digits after '\\x', but got '{digits}'"
                        ))
                    }
                }
            }
            None => return self.syntax("Unexpected EOF."),
            Some(other) => {
                return self.syntax(format!(
                    "Invalid escape character '{}'. Only the following escape characters are \
                     allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.",
                    shown(Some(other))
                ))
            }
        }
        Ok(())
    }

    fn utf8(&self, bytes: Vec<u8>) -> Result<String, ConfError> {
        String::from_utf8(bytes)
            .map_err(|_| ConfError::new(self.here(), ConfErrorKind::InvalidUtf8))
    }

    /// `( ... )`: raw text up to a `)` alone at the start of a line (followed
    /// by a new line or the end). The text keeps its final new line.
    fn parse_block_string(&mut self) -> Result<ValueKind, ConfError> {
        self.cursor.bump();
        let start = self.cursor.offset;
        let mut previous = '(';
        loop {
            let end = self.cursor.offset;
            match self.cursor.bump() {
                None => return self.syntax("Unexpected EOF processing block."),
                Some(')')
                    if previous == '\n' && matches!(self.cursor.peek(), None | Some('\n')) =>
                {
                    return Ok(ValueKind::String(self.cursor.text[start..end].to_string()));
                }
                Some(c) => previous = c,
            }
        }
    }

    /// Digits, or `-` then digits: an integer (maybe with a size suffix), a
    /// float, a datetime, an IP-like string (`1.2.3.4:4222`), or, once a
    /// character fits none of those, an unquoted string (`10s`, `1h30m`).
    fn parse_number(&mut self, at: &Position) -> Result<ValueKind, ConfError> {
        let start = self.cursor;
        let negative = self.cursor.peek() == Some('-');
        if negative {
            self.cursor.bump();
            match self.cursor.peek() {
                Some('0'..='9') => {}
                Some('.') => return self.syntax("Floats must start with a digit, not '.'."),
                other => {
                    return self.syntax(format!("Expected a digit but got '{}'.", shown(other)))
                }
            }
        }
        let digits = self.cursor.bump_while(|c| c.is_ascii_digit());
        match self.cursor.peek() {
            Some('-') if !negative => {
                if digits.len() != 4 {
                    return self.syntax("All ISO8601 dates must be in full Zulu form.");
                }
                self.parse_datetime(start)
            }
            Some('.') => self.parse_float_or_address(start),
            Some(c) if is_size_letter(c) => {
                self.cursor.bump();
                self.cursor
                    .bump_while(|c| matches!(c, 'b' | 'B' | 'i' | 'I'));
                let next = self.cursor.peek();
                if ends_unquoted(next) || next.is_some_and(|c| c.is_ascii_digit()) {
                    self.integer(start, at)
                } else {
                    self.restart_as_string(start, at)
                }
            }
            next if ends_unquoted(next) || negative => self.integer(start, at),
            _ => self.restart_as_string(start, at),
        }
    }

    fn restart_as_string(
        &mut self,
        start: Cursor<'t>,
        at: &Position,
    ) -> Result<ValueKind, ConfError> {
        self.cursor = start;
        Ok(self.parse_unquoted(at)?.kind)
    }

    /// The integer from `start` to here: digits (maybe after `-`), then an
    /// optional size suffix.
    fn integer(&mut self, start: Cursor<'t>, at: &Position) -> Result<ValueKind, ConfError> {
        let text = &start.text[start.offset..self.cursor.offset];
        let number_len = text
            .char_indices()
            .find(|&(index, c)| !(c.is_ascii_digit() || (index == 0 && c == '-')))
            .map_or(text.len(), |(index, _)| index);
        let (number, suffix) = text.split_at(number_len);
        let out_of_range = || {
            ConfError::new(
                at.clone(),
                ConfErrorKind::IntegerOutOfRange(text.to_string()),
            )
        };
        let number: i64 = number.parse().map_err(|_| out_of_range())?;
        let multiplier = size_multiplier(&suffix.to_ascii_lowercase()).ok_or_else(|| {
            ConfError::new(
                at.clone(),
                ConfErrorKind::InvalidSizeSuffix(text.to_string()),
            )
        })?;
        let scaled = number.checked_mul(multiplier).ok_or_else(out_of_range)?;
        Ok(ValueKind::Integer(scaled))
    }

    /// After the digits and at the `.`: a float, or, at a second `.`, an
    /// address such as `127.0.0.1:4222`, kept as a string.
    fn parse_float_or_address(&mut self, start: Cursor<'t>) -> Result<ValueKind, ConfError> {
        self.cursor.bump();
        match self.cursor.peek() {
            Some('0'..='9') => {}
            other => {
                return self.syntax(format!(
                    "Floats must have a digit after the '.', but got '{}' instead.",
                    shown(other)
                ))
            }
        }
        self.cursor.bump_while(|c| c.is_ascii_digit());
        if self.cursor.peek() == Some('.') {
            self.cursor
                .bump_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '-'));
            let text = &start.text[start.offset..self.cursor.offset];
            return Ok(ValueKind::String(text.to_string()));
        }
        let text = &start.text[start.offset..self.cursor.offset];
        match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(ValueKind::Float(number)),
            _ => Err(ConfError::new(
                Position::new(self.file.clone(), start.line, start.column),
                ConfErrorKind::FloatOutOfRange(text.to_string()),
            )),
        }
    }

    /// After `YYYY` and at the `-`: the rest of `YYYY-MM-DDTHH:MM:SSZ`.
    fn parse_datetime(&mut self, start: Cursor<'t>) -> Result<ValueKind, ConfError> {
        const SHAPE: &str = "-00-00T00:00:00Z";
        for expected in SHAPE.chars() {
            let found = self.cursor.peek();
            let fits = match expected {
                '0' => found.is_some_and(|c| c.is_ascii_digit()),
                _ => found == Some(expected),
            };
            if !fits {
                let wanted = if expected == '0' {
                    String::from("digit")
                } else {
                    format!("'{expected}'")
                };
                return self.syntax(format!(
                    "Expected {wanted} in ISO8601 datetime, but found '{}' instead.",
                    shown(found)
                ));
            }
            self.cursor.bump();
        }
        let text = &start.text[start.offset..self.cursor.offset];
        ConfDateTime::parse(text)
            .map(ValueKind::DateTime)
            .ok_or_else(|| {
                ConfError::new(
                    Position::new(self.file.clone(), start.line, start.column),
                    ConfErrorKind::InvalidDateTime(text.to_string()),
                )
            })
    }

    /// An unquoted string, boolean or `$variable`, up to a blank, new line,
    /// `;`, `,`, `]`, `}` or a `'` (which is swallowed). Escapes work as in
    /// double quotes, and make the text a plain string.
    fn parse_unquoted(&mut self, at: &Position) -> Result<ConfValue, ConfError> {
        let mut bytes = Vec::new();
        let mut escaped = false;
        loop {
            let next = self.cursor.peek();
            if ends_unquoted(next) {
                break;
            }
            match next {
                Some('\'') => {
                    self.cursor.bump();
                    break;
                }
                Some('\\') => {
                    self.cursor.bump();
                    self.parse_escape(&mut bytes)?;
                    escaped = true;
                }
                Some(c) => {
                    self.cursor.bump();
                    push_char(&mut bytes, c);
                }
                None => break,
            }
        }
        let text = self.utf8(bytes)?;
        let kind = if escaped {
            ValueKind::String(text)
        } else if let Some(flag) = parse_bool(&text) {
            ValueKind::Bool(flag)
        } else if let Some(name) = text.strip_prefix('$') {
            return self.resolve_variable(name, at);
        } else {
            ValueKind::String(text)
        };
        Ok(ConfValue {
            kind,
            position: at.clone(),
        })
    }

    /// `$name`: the nearest enclosing map's `name` (which is then marked as
    /// read), else the environment variable, parsed as a value.
    fn resolve_variable(&mut self, name: &str, at: &Position) -> Result<ConfValue, ConfError> {
        if name.starts_with(BCRYPT_PREFIX) {
            return Ok(ConfValue {
                kind: ValueKind::String(format!("${name}")),
                position: at.clone(),
            });
        }
        let found = self.frames.iter_mut().rev().find_map(|frame| {
            let entry = frame.entry_mut(name)?;
            entry.referenced = true;
            Some(entry.value.clone())
        });
        if let Some(mut value) = found {
            // The reference is already charged for; the copy's nodes are new.
            self.session
                .charge_values(value.node_count().saturating_sub(1), at)?;
            value.position = at.clone();
            return Ok(value);
        }
        self.resolve_environment(name, at)
    }

    fn resolve_environment(&mut self, name: &str, at: &Position) -> Result<ConfValue, ConfError> {
        let error = |kind| Err(ConfError::new(at.clone(), kind));
        if self.session.env_chain.iter().any(|open| open == name) {
            return error(ConfErrorKind::VariableCycle {
                name: name.to_string(),
            });
        }
        if self.session.env_chain.len() >= MAX_VARIABLE_DEPTH {
            return error(ConfErrorKind::VariableTooDeep {
                max: MAX_VARIABLE_DEPTH,
            });
        }
        let Some(raw) = self.session.source.env_var(name) else {
            return error(ConfErrorKind::VariableNotFound {
                name: name.to_string(),
            });
        };
        self.session.charge_text(raw.len(), at)?;
        let text = format!("{ENV_VALUE_KEY}={raw}");
        self.session.enter(at)?;
        self.session.env_chain.push(name.to_string());
        let parsed =
            Parser::new(&text, Arc::from(format!("${name}")), self.session).parse_document();
        self.session.env_chain.pop();
        self.session.leave();
        let mut map = parsed.map_err(|inner| {
            ConfError::new(
                at.clone(),
                ConfErrorKind::VariableInvalid {
                    name: name.to_string(),
                    inner: Box::new(inner),
                },
            )
        })?;
        let Some(entry) = map.entry_mut(ENV_VALUE_KEY) else {
            return error(ConfErrorKind::VariableNotFound {
                name: name.to_string(),
            });
        };
        let mut value = entry.value.clone();
        value.relocate(at);
        Ok(value)
    }
}

fn push_char(bytes: &mut Vec<u8>, c: char) {
    let mut buffer = [0u8; 4];
    bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 3] = ["true", "yes", "on"];
    const FALSE: [&str; 3] = ["false", "no", "off"];
    if TRUE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Some(true)
    } else if FALSE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Some(false)
    } else {
        None
    }
}
