//! A TCP proxy on a free loopback port in front of one server, which a
//! test can cut (every connection dropped, new ones refused) or freeze
//! (connections stay open and carry nothing: a half-open link), and
//! restore.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
const CUT: u8 = 1;
const FROZEN: u8 = 2;

/// The proxy; it stops when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        assert!(target.ip().is_loopback(), "tests only reach loopback");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(PASS));
        let (cuts, _) = watch::channel(0u64);
        let (task_mode, task_cuts) = (mode.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if task_mode.load(Ordering::SeqCst) == CUT {
                    drop(client);
                    continue;
                }
                let (mode, mut cut) = (task_mode.clone(), task_cuts.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pipe(client_read, server_write, &mode) => {}
                        _ = pipe(server_read, client_write, &mode) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, mode, cuts, task }
    }

    /// [`start`](Self::start) in front of `127.0.0.1:port`.
    pub async fn to_loopback_port(port: u16) -> Self {
        Self::start(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://` URL of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Drops every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Keeps every connection open but carries nothing (bytes are held).
    pub fn freeze(&self) {
        self.mode.store(FROZEN, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.mode.store(PASS, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Copies `from` to `to`, holding the bytes while frozen.
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, mode: &AtomicU8) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        while mode.load(Ordering::SeqCst) == FROZEN {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
