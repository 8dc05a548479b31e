//! The proxy-wasm "pairs" encoding, in which Envoy returns maps (header maps, and protobuf
//! `Struct`s such as the node's `LABELS` metadata read with `get_property`):
//! `u32 count`, then `count x (u32 key_len, u32 value_len)`, then each `key \0 value \0`,
//! all integers little-endian (`envoy: source/extensions/common/wasm/context.cc`).
//!
//! The SDK's decoder is private and panics on malformed input; this one is total: anything
//! that does not parse exactly yields `None`.

/// Decodes a pairs blob into borrowed (key, value) byte slices.
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let header_end = count.checked_mul(8)?.checked_add(4)?;
    if header_end > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut p = header_end;
    for i in 0..count {
        let key_len = read_u32(bytes, 4 + i * 8)? as usize;
        let val_len = read_u32(bytes, 8 + i * 8)? as usize;
        let key = bytes.get(p..p.checked_add(key_len)?)?;
        p = p.checked_add(key_len)?;
        if bytes.get(p) != Some(&0) {
            return None;
        }
        p += 1;
        let val = bytes.get(p..p.checked_add(val_len)?)?;
        p = p.checked_add(val_len)?;
        if bytes.get(p) != Some(&0) {
            return None;
        }
        p += 1;
        out.push((key, val));
    }
    Some(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Encodes pairs (for tests and the native harness).
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b"app.kubernetes.io/name", b"batman-app"),
            (b"version", b""),
        ];
        let blob = encode(&pairs);
        assert_eq!(decode(&blob).unwrap(), pairs);
        assert_eq!(decode(&[]).unwrap(), Vec::<(&[u8], &[u8])>::new());
        assert_eq!(decode(&[0, 0, 0, 0]).unwrap(), Vec::<(&[u8], &[u8])>::new());
    }

    #[test]
    fn malformed_is_none_not_a_panic() {
        let blob = encode(&[(b"k", b"v")]);
        for cut in 0..blob.len() {
            assert!(decode(&blob[..cut]).is_none() || cut == 0, "cut {cut}");
        }
        assert!(decode(&[255, 255, 255, 255]).is_none());
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() = b'x';
        assert!(decode(&bad).is_none());
        let mut huge = blob.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
    }
}
