//! Quick answers for the common case, written for WebAssembly: eight bytes a step in
//! 64-bit words (a byte at a time costs about 3.7 cycles per byte in a component, where
//! every loop turn also checks the epoch). The scanning helpers are inlined into the
//! scan: a call in a component checks the epoch on entry too. Each function answers
//! only "yes, certainly"; anything else goes to the full reading in `lib.rs`, which
//! decides.

/// The most a quick answer nests: the line wraps a value in one more object.
const MAX_DEPTH: u32 = super::MAX_VALUE_DEPTH as u32;
/// Digits before the point (or exponent) that certainly keep a number finite.
const MAX_INTEGER_DIGITS: usize = 300;
/// With an exponent, at most this many digits before the point and this exponent.
const MAX_SCALED_DIGITS: usize = 20;
const MAX_EXPONENT: u32 = 250;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A word's bytes flagged (high bit of each byte) where it may hold a quote, a
/// backslash or a control character. The lowest flag is always a real one (a false
/// flag only ever sits above a real one), so `trailing_zeros / 8` finds the first.
fn specials(word: u64) -> u64 {
    let zero_at = |bytes: u64| bytes.wrapping_sub(ONES) & !bytes & HIGHS;
    zero_at(word ^ (ONES * u64::from(b'"'))) | zero_at(word ^ (ONES * u64::from(b'\\'))) | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
}

/// Where the first quote, backslash or control character at or after `at` is.
#[inline(always)]
fn next_special(bytes: &[u8], mut at: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let flags = specials(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at.min(bytes.len())..].iter().position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20).map(|found| at + found)
}

/// Whether `bytes` can be written inside quotes as they are: UTF-8 without quotes,
/// backslashes or control characters.
pub fn plain_text(bytes: &[u8]) -> bool {
    next_special(bytes, 0).is_none() && utf8(bytes)
}

/// Whether `bytes` is certainly one strict JSON value (what serde_json reads into a
/// tree) written on one line and nested at most [`MAX_DEPTH`] deep. `false` means "not
/// certain": line breaks between tokens, surrogate escapes, numbers near the limits of
/// a float, or anything not JSON.
pub fn strict_one_line(bytes: &[u8]) -> bool {
    scan(bytes).is_some() && utf8(bytes)
}

/// Whether `bytes` is UTF-8: ASCII looked at a word at a time, the rest by the standard
/// library.
fn utf8(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let rest = words.remainder().iter().fold(0, |seen, &byte| seen | byte);
    let seen = words.fold(0, |seen, chunk| seen | u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
    (seen & HIGHS == 0 && rest < 0x80) || std::str::from_utf8(bytes).is_ok()
}

/// The grammar of JSON over the bytes (their UTF-8 is checked by the caller).
fn scan(bytes: &[u8]) -> Option<()> {
    // One bit per open container, the innermost lowest: set for an object.
    let mut objects: u128 = 0;
    let mut depth = 0;
    let mut at = blanks(bytes, 0);
    loop {
        // A value starts at `at`.
        match *bytes.get(at)? {
            open @ (b'{' | b'[') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
                objects = objects << 1 | u128::from(open == b'{');
                at = blanks(bytes, at + 1);
                let close = if open == b'{' { b'}' } else { b']' };
                if bytes.get(at) != Some(&close) {
                    if open == b'{' {
                        at = member_name(bytes, at)?;
                    }
                    continue;
                }
                // Empty: closed here; `at` is its last byte.
                depth -= 1;
                objects >>= 1;
            }
            b'"' => at = string_end(bytes, at)? - 1,
            b'-' | b'0'..=b'9' => at = number_end(bytes, at)? - 1,
            b't' => at = literal_end(bytes, at, b"true")? - 1,
            b'f' => at = literal_end(bytes, at, b"false")? - 1,
            b'n' => at = literal_end(bytes, at, b"null")? - 1,
            _ => return None,
        }
        // `at` is the value's last byte: close containers until one goes on.
        loop {
            at = blanks(bytes, at + 1);
            if depth == 0 {
                return (at == bytes.len()).then_some(());
            }
            let in_object = objects & 1 == 1;
            match *bytes.get(at)? {
                b',' => {
                    at = blanks(bytes, at + 1);
                    if in_object {
                        at = member_name(bytes, at)?;
                    }
                    break;
                }
                b'}' if in_object => {}
                b']' if !in_object => {}
                _ => return None,
            }
            depth -= 1;
            objects >>= 1;
        }
    }
}

