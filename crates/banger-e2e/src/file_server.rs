//! A minimal HTTP server on 127.0.0.1 that serves fixed files, for catalog `bundle`
//! entries in tests (the daemon downloads bundles with curl). It answers `GET /<name>`
//! with the bytes registered under that name and 404 otherwise, one connection at a
//! time, and stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A running file server.
#[derive(Debug)]
pub struct FileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `files` (name without leading slash -> bytes) on an ephemeral port.
    pub fn start(files: Vec<(String, Vec<u8>)>) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let files: HashMap<String, Vec<u8>> = files.into_iter().collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &files);
                }
            }
        });
        Ok(FileServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, files: &HashMap<String, Vec<u8>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Headers are read and ignored; the request ends at the empty line.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default().trim_start_matches('/');
    let mut stream = stream;
    match files.get(path) {
        Some(body) if method == "GET" || method == "HEAD" => {
            write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method == "GET" {
                stream.write_all(body)?;
            }
        }
        _ => {
            stream.write_all(
                b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(server: &FileServer, path: &str) -> String {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        write!(stream, "GET /{path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn serves_registered_files_and_404s_the_rest() {
        let server = FileServer::start(vec![("a.ext4".into(), b"hello".to_vec())]).unwrap();
        let found = get(&server, "a.ext4");
        assert!(found.starts_with("HTTP/1.0 200 OK"), "{found}");
        assert!(found.ends_with("\r\n\r\nhello"), "{found}");
        assert!(found.contains("Content-Length: 5"), "{found}");
        let missing = get(&server, "b.ext4");
        assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
        assert!(server.url("a.ext4").starts_with("http://127.0.0.1:"));
    }
}
