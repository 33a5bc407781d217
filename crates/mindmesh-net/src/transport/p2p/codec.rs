//! Request/response framing: a 4-byte big-endian length, then that many bytes. The payload is
//! already a versioned postcard message (see [`crate::rpc`]); the codec only bounds it.
//! A frame above the limit is refused before any of it is buffered, and a frame is read as
//! its bytes arrive, so a lying length prefix costs nothing.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/mindmesh/rpc/1");

#[derive(Debug, Clone)]
pub struct FrameCodec {
    pub max_frame_bytes: usize,
}

pub(crate) async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {max}")));
    }
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    io.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "frame cut short"));
    }
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8], max: usize) -> io::Result<()> {
    if data.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {max}", data.len()),
        ));
    }
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_frame_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_frame_bytes).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_frame_bytes).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_frame_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frames_roundtrip_and_oversize_is_refused_unread() {
        let mut buf = Cursor::new(Vec::new());
        write_frame(&mut buf, b"hello", 16).await.unwrap();
        buf.set_position(0);
        assert_eq!(read_frame(&mut buf, 16).await.unwrap(), b"hello");
        assert!(write_frame(&mut Cursor::new(Vec::new()), &[0; 17], 16).await.is_err());

        // a prefix claiming 4 GiB is refused without reading on
        let mut lying = Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(read_frame(&mut lying, 1024).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // a frame shorter than its prefix is an error, not a short read
        let mut short = Cursor::new(vec![0, 0, 0, 9, 1, 2, 3]);
        assert!(read_frame(&mut short, 1024).await.is_err());
    }
}