/// Spaces and tabs from `at` on (a line break is not certain: the caller says no).
#[inline(always)]
fn blanks(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A member's name and its colon from `at`: where its value starts.
#[inline(always)]
fn member_name(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let at = blanks(bytes, string_end(bytes, at)?);
    (bytes.get(at) == Some(&b':')).then(|| blanks(bytes, at + 1))
}

/// The end (after the closing quote) of the string whose opening quote is at `at`.
#[inline(always)]
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut at = at + 1;
    loop {
        at = next_special(bytes, at)?;
        match bytes[at] {
            b'"' => return Some(at + 1),
            b'\\' => at = escape_end(bytes, at)?,
            _ => return None,
        }
    }
}

/// The end of the escape at `at` (a backslash). A `\u` escape of a surrogate is not
/// certain (a lone one is refused): the caller says no.
fn escape_end(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' => {
            let hex = bytes.get(at + 2..at + 6)?;
            let code = hex.iter().try_fold(0u32, |code, &digit| Some(code << 4 | (digit as char).to_digit(16)?))?;
            (!(0xD800..=0xDFFF).contains(&code)).then_some(at + 6)
        }
        _ => None,
    }
}

/// The end of the number starting at `at`, when it is certainly a finite float.
#[inline(always)]
fn number_end(bytes: &[u8], at: usize) -> Option<usize> {
    let digits_from = |at: usize| at + bytes[at.min(bytes.len())..].iter().take_while(|byte| byte.is_ascii_digit()).count();
    let mut at = at + usize::from(bytes[at] == b'-');
    let integer_digits = match *bytes.get(at)? {
        b'0' => 1,
        b'1'..=b'9' => digits_from(at) - at,
        _ => return None,
    };
    if integer_digits > MAX_INTEGER_DIGITS {
        return None;
    }
    at += integer_digits;
    if bytes.get(at) == Some(&b'.') {
        let end = digits_from(at + 1);
        if end == at + 1 {
            return None;
        }
        at = end;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1 + usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
        let end = digits_from(at);
        let exponent = std::str::from_utf8(&bytes[at..end]).ok()?.parse::<u32>().ok()?;
        if integer_digits > MAX_SCALED_DIGITS || exponent > MAX_EXPONENT {
            return None;
        }
        at = end;
    }
    Some(at)
}

#[inline(always)]
fn literal_end(bytes: &[u8], at: usize, literal: &[u8]) -> Option<usize> {
    bytes[at..].starts_with(literal).then_some(at + literal.len())
}

#[cfg(test)]
mod tests {
    use super::{plain_text, strict_one_line};
    use crate::{Checked, check};

    /// What the full reading says a quick "yes" must mean.
    fn copied_by_the_full_reading(bytes: &[u8]) -> bool {
        check(bytes) == Checked::Strict && !bytes.iter().any(|&byte| byte == b'\n' || byte == b'\r')
    }

    /// Every text of up to `length` bytes over `alphabet`.
    fn every_text(alphabet: &[u8], length: usize, mut each: impl FnMut(&[u8])) {
        let mut text = Vec::new();
        for length in 0..=length {
            let mut digits = vec![0; length];
            loop {
                text.clear();
                text.extend(digits.iter().map(|&digit| alphabet[digit]));
                each(&text);
                let Some(last) = digits.iter().rposition(|&digit| digit + 1 < alphabet.len()) else { break };
                digits[last] += 1;
                digits[last + 1..].iter_mut().for_each(|digit| *digit = 0);
            }
        }
    }

    #[test]
    fn short_texts_get_the_full_readings_answer() {
        // Without exponents, escapes of code points, line breaks or non-ASCII bytes the
        // quick answer is exact; with them it is never a wrong "yes".
        let mut yes = 0;
        every_text(b"{}[]\",:01-. \tax\\", 5, |text| {
            let quick = strict_one_line(text);
            assert_eq!(quick, copied_by_the_full_reading(text), "{:?}", String::from_utf8_lossy(text));
            yes += usize::from(quick);
        });
        assert!(yes > 1000, "only {yes} texts were strict");
        every_text(b"{}[\"\\:1-.eE+u0\n\r\xc3\xa9\xff", 4, |text| {
            assert!(!strict_one_line(text) || copied_by_the_full_reading(text), "{:?}", String::from_utf8_lossy(text));
        });
    }

