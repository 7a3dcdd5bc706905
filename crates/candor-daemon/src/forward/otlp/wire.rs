//! Protobuf's wire format, the three kinds of field OTLP's logs use: varints, 64-bit fixed
//! and length-delimited (strings, bytes, nested messages).

/// A base-128 varint, least significant group first.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Wire type 0. A zero is written too (proto3 would leave it out; readers take both).
pub fn put_varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_key(buf, field, 0);
    put_varint(buf, v);
}

/// Wire type 1, little-endian.
pub fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_key(buf, field, 1);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Wire type 2: the length, then the bytes.
pub fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_written_as_protobuf_writes_them() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 0);
        put_varint(&mut buf, 1);
        put_varint(&mut buf, 300);
        put_varint(&mut buf, u64::MAX);
        assert_eq!(
            buf,
            [0, 1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        buf.clear();
        put_varint_field(&mut buf, 2, 9);
        put_fixed64(&mut buf, 11, 0x0102);
        put_bytes(&mut buf, 1, b"ab");
        assert_eq!(
            buf,
            [0x10, 9, 0x59, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0x0a, 2, b'a', b'b']
        );
    }
}
