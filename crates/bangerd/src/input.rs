//! The input stream of one request: chunks the connection received as input frames,
//! read by the handler as an `AsyncRead` (a guest command's stdin, a tar stream for
//! `vm cp`). The channel is bounded, so a handler that reads slowly makes the connection
//! stop reading the socket, and the client's writes wait: back-pressure end to end.

use std::pin::Pin;
use std::task::{Context, Poll};

use banger_api::methods::TerminalSize;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, watch};

/// Chunks in flight between the connection and the handler.
pub const INPUT_QUEUE_CHUNKS: usize = 8;

/// One step of a request's input.
#[derive(Debug)]
pub enum InputChunk {
    Data(Vec<u8>),
    Eof,
    /// A terminal's new size (`vm.exec` with `tty`); not part of the byte stream.
    Resize(TerminalSize),
}

/// The reading end a handler gets.
#[derive(Debug)]
pub struct RequestInput {
    chunks: Option<mpsc::Receiver<InputChunk>>,
    current: Vec<u8>,
    offset: usize,
    finished: bool,
    /// Where resize chunks go as they are read past, for [`RequestInput::window_sizes`].
    sizes: Option<watch::Sender<TerminalSize>>,
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
                sizes: None,
            },
        )
    }

    /// The terminal sizes the client sends while the input is read, starting at
    /// `initial`. Sizes are seen as the reader passes them in the stream, so they keep
    /// their order with the bytes around them.
    pub fn window_sizes(&mut self, initial: TerminalSize) -> watch::Receiver<TerminalSize> {
        let (sender, receiver) = watch::channel(initial);
        self.sizes = Some(sender);
        receiver
    }

    /// Input that ends at once.
    pub fn empty() -> RequestInput {
        RequestInput {
            chunks: None,
            current: Vec::new(),
            offset: 0,
            finished: true,
            sizes: None,
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
                Poll::Ready(Some(InputChunk::Resize(size))) => {
                    if let Some(sizes) = &self.sizes {
                        sizes.send_replace(size);
                    }
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
    async fn resizes_are_taken_out_of_the_stream_in_order() {
        let (sender, mut input) = RequestInput::channel();
        let mut sizes = input.window_sizes(TerminalSize { rows: 24, cols: 80 });
        let size = TerminalSize {
            rows: 50,
            cols: 132,
        };
        sender.send(InputChunk::Data(b"a".to_vec())).await.unwrap();
        sender.send(InputChunk::Resize(size)).await.unwrap();
        sender.send(InputChunk::Data(b"b".to_vec())).await.unwrap();
        sender.send(InputChunk::Eof).await.unwrap();
        assert_eq!(
            *sizes.borrow_and_update(),
            TerminalSize { rows: 24, cols: 80 }
        );
        let mut all = Vec::new();
        input.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"ab");
        assert!(sizes.has_changed().unwrap());
        assert_eq!(*sizes.borrow_and_update(), size);
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
