//! A one-pass look at JSON text that both sides make before they build a tree from it:
//! how deep it nests and whether it escapes a UTF-16 surrogate. Strings are skipped, so
//! brackets inside them do not count. The text is not validated here.

/// What [`shape`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// How deep arrays and objects nest at the deepest point.
    pub depth: usize,
    /// A string holds a `\u` escape of a UTF-16 surrogate (`\uD800` to `\uDFFF`): a
    /// tree checks that such escapes pair, skipping a value does not.
    pub escaped_surrogate: bool,
}

/// Reads `bytes` once as JSON text. Runs on every record a tree is built from, so the
/// inside of a string (most of a record's bytes) is skipped by a loop that looks only
/// for its end and its escapes.
pub fn shape(bytes: &[u8]) -> Shape {
    let mut shape = Shape { depth: 0, escaped_surrogate: false };
    let (mut depth, mut index) = (0usize, 0usize);
    while let Some(&byte) = bytes.get(index) {
        index += 1;
        match byte {
            b'"' => loop {
                while bytes.get(index).is_some_and(|&byte| byte != b'"' && byte != b'\\') {
                    index += 1;
                }
                match bytes.get(index) {
                    None => break,
                    Some(b'"') => {
                        index += 1;
                        break;
                    }
                    Some(_) => {
                        // A backslash: `\uD8..` to `\uDF..` escapes a surrogate.
                        if bytes.get(index + 1) == Some(&b'u')
                            && matches!(bytes.get(index + 2), Some(b'd' | b'D'))
                            && matches!(bytes.get(index + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
                        {
                            shape.escaped_surrogate = true;
                        }
                        index += 2;
                    }
                }
            },
            b'[' | b'{' => {
                depth += 1;
                shape.depth = shape.depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::{Shape, shape};

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert_eq!(shape(br#"{"a": "[[[[\"{", "b": [1, {"c": 2}]}"#), Shape { depth: 3, escaped_surrogate: false });
        assert_eq!(shape(b"12").depth, 0);
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(shape(deep.as_bytes()).depth, 500);
    }

    #[test]
    fn escaped_surrogates_are_found_and_other_escapes_are_not() {
        assert!(shape(br#"{"a": "\ud83d\ude00"}"#).escaped_surrogate);
        assert!(shape(br#"["\uDFFF"]"#).escaped_surrogate);
        assert!(!shape(br#"{"a": "\u00e9 \\ud800"}"#).escaped_surrogate);
    }

    #[test]
    fn unterminated_text_ends_the_scan() {
        assert_eq!(shape(br#"{"a": "\"#), Shape { depth: 1, escaped_surrogate: false });
        assert_eq!(shape(br#"["\ud8"#).depth, 1);
        assert!(shape(br#"["\uD8"#).escaped_surrogate);
        assert_eq!(shape(b"\"").depth, 0);
    }

    /// The scan agrees with a byte-at-a-time state machine on every short text over
    /// the characters that matter.
    #[test]
    fn agrees_with_a_byte_by_byte_reading() {
        fn reference(bytes: &[u8]) -> Shape {
            let (mut depth, mut shape) = (0usize, Shape { depth: 0, escaped_surrogate: false });
            let (mut in_string, mut escaped) = (false, false);
            for (index, byte) in bytes.iter().enumerate() {
                match (in_string, escaped, byte) {
                    (true, true, b'u') => {
                        escaped = false;
                        if matches!(bytes.get(index + 1), Some(b'd' | b'D'))
                            && matches!(bytes.get(index + 2), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
                        {
                            shape.escaped_surrogate = true;
                        }
                    }
                    (true, true, _) => escaped = false,
                    (true, false, b'\\') => escaped = true,
                    (true, false, b'"') => in_string = false,
                    (true, false, _) => {}
                    (false, _, b'"') => in_string = true,
                    (false, _, b'[' | b'{') => {
                        depth += 1;
                        shape.depth = shape.depth.max(depth);
                    }
                    (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
                    (false, _, _) => {}
                }
            }
            shape
        }
        let alphabet = b"\"\\u{}[]d8Dx";
        let mut text = Vec::new();
        for length in 0..=6u32 {
            for mut number in 0..alphabet.len().pow(length) {
                text.clear();
                for _ in 0..length {
                    text.push(alphabet[number % alphabet.len()]);
                    number /= alphabet.len();
                }
                assert_eq!(shape(&text), reference(&text), "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }
}
