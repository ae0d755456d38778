//! A whole header map as proxy-wasm hands it over (`proxy_get_header_map_pairs`): a u32 count,
//! then a (name length, value length) u32 pair per header, then each name and value followed by
//! a NUL, all little-endian. One such read costs Envoy one call back into the VM to allocate
//! the copy, where reading headers one by one costs one per header (~10 k instructions each),
//! so the glue reads a map once per callback and looks headers up here.
//!
//! The bytes are untrusted in the sense that nothing here may panic on them: a malformed buffer
//! is `None` (the glue then reads headers one by one), and names are bytes, not UTF-8.

/// The pairs in `bytes`, borrowed; `None` if the buffer is not well formed.
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    // Each string, and the NUL that ends it.
    let mut string = |len: usize| -> Option<&[u8]> {
        let end = data.checked_add(len)?;
        let s = bytes.get(data..end)?;
        (bytes.get(end) == Some(&0)).then_some(())?;
        data = end.checked_add(1)?;
        Some(s)
    };
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let sizes = 4 + i * 8;
        let (name_len, value_len) = (u32_at(sizes)?, u32_at(sizes + 4)?);
        let name = string(name_len)?;
        let value = string(value_len)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// The first value of header `name` (as Envoy's single-header read answers).
pub fn first<'a>(pairs: &[(&'a [u8], &'a [u8])], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Envoy writes for `pairs`.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend(*n);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn round_trips_and_finds_the_first_value() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"503"),
            (b"x-app-error-code", b"CM503001"),
            (b"set-cookie", b"a"),
            (b"set-cookie", b"b"),
            (b"empty", b""),
            (b"\xff\xfename", b"\x00\x01 binary"),
        ];
        let bytes = serialize(&pairs);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed, pairs);
        assert_eq!(first(&parsed, "set-cookie"), Some(&b"a"[..]));
        assert_eq!(first(&parsed, "empty"), Some(&b""[..]));
        assert_eq!(first(&parsed, "missing"), None);
        assert_eq!(parse(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_buffers_are_none_never_a_panic() {
        let good = serialize(&[(b"a", b"b"), (b"cc", b"dd")]);
        for cut in 0..good.len() {
            assert_eq!(parse(&good[..cut]).is_some(), cut == 0, "cut at {cut}");
        }
        // Counts and lengths that point past the end, or overflow on 32-bit targets.
        assert!(parse(&u32::MAX.to_le_bytes()).is_none());
        let mut huge = 1u32.to_le_bytes().to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        huge.extend(u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_none());
        let mut lie = 1u32.to_le_bytes().to_vec();
        lie.extend(5u32.to_le_bytes());
        lie.extend(0u32.to_le_bytes());
        lie.extend(b"ab\0\0");
        assert!(parse(&lie).is_none());
    }
}
