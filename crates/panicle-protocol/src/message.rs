//! A message template read as parts: the panic kind, the error type and the
//! payload's details.
//!
//! Two panics of one bug often differ only in the error's payload:
//! `ParseIntError { kind: InvalidDigit }` for `"ten"`, `{ kind: Empty }` for
//! `""`; `Os { code: 2, kind: NotFound, .. }` and `code: 13,
//! PermissionDenied`. As one opaque token their messages share nothing; read
//! as parts they share the kind (`Result::unwrap() on an Err value`) and the
//! error type (`ParseIntError`) and differ in one detail, so clustering can
//! weigh each part on its own. Works on templates
//! ([`crate::message_template`]): values are placeholders already, so what
//! is left in a payload is the shape of the error, not its data.

use std::sync::LazyLock;

use regex::Regex;

/// The parts of a message template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageParts {
    /// What kind of panic it is: `Result::unwrap() on an Err value`,
    /// `index out of bounds`, `runtime error: index out of range`, an
    /// exception's type, else the message's head (the text before the first
    /// top-level `: `, or all of it). Empty only for an empty message.
    pub kind: String,
    /// The error's type when the payload is a Rust `Debug` value:
    /// `ParseIntError`, `io::Error` (for `Os {..}`, `Kind(..)`,
    /// `Custom {..}`), `serde_json::Error` (`Error("..", line: .., column: ..)`).
    pub error_type: Option<String>,
    /// The payload's details: the variants and kinds inside the error value
    /// (`InvalidDigit`, `NotFound`, `Status(<n>)`) and the further segments of
    /// a wrapped error chain (`no such file or directory`). Placeholders
    /// alone (`<n>`, `"<s>"`) are no detail. In order, without repeats.
    pub details: Vec<String>,
}

/// Panic kinds std and the Go runtime word with values inside: the pattern
/// on the template, the kind's name (empty: the matched text), and whether
/// what follows the match is a payload (`true`) or only more of the same
/// wording (`false`).
static KNOWN_KINDS: LazyLock<Vec<(Regex, &'static str, bool)>> = LazyLock::new(|| {
    [
        (
            r"^called `Result::unwrap\(\)` on an `Err` value(?::\s*|$)",
            "Result::unwrap() on an Err value",
            true,
        ),
        (
            r"^called `Result::unwrap_err\(\)` on an `Ok` value(?::\s*|$)",
            "Result::unwrap_err() on an Ok value",
            true,
        ),
        (
            r"^called `Option::unwrap\(\)` on a `None` value",
            "Option::unwrap() on a None value",
            false,
        ),
        (r"^index out of bounds\b", "index out of bounds", false),
        (
            r"^byte index <n> is not a char boundary",
            "byte index is not a char boundary",
            false,
        ),
        (
            r"^byte index <n> is out of bounds",
            "byte index is out of bounds",
            false,
        ),
        (
            r"^range start index <n> out of range",
            "range start index out of range",
            false,
        ),
        (
            r"^range end index <n> out of range",
            "range end index out of range",
            false,
        ),
        (
            r"^slice index starts at <n> but ends at <n>",
            "slice index starts after it ends",
            false,
        ),
        // Go's runtime errors: the wording up to the first value.
        (r"^runtime error: [a-z][a-z ]*[a-z]", "", false),
        (
            r"^interface conversion(?::\s*|$)",
            "interface conversion",
            true,
        ),
    ]
    .into_iter()
    .map(|(re, kind, payload)| {
        // The patterns are literals of this file, checked by the tests.
        (Regex::new(re).unwrap(), kind, payload)
    })
    .collect()
});

/// A Rust type path at the start of a payload: `ParseIntError`,
/// `reqwest::Error`, `std::io::Error`.
static RE_TYPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Z][A-Za-z0-9_]*").unwrap());

/// A value that is only placeholders and punctuation carries no detail.
static RE_PLACEHOLDER_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:<n>|<s>|<id>|<hex>|<path>|[\s"'`\[\]():.,\-_/+*#=])*$"#).unwrap()
});

/// Reads a message template as kind, error type and details.
pub fn message_parts(template: &str) -> MessageParts {
    let s = template.trim();
    if s.is_empty() {
        return MessageParts::default();
    }
    for (re, kind, has_payload) in KNOWN_KINDS.iter() {
        if let Some(m) = re.find(s) {
            let kind = if kind.is_empty() { m.as_str() } else { kind };
            let mut parts = MessageParts {
                kind: kind.to_string(),
                ..MessageParts::default()
            };
            if *has_payload {
                read_payload(&s[m.end()..], &mut parts);
            }
            return parts;
        }
    }
    let segments = split_top(s, ": ");
    let mut parts = MessageParts {
        kind: segments[0].trim().to_string(),
        ..MessageParts::default()
    };
    if segments.len() > 1 {
        let rest = &s[segments[0].len() + 2..];
        read_payload(rest, &mut parts);
    }
    parts
}

