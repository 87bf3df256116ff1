//! RPC record marking over a byte stream (RFC 5531 section 11): a record is
//! one or more fragments, each behind a 4-byte header whose top bit marks
//! the last fragment.

use tokio::io::{AsyncRead, AsyncReadExt};

const LAST_FRAGMENT: u32 = 0x8000_0000;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record of {0} bytes or more exceeds the limit")]
    TooLarge(usize),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one whole record of at most `max` bytes. `Ok(None)` means the peer
/// closed the connection cleanly between records.
pub async fn read_record<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, RecordError> {
    let mut record = Vec::new();
    loop {
        let mut header = [0u8; 4];
        let first = reader.read(&mut header[..1]).await?;
        if first == 0 {
            if record.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        reader.read_exact(&mut header[1..]).await?;
        let header = u32::from_be_bytes(header);
        let len = (header & !LAST_FRAGMENT) as usize;
        let total = record.len() + len;
        if total > max {
            return Err(RecordError::TooLarge(total));
        }
        let start = record.len();
        record.resize(total, 0);
        reader.read_exact(&mut record[start..]).await?;
        if header & LAST_FRAGMENT != 0 {
            return Ok(Some(record));
        }
    }
}

/// Prefixes `reply`'s first four bytes (reserved by the builder) with the
/// single-fragment record mark.
pub fn mark_record(reply: &mut [u8]) {
    let len = (reply.len() - 4) as u32;
    reply[..4].copy_from_slice(&(len | LAST_FRAGMENT).to_be_bytes());
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

    #[tokio::test]
    async fn joins_fragments() {
        let mut stream = frag(b"abcd", false);
        stream.extend(frag(b"efgh", true));
        let mut reader = &stream[..];
        let record = read_record(&mut reader, 100).await.unwrap().unwrap();
        assert_eq!(record, b"abcdefgh");
        assert!(read_record(&mut reader, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_oversized_before_reading_it() {
        let stream = (0x7fff_ffffu32 | LAST_FRAGMENT).to_be_bytes();
        let mut reader = &stream[..];
        assert!(matches!(
            read_record(&mut reader, 1024).await,
            Err(RecordError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn truncated_fragment_is_an_error() {
        let mut stream = frag(b"abcdefgh", true);
        stream.truncate(6);
        let mut reader = &stream[..];
        assert!(matches!(
            read_record(&mut reader, 100).await,
            Err(RecordError::Io(_))
        ));
    }
}
