//! Percent-encoding, written once: the SDK encodes query components with it, and the
//! host registers each secret in the forms it produces, so a secret a plugin puts in a
//! URL is recognised in a log line however it was encoded.

/// What a plugin's query component keeps unescaped beside the unreserved characters:
/// `,` separates list values (`bbox=1,2,3,4`) and providers expect it plain.
pub const QUERY_KEPT: &[u8] = b",";

/// `text` with every byte but ASCII letters, digits, RFC 3986's unreserved `-._~` and
/// `also_kept` written as `%XX` (upper-case hex).
pub fn percent_encode(text: &str, also_kept: &[u8]) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || also_kept.contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push('%');
            encoded.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
            encoded.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 15)]));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_and_kept_bytes_stay() {
        assert_eq!(percent_encode("k y,é/~", b""), "k%20y%2C%C3%A9%2F~");
        assert_eq!(percent_encode("k y,é/~", QUERY_KEPT), "k%20y,%C3%A9%2F~");
    }
}
