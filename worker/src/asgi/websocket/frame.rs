//! RFC 6455 §5.2 frame heads, read from a client and written by the server: the
//! bytes before a frame's payload, checked as a server must check them (masked,
//! no reserved bits or opcodes, control frames final and at most 125 bytes, a
//! 64-bit length with its top bit clear), and the payload's unmasking.

/// The opcodes of RFC 6455 §5.2 (the others are reserved).
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// The longest head: 2 bytes, a 64-bit length, a 4-byte mask.
pub(crate) const MAX_HEAD: usize = 14;

/// The most bytes a control frame's payload may hold (§5.5).
pub(crate) const MAX_CONTROL: u64 = 125;

/// A client frame's head, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: [u8; 4],
    pub(crate) len: u64,
}

impl Head {
    pub(crate) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Why a head is refused: each fails the connection with close code 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("a reserved bit is set (no extension was negotiated)")]
    Reserved,
    #[error("reserved opcode {0:#x}")]
    Opcode(u8),
    #[error("an unmasked client frame")]
    Unmasked,
    #[error("a fragmented control frame")]
    FragmentedControl,
    #[error("a control frame longer than 125 bytes")]
    LongControl,
    #[error("a 64-bit length with its top bit set")]
    Length,
}

/// Reads a head at the start of `buf`: `Ok(None)` until it is whole, else the head
/// and how many bytes it took. Lengths are taken in any encoding, minimal or not
/// (as tungstenite and browsers' peers do): a longer spelling is unambiguous.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(HeadError::Reserved);
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(HeadError::Opcode(opcode));
    }
    if b1 & 0x80 == 0 {
        return Err(HeadError::Unmasked);
    }
    let (len, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap()), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(HeadError::Length);
    }
    let head = Head {
        fin,
        opcode,
        mask: [0; 4],
        len,
    };
    if head.is_control() && !fin {
        return Err(HeadError::FragmentedControl);
    }
    if head.is_control() && len > MAX_CONTROL {
        return Err(HeadError::LongControl);
    }
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = mask.try_into().unwrap();
    Ok(Some((Head { mask, ..head }, at + 4)))
}

/// Unmasks `data` in place, `offset` being how many payload bytes came before it.
pub(crate) fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    let key: [u8; 4] = std::array::from_fn(|i| mask[(i + shift) % 4]);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap()) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Appends a final, unmasked server frame (`opcode`, `payload`) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.reserve(10 + payload.len());
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
/// A masked client frame as a client library would write it.
pub(crate) fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_the_three_length_forms_parse() {
        let m = [1, 2, 3, 4];
        for n in [0usize, 125, 126, 0xFFFF, 0x10000] {
            let f = client_frame(0x82, &vec![7; n], m);
            let (h, at) = parse_head(&f).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.mask, h.len),
                (true, BINARY, m, n as u64)
            );
            assert_eq!(f.len() - at, n);
            // Every strict prefix of the head is incomplete, not an error.
            for cut in 0..at {
                assert_eq!(parse_head(&f[..cut]), Ok(None), "n={n} cut={cut}");
            }
        }
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_is_refused() {
        let mut f = vec![0x82, 0xFF];
        f.extend_from_slice(&(1u64 << 63).to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        assert_eq!(parse_head(&f), Err(HeadError::Length));
        // The largest legal one is taken (the session's size limit refuses it).
        f[2] = 0x7F;
        assert_eq!(parse_head(&f).unwrap().unwrap().0.len, 0x7F << 56);
    }

    #[test]
    fn a_non_minimal_length_is_read_for_what_it_says() {
        let mut f = vec![0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0];
        f.extend_from_slice(b"hello");
        assert_eq!(parse_head(&f).unwrap().unwrap().0.len, 5);
    }

    #[test]
    fn reserved_bits_opcodes_and_unmasked_frames_are_refused() {
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(parse_head(&[0x81 | rsv, 0x80]), Err(HeadError::Reserved));
        }
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(parse_head(&[0x80 | op, 0x80]), Err(HeadError::Opcode(op)));
        }
        assert_eq!(parse_head(&[0x81, 0x05]), Err(HeadError::Unmasked));
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        assert_eq!(parse_head(&[0x09, 0x80]), Err(HeadError::FragmentedControl));
        assert_eq!(
            parse_head(&[0x88, 0x80 | 126, 0, 126]),
            Err(HeadError::LongControl)
        );
        assert_eq!(parse_head(&[0x8A, 0x80 | 126, 0, 125]).unwrap(), None);
        assert!(parse_head(&client_frame(0x89, &[0; 125], [9; 4]))
            .unwrap()
            .is_some());
    }

    #[test]
    fn unmasking_in_pieces_at_any_offset_matches_unmasking_at_once() {
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let plain: Vec<u8> = (0..100u8).collect();
        let masked: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        for cut in [0, 1, 2, 3, 5, 17, 64, 99] {
            let mut data = masked.clone();
            let (a, b) = data.split_at_mut(cut);
            unmask(a, mask, 0);
            unmask(b, mask, cut as u64);
            assert_eq!(data, plain, "cut={cut}");
        }
    }

    #[test]
    fn server_frames_are_final_unmasked_and_minimally_sized() {
        for (n, head_len) in [(0usize, 2), (125, 2), (126, 4), (0xFFFF, 4), (0x10000, 10)] {
            let mut out = Vec::new();
            encode(&mut out, TEXT, &vec![b'a'; n]);
            assert_eq!(out.len(), head_len + n);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "a server frame is never masked");
        }
    }
}
