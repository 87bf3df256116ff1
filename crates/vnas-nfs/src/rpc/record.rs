//! RPC record marking over a byte stream (RFC 5531 section 11): a record is
//! one or more fragments, each behind a 4-byte header whose top bit marks
//! the last fragment.
//!
//! Framing is kept apart from handling: bytes are read into a buffer, and a
//! record is taken out only once it is complete ("incomplete" is not an
//! error). Reading is cancel-safe, so the connection can wait for the next
//! record and for finished calls at the same time.

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;

const LAST_FRAGMENT: u32 = 0x8000_0000;
const HEADER: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record of {0} bytes or more exceeds the limit")]
    TooLarge(usize),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

pub struct RecordReader {
    buf: BytesMut,
    max: usize,
}

impl RecordReader {
    /// Records of more than `max` bytes are refused as soon as a fragment
    /// header shows they would be, before their bytes are read.
    pub fn new(max: usize) -> Self {
        // Small to start: idle connections (there may be many) cost little;
        // a large record reserves what it needs once its header arrives.
        RecordReader { buf: BytesMut::with_capacity(4 * 1024), max }
    }

    /// Reads what the socket has without waiting. `Ok(false)`: the peer
    /// closed the connection between records.
    pub fn fill_from(&mut self, stream: &TcpStream) -> std::io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(16 * 1024);
        }
        match stream.try_read_buf(&mut self.buf) {
            Ok(0) if self.buf.is_empty() => Ok(false),
            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Like `fill_from`, but asks the kernel directly rather than trusting
    /// the runtime's idea of readiness (which only an epoll event renews),
    /// for a connection that polls its socket while it waits for the next
    /// call. `Ok(None)`: nothing there yet.
    pub fn fill_now(&mut self, stream: &TcpStream) -> std::io::Result<Option<bool>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(16 * 1024);
        }
        let spare = self.buf.spare_capacity_mut();
        let received = rustix::net::recv(stream, spare, rustix::net::RecvFlags::DONTWAIT).map(|(_, n)| n);
        match received {
            Ok(0) if self.buf.is_empty() => Ok(Some(false)),
            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(filled) => {
                // SAFETY: the kernel initialised `filled` bytes of the spare
                // capacity (no TRUNC flag: never more than it holds).
                unsafe { self.buf.set_len(self.buf.len() + filled) };
                Ok(Some(true))
            }
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    #[cfg(test)]
    pub fn push_for_fuzzing(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    #[cfg(test)]
    fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes a complete record from the front of the buffer, if there is
    /// one; otherwise makes room for the rest of the one being received.
    pub fn take(&mut self) -> Result<Option<Bytes>, RecordError> {
        let (mut at, mut total, mut n_fragments) = (0usize, 0usize, 0usize);
        loop {
            let Some(header) = self.buf.get(at..at + HEADER) else {
                self.buf.reserve(HEADER);
                return Ok(None);
            };
            let header = u32::from_be_bytes(header.try_into().unwrap());
            let len = (header & !LAST_FRAGMENT) as usize;
            total += len;
            if total > self.max {
                return Err(RecordError::TooLarge(total));
            }
            let end = at + HEADER + len;
            if self.buf.len() < end {
                self.buf.reserve(end - self.buf.len());
                return Ok(None);
            }
            at = end;
            n_fragments += 1;
            if header & LAST_FRAGMENT != 0 {
                break;
            }
        }
        let mut frames = self.buf.split_to(at);
        if n_fragments == 1 {
            frames.advance(HEADER);
            return Ok(Some(frames.freeze()));
        }
        let mut record = BytesMut::with_capacity(total);
        while !frames.is_empty() {
            let len = (frames.get_u32() & !LAST_FRAGMENT) as usize;
            record.extend_from_slice(&frames[..len]);
            frames.advance(len);
        }
        Ok(Some(record.freeze()))
    }
}

/// Prefixes `reply`'s first four bytes (reserved by the builder) with the
/// single-fragment record mark for a record of `len` bytes.
pub fn mark_record(reply: &mut [u8], len: usize) {
    reply[..4].copy_from_slice(&(len as u32 | LAST_FRAGMENT).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(data: &[u8], last: bool) -> Vec<u8> {
        let mut header = data.len() as u32;
        if last {
            header |= LAST_FRAGMENT;
        }
        let mut out = header.to_be_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn joins_fragments_and_waits_for_the_rest() {
        let mut stream = frag(b"abcd", false);
        stream.extend(frag(b"efgh", true));
        stream.extend(frag(b"ij", true));
        let mut reader = RecordReader::new(100);
        reader.extend(&stream[..7]);
        assert!(reader.take().unwrap().is_none(), "incomplete is not an error");
        reader.extend(&stream[7..]);
        assert_eq!(&reader.take().unwrap().unwrap()[..], b"abcdefgh");
        assert_eq!(&reader.take().unwrap().unwrap()[..], b"ij");
        assert!(reader.take().unwrap().is_none());
    }

    #[test]
    fn refuses_oversized_before_reading_it() {
        let mut reader = RecordReader::new(1024);
        reader.extend(&(0x7fff_ffffu32 | LAST_FRAGMENT).to_be_bytes());
        assert!(matches!(reader.take(), Err(RecordError::TooLarge(_))));
        assert!(reader.buf.capacity() < 1 << 20, "nothing sized from the client's length");
    }

    #[test]
    fn refuses_many_fragments_adding_up() {
        let mut reader = RecordReader::new(1024);
        for _ in 0..5 {
            reader.extend(&frag(&[0; 300], false));
        }
        assert!(matches!(reader.take(), Err(RecordError::TooLarge(_))));
    }
}
