//! A bounds-checked XDR reader over one received record. Lengths sent by the
//! client are checked against both a protocol maximum and the bytes actually
//! present before anything is allocated or copied.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        XdrReader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes(bytes.try_into().unwrap()))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(bytes.try_into().unwrap()))
    }

    /// A variable-length opaque of at most `max` bytes, padding skipped.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], Truncated> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(Truncated);
        }
        let data = self.take(len)?;
        self.take((4 - len % 4) % 4)?;
        Ok(data)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(n).ok_or(Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Truncated)?;
        self.pos = end;
        Ok(bytes)
    }
}
