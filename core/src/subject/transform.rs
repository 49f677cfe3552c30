//! Subject transforms: rewriting a subject that matches a source pattern into
//! a destination, as account `mappings` and import `to`/`prefix` do.
//!
//! The destination refers to the source's `*` wildcards by position, as
//! `$1` or `{{wildcard(1)}}`; a destination `*` takes the next wildcard in
//! order (the reference's older import form); a trailing `>` carries the
//! tokens the source's `>` matched. Other mapping functions of the reference
//! (`partition`, `split`, ...) are refused by name, not silently mis-applied.
//!
//! Invariant: `apply` writes a valid literal subject whenever the input was
//! one, because every destination token is a literal or a copied token.

use crate::subject::is_valid_subscribe_subject;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("invalid source subject {0:?}")]
    InvalidSource(String),
    #[error("invalid destination subject {0:?}")]
    InvalidDestination(String),
    #[error("wildcard index {index} out of range in {destination:?}")]
    WildcardOutOfRange { index: usize, destination: String },
    #[error("mapping function {0:?} is not supported")]
    UnsupportedFunction(String),
    #[error("destination {0:?} ends in '>' but the source does not")]
    UnmatchedFullWildcard(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceToken {
    Literal(Vec<u8>),
    Single,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DestToken {
    Literal(Vec<u8>),
    /// The n-th (0-based) `*` of the source.
    Wildcard(usize),
    /// What the source's `>` matched.
    Rest,
}

/// A compiled `source → destination` rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTransform {
    source: Vec<SourceToken>,
    destination: Vec<DestToken>,
}

impl SubjectTransform {
    pub fn new(source: &str, destination: &str) -> Result<Self, TransformError> {
        if !is_valid_subscribe_subject(source.as_bytes()) {
            return Err(TransformError::InvalidSource(source.to_string()));
        }
        let source_tokens: Vec<SourceToken> = source
            .split('.')
            .map(|token| match token {
                "*" => SourceToken::Single,
                ">" => SourceToken::Rest,
                _ => SourceToken::Literal(token.as_bytes().to_vec()),
            })
            .collect();
        let wildcards = source_tokens
            .iter()
            .filter(|t| matches!(t, SourceToken::Single))
            .count();
        let source_has_rest = matches!(source_tokens.last(), Some(SourceToken::Rest));

        let mut next_positional = 0;
        let mut dest_tokens = Vec::new();
        let raw: Vec<&str> = destination.split('.').collect();
        if destination.is_empty() || raw.iter().any(|t| t.is_empty()) {
            return Err(TransformError::InvalidDestination(destination.to_string()));
        }
        for (position, token) in raw.iter().enumerate() {
            let token = token.trim();
            let parsed = if token == ">" {
                if position + 1 != raw.len() {
                    return Err(TransformError::InvalidDestination(destination.to_string()));
                }
                if !source_has_rest {
                    return Err(TransformError::UnmatchedFullWildcard(
                        destination.to_string(),
                    ));
                }
                DestToken::Rest
            } else if token == "*" {
                next_positional += 1;
                DestToken::Wildcard(next_positional - 1)
            } else if let Some(index) = token
                .strip_prefix('$')
                // As the reference: `$` and a number is a wildcard, any
                // other `$` token a literal (`$JS.API.>` imported as
                // `$JS.A.API.>`).
                .filter(|rest| rest.parse::<i64>().is_ok())
            {
                DestToken::Wildcard(wildcard_index(index, destination)?)
            } else if let Some(inner) = token.strip_prefix("{{").and_then(|t| t.strip_suffix("}}"))
            {
                let inner = inner.trim();
                let args = inner
                    .strip_prefix("wildcard(")
                    .or_else(|| inner.strip_prefix("Wildcard("))
                    .and_then(|t| t.strip_suffix(')'));
                match args {
                    Some(index) => DestToken::Wildcard(wildcard_index(index.trim(), destination)?),
                    None => {
                        let name = inner.split('(').next().unwrap_or(inner);
                        return Err(TransformError::UnsupportedFunction(name.to_string()));
                    }
                }
            } else {
                DestToken::Literal(token.as_bytes().to_vec())
            };
            if let DestToken::Wildcard(index) = parsed {
                if index >= wildcards {
                    return Err(TransformError::WildcardOutOfRange {
                        index: index + 1,
                        destination: destination.to_string(),
                    });
                }
            }
            dest_tokens.push(parsed);
        }
        Ok(SubjectTransform {
            source: source_tokens,
            destination: dest_tokens,
        })
    }

    /// `source` → `destination` taken as they are, with no wildcards or
    /// references (a `$` in an account name is just a character here).
    pub fn literal(source: &str, destination: &str) -> Result<Self, TransformError> {
        if !crate::subject::is_valid_literal_subject(source.as_bytes()) {
            return Err(TransformError::InvalidSource(source.to_string()));
        }
        if !crate::subject::is_valid_literal_subject(destination.as_bytes()) {
            return Err(TransformError::InvalidDestination(destination.to_string()));
        }
        Ok(SubjectTransform {
            source: source
                .split('.')
                .map(|token| SourceToken::Literal(token.as_bytes().to_vec()))
                .collect(),
            destination: vec![DestToken::Literal(destination.as_bytes().to_vec())],
        })
    }

    /// A transform that puts `prefix.` in front of whatever `source` matched.
    pub fn with_prefix(source: &str, prefix: &str) -> Result<Self, TransformError> {
        let mut transform = SubjectTransform::new(source, source)?;
        let mut destination = vec![DestToken::Literal(prefix.as_bytes().to_vec())];
        destination.append(&mut transform.destination);
        transform.destination = destination;
        Ok(transform)
    }

    /// The transform that takes a destination back to its source, when
    /// the destination keeps every source wildcard exactly once (else some
    /// source token is lost and `None` is returned). Applied to a pattern
    /// inside the destination (its `*`/`>` tokens are captured as they
    /// are), it gives the source pattern a stream import's shadow interest
    /// lives on.
    pub fn reverse(&self) -> Option<SubjectTransform> {
        let mut source = Vec::new();
        // Position among the reverse source's wildcards of each forward
        // wildcard.
        let mut position_of = vec![None; self.source.len()];
        let mut singles = 0;
        for token in &self.destination {
            match token {
                DestToken::Literal(literal) => source.extend(
                    literal
                        .split(|&b| b == b'.')
                        .map(|t| SourceToken::Literal(t.to_vec())),
                ),
                DestToken::Wildcard(index) => {
                    if position_of.get(*index).copied().flatten().is_some() {
                        return None;
                    }
                    position_of[*index] = Some(singles);
                    singles += 1;
                    source.push(SourceToken::Single);
                }
                DestToken::Rest => source.push(SourceToken::Rest),
            }
        }
        let mut destination = Vec::new();
        let mut wildcard = 0;
        for token in &self.source {
            destination.push(match token {
                SourceToken::Literal(literal) => DestToken::Literal(literal.clone()),
                SourceToken::Single => {
                    wildcard += 1;
                    DestToken::Wildcard(position_of[wildcard - 1]?)
                }
                SourceToken::Rest => DestToken::Rest,
            });
        }
        let rest = |tokens: &[SourceToken]| tokens.contains(&SourceToken::Rest);
        if rest(&self.source) != rest(&source) {
            return None;
        }
        Some(SubjectTransform {
            source,
            destination,
        })
    }

    /// Whether `subject` (literal) matches the source pattern.
    pub fn matches(&self, subject: &[u8]) -> bool {
        self.capture(subject, &mut Vec::new()).is_some()
    }

    /// Rewrite `subject` into `out` (cleared first). False when `subject`
    /// does not match the source; `out` is then empty.
    pub fn apply(&self, subject: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        let mut captured: Vec<&[u8]> = Vec::with_capacity(4);
        let Some(rest) = self.capture(subject, &mut captured) else {
            return false;
        };
        for (n, token) in self.destination.iter().enumerate() {
            if n > 0 {
                out.push(b'.');
            }
            match token {
                DestToken::Literal(literal) => out.extend_from_slice(literal),
                DestToken::Wildcard(index) => out.extend_from_slice(captured[*index]),
                DestToken::Rest => out.extend_from_slice(rest),
            }
        }
        true
    }

    /// Match `subject` token by token; fills the `*` captures and returns what
    /// `>` matched (empty when the source has no `>`).
    fn capture<'s>(&self, subject: &'s [u8], captured: &mut Vec<&'s [u8]>) -> Option<&'s [u8]> {
        let mut offset = 0;
        let mut tokens = subject.split(|&b| b == b'.');
        for source in &self.source {
            match source {
                SourceToken::Rest => {
                    return subject.get(offset..).filter(|rest| !rest.is_empty());
                }
                SourceToken::Single => {
                    let token = tokens.next().filter(|t| !t.is_empty())?;
                    captured.push(token);
                    offset += token.len() + 1;
                }
                SourceToken::Literal(literal) => {
                    let token = tokens.next()?;
                    if token != literal.as_slice() {
                        return None;
                    }
                    offset += token.len() + 1;
                }
            }
        }
        tokens.next().is_none().then_some(&subject[..0])
    }
}

fn wildcard_index(text: &str, destination: &str) -> Result<usize, TransformError> {
    let index: usize = text
        .parse()
        .map_err(|_| TransformError::InvalidDestination(destination.to_string()))?;
    if index == 0 {
        return Err(TransformError::WildcardOutOfRange {
            index,
            destination: destination.to_string(),
        });
    }
    Ok(index - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(source: &str, destination: &str, subject: &str) -> Option<String> {
        let transform = SubjectTransform::new(source, destination).expect("valid transform");
        let mut out = Vec::new();
        transform
            .apply(subject.as_bytes(), &mut out)
            .then(|| String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn literal_and_positional_wildcards() {
        assert_eq!(apply("foo", "bar", "foo").as_deref(), Some("bar"));
        assert_eq!(apply("foo", "bar", "foo.x"), None);
        assert_eq!(apply("a.*.*", "b.$2.$1", "a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(
            apply("a.*.*", "b.{{wildcard(2)}}.{{ wildcard(1) }}", "a.x.y").as_deref(),
            Some("b.y.x")
        );
        assert_eq!(apply("a.*", "b.*", "a.q").as_deref(), Some("b.q"));
        assert_eq!(apply("a.>", "b.>", "a.q.r").as_deref(), Some("b.q.r"));
        assert_eq!(apply("a.>", "b.>", "a"), None);
        assert_eq!(
            apply("$JS.A.API.>", "$JS.API.>", "$JS.A.API.INFO").as_deref(),
            Some("$JS.API.INFO")
        );
    }

    #[test]
    fn reverse_takes_patterns_back() {
        let back = |source: &str, destination: &str, pattern: &str| {
            let transform = SubjectTransform::new(source, destination).expect("valid");
            let reverse = transform.reverse()?;
            let mut out = Vec::new();
            reverse
                .apply(pattern.as_bytes(), &mut out)
                .then(|| String::from_utf8(out).expect("utf-8"))
        };
        assert_eq!(back("ev.>", "ev.>", "ev.x.*").as_deref(), Some("ev.x.*"));
        assert_eq!(
            back("ev.>", "imp.ev.>", "imp.ev.>").as_deref(),
            Some("ev.>")
        );
        assert_eq!(back("a.*.*", "b.$2.$1", "b.y.*").as_deref(), Some("a.*.y"));
        assert_eq!(back("a.*.*", "b.$1", "b.x"), None);
        let prefixed = SubjectTransform::with_prefix("foo.>", "p.q").expect("valid");
        let mut out = Vec::new();
        assert!(prefixed
            .reverse()
            .expect("reversible")
            .apply(b"p.q.foo.*", &mut out));
        assert_eq!(out, b"foo.*");
    }

    #[test]
    fn prefix() {
        let transform = SubjectTransform::with_prefix("foo.>", "imp").expect("valid");
        let mut out = Vec::new();
        assert!(transform.apply(b"foo.bar.baz", &mut out));
        assert_eq!(out, b"imp.foo.bar.baz");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            SubjectTransform::new("a.*", "b.$2"),
            Err(TransformError::WildcardOutOfRange { index: 2, .. })
        ));
        assert!(matches!(
            SubjectTransform::new("a.*", "b.{{partition(3,1)}}"),
            Err(TransformError::UnsupportedFunction(name)) if name == "partition"
        ));
        assert!(matches!(
            SubjectTransform::new("a.*", "b.>"),
            Err(TransformError::UnmatchedFullWildcard(_))
        ));
        assert!(SubjectTransform::new("a..b", "c").is_err());
    }
}