    #[test]
    fn changed_documents_never_get_a_wrong_yes() {
        let documents: [&[u8]; 4] = [
            br#"{"hex":"4ca7b4","lat":51.47,"lng":-0.45,"alt":10000,"dir":0.0,"speed":800,"dep_icao":"EGLL","status":"en-route","updated":1714521600}"#,
            b"[{\"a\": [1, -2.5e3, null, true, false], \"b\\\"c\": {\"d\": \"\\u00e9t\\u00E9 \\u2603\"}}, \"caf\xc3\xa9\", 0]",
            br#"{"long string, past a word or two": "abcdefghijklmnopqrstuvwxyz\t0123456789\\/", "n": 1E+2}"#,
            b"  [ [ [ { } ] ] , \"\" ]  ",
        ];
        let replacements = b"\"\\{}[],:0-.eE+u\n\r\t \x00\x1f\x7f\x80\xc3\xff";
        // A small deterministic generator, so a failure repeats.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let mut yes = 0;
        for document in documents {
            assert!(strict_one_line(document) && copied_by_the_full_reading(document), "{:?}", String::from_utf8_lossy(document));
            for _ in 0..20_000 {
                let mut changed = document.to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(changed.len());
                    match next(3) {
                        0 => changed[at] = replacements[next(replacements.len())],
                        1 => changed.insert(at, replacements[next(replacements.len())]),
                        _ => drop(changed.remove(at)),
                    }
                }
                let quick = strict_one_line(&changed);
                assert!(!quick || copied_by_the_full_reading(&changed), "{:?}", String::from_utf8_lossy(&changed));
                yes += usize::from(quick);
            }
        }
        assert!(yes > 1000, "only {yes} changed documents were strict");
    }

    #[test]
    fn limits_are_left_to_the_full_reading() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(strict_one_line(nested(126).as_bytes()));
        assert!(!strict_one_line(nested(127).as_bytes()));
        let objects = |depth: usize| format!("{}{{}}{}", r#"{"a":"#.repeat(depth - 1), "}".repeat(depth - 1));
        assert!(strict_one_line(objects(126).as_bytes()) && !strict_one_line(objects(127).as_bytes()));
        let digits = |count: usize| format!("-{}", "9".repeat(count));
        assert!(strict_one_line(digits(300).as_bytes()) && !strict_one_line(digits(301).as_bytes()));
        for certain in ["1e250", "-0.5E-250", "12345678901234567890e+9", "\"\\u0000\\uFFFF\"", "\"\u{7f}é\""] {
            assert!(strict_one_line(certain.as_bytes()) && copied_by_the_full_reading(certain.as_bytes()), "{certain}");
        }
        for uncertain in ["1e251", "123456789012345678901e1", "1e99999999999", "\"\\ud83d\\ude00\"", "{\n}", "1\r"] {
            assert!(!strict_one_line(uncertain.as_bytes()), "{uncertain:?}");
        }
        for refused in [&b"1e400"[..], b"\"\\ud800\"", b"\"\xff\"", b"01", b"1.", b".5", b"-", b"[1,]", b"{\"a\"}", b"tru", b"nul", b"\"a"]
        {
            assert!(!strict_one_line(refused), "{:?}", String::from_utf8_lossy(refused));
        }
    }

    #[test]
    fn plain_text_is_what_needs_no_escaping() {
        for plain in ["", "flights", "a key longer than eight bytes", "café ☕", "\u{7f}~/"] {
            assert!(plain_text(plain.as_bytes()), "{plain:?}");
            assert_eq!(serde_json::to_string(plain).unwrap(), format!("\"{plain}\""));
        }
        // Each special byte at every place in a word and past it.
        for special in [b'"', b'\\', b'\n', b'\x00', b'\x1f'] {
            for at in 0..20 {
                let mut text = vec![b'k'; 20];
                text[at] = special;
                assert!(!plain_text(&text), "{text:?}");
            }
        }
        assert!(!plain_text(b"broken \xff utf-8"));
    }
}
