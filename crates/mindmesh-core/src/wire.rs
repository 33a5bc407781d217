//! Postcard encoding with a version tag and a size bound, for everything that crosses a
//! process boundary or is stored: a reader sees at once whether it can decode the bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CoreError, Result};

/// Encode `value` behind a one-byte version tag.
pub fn encode<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![version];
    postcard::to_io(value, &mut out).map_err(|e| CoreError::Wire(format!("encode: {e}")))?;
    Ok(out)
}

/// Decode bytes made by [`encode`], refusing other versions, oversized input and garbage.
pub fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8], max_len: usize) -> Result<T> {
    if bytes.len() > max_len {
        return Err(CoreError::Wire(format!("{} bytes exceeds the {max_len}-byte limit", bytes.len())));
    }
    let (&tag, body) = bytes.split_first().ok_or_else(|| CoreError::Wire("empty message".into()))?;
    if tag != version {
        return Err(CoreError::Wire(format!("version {tag}, expected {version}")));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| CoreError::Wire(format!("decode: {e}")))?;
    if !rest.is_empty() {
        return Err(CoreError::Wire(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::PersonaSample;

    #[test]
    fn roundtrip_and_rejections() {
        let s = PersonaSample { ts_ms: 7, rss_bytes: 1 << 30, ..Default::default() };
        let b = encode(3, &s).unwrap();
        assert_eq!(decode::<PersonaSample>(3, &b, 1024).unwrap(), s);
        assert!(decode::<PersonaSample>(4, &b, 1024).is_err());
        assert!(decode::<PersonaSample>(3, &b, 2).is_err());
        assert!(decode::<PersonaSample>(3, &[3, 0xff, 0xff, 0xff], 1024).is_err());
        assert!(decode::<PersonaSample>(3, &[], 1024).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(decode::<PersonaSample>(3, &long, 1024).is_err());
    }
}
