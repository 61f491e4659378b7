//! The input stream of one request: chunks the connection received as input frames,
//! read by the handler as an `AsyncRead` (a guest command's stdin, a tar stream for
//! `vm cp`). The channel is bounded, so a handler that reads slowly makes the connection
//! stop reading the socket, and the client's writes wait: back-pressure end to end.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Chunks in flight between the connection and the handler.
pub const INPUT_QUEUE_CHUNKS: usize = 8;

/// One step of a request's input.
#[derive(Debug)]
pub enum InputChunk {
    Data(Vec<u8>),
    Eof,
}

/// The reading end a handler gets.
#[derive(Debug)]
pub struct RequestInput {
    chunks: Option<mpsc::Receiver<InputChunk>>,
    current: Vec<u8>,
    offset: usize,
    finished: bool,
}

impl RequestInput {
    /// A channel: the sender for the connection, the reader for the handler.
    pub fn channel() -> (mpsc::Sender<InputChunk>, RequestInput) {
        let (sender, receiver) = mpsc::channel(INPUT_QUEUE_CHUNKS);
        (
            sender,
            RequestInput {
                chunks: Some(receiver),
                current: Vec::new(),
                offset: 0,
                finished: false,
            },
        )
    }

    /// Input that ends at once.
    pub fn empty() -> RequestInput {
        RequestInput {
            chunks: None,
            current: Vec::new(),
            offset: 0,
            finished: true,
        }
    }
}

impl AsyncRead for RequestInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if self.offset < self.current.len() {
                let take = buf.remaining().min(self.current.len() - self.offset);
                let start = self.offset;
                buf.put_slice(&self.current[start..start + take]);
                self.offset += take;
                return Poll::Ready(Ok(()));
            }
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            let Some(chunks) = self.chunks.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match chunks.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                // A closed channel (the client left) ends the input like its EOF frame.
                Poll::Ready(None | Some(InputChunk::Eof)) => {
                    self.finished = true;
                    self.chunks = None;
                }
                Poll::Ready(Some(InputChunk::Data(data))) => {
                    self.current = data;
                    self.offset = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[tokio::test]
    async fn chunks_read_back_in_order_and_end_at_eof() {
        let (sender, mut input) = RequestInput::channel();
        let writer = tokio::spawn(async move {
            for chunk in [&b"ab"[..], b"", b"cde"] {
                sender.send(InputChunk::Data(chunk.to_vec())).await.unwrap();
            }
            sender.send(InputChunk::Eof).await.unwrap();
            // Anything after the end is not read.
            let _ = sender.send(InputChunk::Data(b"late".to_vec())).await;
        });
        let mut all = Vec::new();
        input.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcde");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_sender_ends_the_input() {
        let (sender, mut input) = RequestInput::channel();
        sender.send(InputChunk::Data(b"x".to_vec())).await.unwrap();
        drop(sender);
        let mut all = Vec::new();
        input.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"x");
        let mut empty = Vec::new();
        RequestInput::empty().read_to_end(&mut empty).await.unwrap();
        assert!(empty.is_empty());
    }
}