/// Reads the error value (or wrapped error chain) after a kind.
fn read_payload(payload: &str, parts: &mut MessageParts) {
    for segment in split_top(payload.trim(), ": ") {
        let segment = segment.trim();
        if segment.is_empty() {
            continue;
        }
        if parts.error_type.is_none()
            && let Some((ty, details)) = debug_value(segment)
        {
            parts.error_type = Some(ty);
            for d in details {
                push_detail(parts, d);
            }
            continue;
        }
        push_detail(parts, segment.to_string());
    }
}

fn push_detail(parts: &mut MessageParts, detail: String) {
    if !RE_PLACEHOLDER_ONLY.is_match(&detail) && !parts.details.contains(&detail) {
        parts.details.push(detail);
    }
}

/// A Rust `Debug` value: `Name`, `Name(..)` or `Name { .. }` and nothing
/// after it. Its type (well-known std and serde shapes named by what they
/// are) and the fields that are not placeholders.
fn debug_value(s: &str) -> Option<(String, Vec<String>)> {
    let name = RE_TYPE.find(s)?.as_str();
    let rest = s[name.len()..].trim_start();
    let (fields, named) = if rest.is_empty() {
        (Vec::new(), false)
    } else if let Some(inner) = enclosed(rest, '{', '}') {
        (split_top(inner, ", "), true)
    } else if let Some(inner) = enclosed(rest, '(', ')') {
        (split_top(inner, ", "), false)
    } else {
        return None;
    };
    let mut names: Vec<&str> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    for field in fields {
        let field = field.trim();
        // `kind: NotFound` in braces; `line: <n>` also appears in serde's
        // tuple-like Debug.
        let (label, value) = match split_top(field, ": ").as_slice() {
            [l, v] if is_ident(l) => (Some(*l), v.trim()),
            _ => (None, field),
        };
        if let Some(l) = label {
            names.push(l);
        }
        if !RE_PLACEHOLDER_ONLY.is_match(value) {
            details.push(value.to_string());
        }
    }
    let ty = match name {
        "Os" | "Kind" | "Custom" | "SimpleMessage" => "io::Error".to_string(),
        // A static-message io::Error: `Error { kind: NotFound, message: ".." }`.
        "Error" if named && names == ["kind", "message"] => "io::Error".to_string(),
        "Error" if !named && names.contains(&"line") && names.contains(&"column") => {
            "serde_json::Error".to_string()
        }
        _ => name.to_string(),
    };
    Some((ty, details))
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The inside of `s` when it is exactly one `open … close` group
/// (`A(x) + B(y)` is not: its first group closes before the end).
fn enclosed(s: &str, open: char, close: char) -> Option<&str> {
    if !s.starts_with(open) || !s.ends_with(close) || s.len() < 2 {
        return None;
    }
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' | '(' | '[' if !quoted => depth += 1,
            '}' | ')' | ']' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return (i + c.len_utf8() == s.len()).then(|| s[1..i].trim());
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at `sep` (ASCII) outside brackets and double quotes.
fn split_top<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut start = 0;
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b'{' | b'(' | b'[' if !quoted => depth += 1,
            b'}' | b')' | b']' if !quoted => depth -= 1,
            _ => {}
        }
        if depth == 0 && !quoted && bytes[i..].starts_with(sep.as_bytes()) {
            out.push(&s[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_template;

    fn parts(message: &str) -> (String, Option<String>, Vec<String>) {
        let p = message_parts(&message_template(message));
        (p.kind, p.error_type, p.details)
    }

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_int_error_variants_share_kind_and_type() {
        let unwrap = "Result::unwrap() on an Err value";
        assert_eq!(
            parts(
                "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }"
            ),
            (
                unwrap.into(),
                Some("ParseIntError".into()),
                owned(&["InvalidDigit"])
            )
        );
        assert_eq!(
            parts("called `Result::unwrap()` on an `Err` value: ParseIntError { kind: Empty }"),
            (
                unwrap.into(),
                Some("ParseIntError".into()),
                owned(&["Empty"])
            )
        );
    }

    #[test]
    fn io_errors_are_io_error_with_their_kind() {
        let unwrap = "Result::unwrap() on an Err value";
        assert_eq!(
            parts(
                r#"called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: "No such file or directory" }"#
            ),
            (
                unwrap.into(),
                Some("io::Error".into()),
                owned(&["NotFound"])
            )
        );
        assert_eq!(
            parts(
                r#"called `Result::unwrap()` on an `Err` value: Os { code: 13, kind: PermissionDenied, message: "Permission denied" }"#
            ),
            (
                unwrap.into(),
                Some("io::Error".into()),
                owned(&["PermissionDenied"])
            )
        );
        assert_eq!(
            parts(r#"failed to open spool: Custom { kind: Other, error: "disk full" }"#),
            (
                "failed to open spool".into(),
                Some("io::Error".into()),
                owned(&["Other"])
            )
        );
        assert_eq!(
            parts(
                r#"called `Result::unwrap()` on an `Err` value: Error { kind: InvalidInput, message: "cursor out of range" }"#
            ),
            (
                unwrap.into(),
                Some("io::Error".into()),
                owned(&["InvalidInput"])
            )
        );
        assert_eq!(
            parts("called `Result::unwrap()` on an `Err` value: Kind(TimedOut)"),
            (
                unwrap.into(),
                Some("io::Error".into()),
                owned(&["TimedOut"])
            )
        );
    }

    #[test]
    fn serde_errors_drop_their_position() {
        let a = parts(
            r#"called `Result::unwrap()` on an `Err` value: Error("expected value", line: 1, column: 7)"#,
        );
        let b = parts(
            r#"called `Result::unwrap()` on an `Err` value: Error("missing field `id`", line: 3, column: 12)"#,
        );
        assert_eq!(a.1.as_deref(), Some("serde_json::Error"));
        assert_eq!(a, b);
        assert!(a.2.is_empty());
    }

    #[test]
    fn other_error_values_name_their_type_and_variants() {
        assert_eq!(
            parts(
                r#"called `Result::unwrap()` on an `Err` value: reqwest::Error { kind: Status(503), url: "http://stock/api" }"#
            ),
            (
                "Result::unwrap() on an Err value".into(),
                Some("reqwest::Error".into()),
                owned(&["Status(<n>)"])
            )
        );
        assert_eq!(
            parts("called `Result::unwrap()` on an `Err` value: Error(InvalidSignature)"),
            (
                "Result::unwrap() on an Err value".into(),
                Some("Error".into()),
                owned(&["InvalidSignature"])
            )
        );
        assert_eq!(
            parts("already mutably borrowed: BorrowError"),
            (
                "already mutably borrowed".into(),
                Some("BorrowError".into()),
                vec![]
            )
        );
        assert_eq!(
            parts(r#"called `Result::unwrap()` on an `Err` value: "boom""#),
            ("Result::unwrap() on an Err value".into(), None, vec![])
        );
    }

    #[test]
    fn std_and_go_kinds_drop_their_values() {
        for (message, kind) in [
            (
                "called `Option::unwrap()` on a `None` value",
                "Option::unwrap() on a None value",
            ),
            (
                "index out of bounds: the len is 3 but the index is 7",
                "index out of bounds",
            ),
            (
                "attempt to add with overflow",
                "attempt to add with overflow",
            ),
            (
                "byte index 5 is not a char boundary; it is inside 'é' (bytes 4..6) of `Crème`",
                "byte index is not a char boundary",
            ),
            (
                "range end index 9 out of range for slice of length 4",
                "range end index out of range",
            ),
            (
                "runtime error: index out of range [5] with length 3",
                "runtime error: index out of range",
            ),
            (
                "runtime error: slice bounds out of range [:12] with capacity 8",
                "runtime error: slice bounds out of range",
            ),
            (
                "runtime error: invalid memory address or nil pointer dereference",
                "runtime error: invalid memory address or nil pointer dereference",
            ),
            (
                "assignment to entry in nil map",
                "assignment to entry in nil map",
            ),
            ("concurrent map writes", "concurrent map writes"),
        ] {
            assert_eq!(
                parts(message),
                (kind.to_string(), None, vec![]),
                "{message}"
            );
        }
    }

    #[test]
    fn wrapped_chains_and_exceptions_keep_head_as_kind() {
        assert_eq!(
            parts("load config: open /etc/shop/config.yaml: no such file or directory"),
            (
                "load config".into(),
                None,
                owned(&["open <path>", "no such file or directory"])
            )
        );
        assert_eq!(
            parts("load config: open /etc/shop/config.yaml: permission denied").0,
            "load config"
        );
        assert_eq!(
            parts("ValueError: invalid literal for int() with base 10: 'ten'").0,
            "ValueError"
        );
        assert_eq!(
            parts("interface conversion: interface {} is string, not int"),
            (
                "interface conversion".into(),
                None,
                owned(&["interface {} is string, not int"])
            )
        );
        assert_eq!(
            parts("reservation exists"),
            ("reservation exists".into(), None, vec![])
        );
        assert_eq!(message_parts(""), MessageParts::default());
    }

    proptest::proptest! {
        #[test]
        fn any_text_reads_without_panicking(
            s in "[a-zA-Z0-9_:{}()\\[\\]\", <>é`'.-]{0,80}|\\PC{0,120}",
        ) {
            let p = message_parts(&s);
            proptest::prop_assert!(s.trim().is_empty() || !p.kind.is_empty() || s.trim().starts_with(": "));
            let _ = message_parts(&message_template(&s));
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        for s in [
            "called `Result::unwrap()` on an `Err` value: ",
            "called `Result::unwrap()` on an `Err` value: Foo { a: ",
            "x: }}}: ((",
            ": : :",
            "Err { kind: \"unterminated",
            "é: ü { ß: ñ }",
        ] {
            let _ = message_parts(&message_template(s));
            let _ = message_parts(s);
        }
    }
}
