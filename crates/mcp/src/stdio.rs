//! `blackbox mcp wrap`: the gateway in place of an MCP server started over stdio. It starts the
//! real server as its child and carries newline-delimited messages both ways, in order: a
//! message from the client is decided (a `tools/call`) and recorded before the next one is read,
//! so a `notifications/cancelled` never overtakes the call it cancels.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::message::{Kind, parse};
use crate::session::{Session, Verdict};

/// How long the server gets to exit after its input is closed before it is killed (the MCP
/// Python client kills the gateway's process group 2 s after closing its input).
const GRACE: Duration = Duration::from_millis(1200);

/// Lines the client gets, in one order: the server's and the gateway's own answers.
type Out = mpsc::Sender<Vec<u8>>;

/// The client's side of the connection, as [`client_streams`] opens it.
pub type ClientIn = Box<dyn AsyncRead + Unpin + Send>;
/// See [`ClientIn`].
pub type ClientOut = Box<dyn AsyncWrite + Unpin + Send>;

/// The client's side of the connection. When stdin and stdout are pipes (what an MCP client
/// gives the server it starts), they are read and written without blocking on the gateway's
/// own thread: tokio's `stdin()`/`stdout()` would hand every read and write to a thread of its
/// blocking pool, a wake-up of another thread each way per message (about a tenth of a
/// millisecond of a call's added latency here). Anything else (a terminal, a file) is read and
/// written as tokio does. The returned guard puts the pipes back in blocking mode when dropped
/// (the mode belongs to the pipe, which another process may hold too): drop it once the
/// runtime is shut down, when nothing reads or writes them any more.
///
/// Must be called within a tokio runtime.
#[must_use]
pub fn client_streams() -> (ClientIn, ClientOut, Blocking) {
    use std::os::fd::AsFd as _;
    let mut restore = Blocking(Vec::new());
    let input: ClientIn = match nonblocking_pipe(std::io::stdin().as_fd(), &mut restore)
        .and_then(|f| tokio::net::unix::pipe::Receiver::from_file(f).ok())
    {
        Some(r) => Box::new(r),
        None => Box::new(tokio::io::stdin()),
    };
    let output: ClientOut = match nonblocking_pipe(std::io::stdout().as_fd(), &mut restore)
        .and_then(|f| tokio::net::unix::pipe::Sender::from_file(f).ok())
    {
        Some(w) => Box::new(w),
        None => Box::new(tokio::io::stdout()),
    };
    (input, output, restore)
}

/// A duplicate of `fd` when it is a pipe (tokio then makes it non-blocking), noting in
/// `restore` that it was blocking before.
fn nonblocking_pipe(
    fd: std::os::fd::BorrowedFd<'_>,
    restore: &mut Blocking,
) -> Option<std::fs::File> {
    use std::os::unix::fs::FileTypeExt as _;
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    if !file.metadata().ok()?.file_type().is_fifo() {
        return None;
    }
    let flags = rustix::fs::fcntl_getfl(&file).ok()?;
    if !flags.contains(rustix::fs::OFlags::NONBLOCK) {
        restore.0.push(file.try_clone().ok()?);
    }
    Some(file)
}

/// Pipes to put back in blocking mode when dropped.
#[derive(Debug)]
pub struct Blocking(Vec<std::fs::File>);

impl Drop for Blocking {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = rustix::io::ioctl_fionbio(f, false);
        }
    }
}

async fn write_lines(mut out: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(mut line) = rx.recv().await {
        line.push(b'\n');
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

fn answer_line(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Reads one line (without its `\n`); `None` at the end of the input.
async fn next_line(
    r: &mut (impl tokio::io::AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<()> {
    buf.clear();
    match r.read_until(b'\n', buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            Some(())
        }
    }
}

/// Messages from the client decided at once at most: their decisions are asked concurrently,
/// and they are forwarded in the order they came, each once its own decision is in.
const IN_FLIGHT: usize = 64;

/// The messages of a line: a `\r` ends a line too, as some readers take it (Python's universal
/// newlines: the MCP Python SDK's stdio server), so that what the gateway reads as one line can
/// never hold a second message the server would read on its own. Empty pieces are dropped.
fn pieces(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b'\r').filter(|p| !p.is_empty())
}

/// Reads the client's lines into a channel (so that waiting for one is cancel-safe), a line
/// holding `\r` as several.
async fn read_lines(input: impl AsyncRead + Unpin, tx: mpsc::Sender<Vec<u8>>) {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    while next_line(&mut input, &mut line).await.is_some() {
        for piece in pieces(&line) {
            if tx.send(piece.to_vec()).await.is_err() {
                return;
            }
        }
    }
}

/// Client → server: every line decided or remembered, then forwarded (or answered here), in
/// the order the client sent them.
async fn client_to_server(
    session: Arc<Session>,
    input: impl AsyncRead + Unpin + Send + 'static,
    mut server: tokio::process::ChildStdin,
    out: Out,
) {
    let (tx, mut lines) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let reader = tokio::spawn(read_lines(input, tx));
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    loop {
        let (mut line, (parsed, decision)) = tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => done,
            line = lines.recv(), if open && inflight.len() < IN_FLIGHT => {
                match line {
                    Some(line) => {
                        let session = session.clone();
                        // Only a call's decision is awaited here, concurrently with others;
                        // everything else of a message happens below, in order.
                        inflight.push_back(async move {
                            let text = trim_cr(&line);
                            let parsed = (!text.iter().all(u8::is_ascii_whitespace)).then(|| parse(text));
                            let decision = match &parsed {
                                Some(Ok(msg))
                                    if msg.kind == Kind::Request
                                        && msg.method.as_deref() == Some("tools/call") =>
                                {
                                    session.decide_call(msg).await
                                }
                                _ => None,
                            };
                            (line, (parsed, decision))
                        });
                    }
                    None => open = false,
                }
                continue;
            }
            else => break,
        };
        let verdict = match (parsed, decision) {
            (None, _) => Verdict::Drop,
            (Some(Ok(msg)), Some(d)) => {
                session.note_client_message();
                session.finish_call(&msg, d)
            }
            (Some(Ok(msg)), None) => session.from_client(&msg).await,
            (Some(Err(e)), _) => {
                session.unreadable("client", &e, trim_cr(&line));
                Verdict::Answer(Session::unreadable_answer(&e))
            }
        };
        match verdict {
            Verdict::Forward => {
                line.push(b'\n');
                if server.write_all(&line).await.is_err() || server.flush().await.is_err() {
                    break;
                }
            }
            Verdict::Answer(v) => {
                if out.send(answer_line(&v)).await.is_err() {
                    break;
                }
            }
            Verdict::Drop => {}
        }
    }
    reader.abort();
    // The client closed its side: so does the gateway (the server sees the end of its input).
    drop(server);
}

/// Server → client: every line recorded, then forwarded as it was (an unreadable one too: the
/// client judges it as it would without the gateway).
async fn server_to_client(session: Arc<Session>, output: impl AsyncRead + Unpin, out: Out) {
    let mut output = BufReader::with_capacity(1 << 16, output);
    let mut line = Vec::new();
    while next_line(&mut output, &mut line).await.is_some() {
        // Each piece is recorded and forwarded as a line of its own: the client reads what the
        // gateway read, whatever its line reader.
        for text in pieces(&line) {
            if !text.iter().all(u8::is_ascii_whitespace) {
                match parse(text) {
                    Ok(msg) => session.from_server(&msg),
                    Err(e) => session.unreadable("server", &e, text),
                }
            }
            if out.send(text.to_vec()).await.is_err() {
                return;
            }
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Runs `command` as the MCP server behind the gateway, `client_in` and `client_out` (the
/// gateway's stdin and stdout: [`client_streams`]) being the client's connection. Returns the
/// server's exit code.
///
/// # Errors
/// The command cannot be started.
pub async fn wrap(
    session: Arc<Session>,
    command: &[OsString],
    client_in: ClientIn,
    client_out: ClientOut,
) -> Result<i32, String> {
    let (program, args) = command
        .split_first()
        .ok_or("no server command: give it after `--`")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the MCP server `{}`: {e}",
                program.to_string_lossy()
            )
        })?;
    let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the server's stdin and stdout could not be piped".into());
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(write_lines(client_out, rx));
    let mut to_server = tokio::spawn(client_to_server(
        session.clone(),
        client_in,
        server_in,
        tx.clone(),
    ));
    let mut to_client = tokio::spawn(server_to_client(session.clone(), server_out, tx));

    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt());
    let reason;
    tokio::select! {
        _ = &mut to_server => {
            // The client closed: give the server its grace to exit.
            reason = "client_closed";
            if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                let _ = child.start_kill();
            }
        }
        _ = &mut to_client => {
            reason = "upstream_exited";
        }
        _ = recv(&mut terminate) => { reason = "gateway_terminated"; let _ = child.start_kill(); }
        _ = recv(&mut interrupt) => { reason = "gateway_interrupted"; let _ = child.start_kill(); }
    }
    let status = match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    // What the server wrote before it exited still reaches the client.
    if reason != "upstream_exited" {
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut to_client).await;
    }
    to_server.abort();
    to_client.abort();
    let _ = tokio::time::timeout(Duration::from_millis(200), writer).await;
    let code = status.and_then(|s| s.code());
    session.end(
        reason,
        json!({
            "exit_code": code,
            "signal": status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        }),
    );
    Ok(code.unwrap_or(1))
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carriage_return_ends_a_message_as_a_newline_does() {
        // What a reader taking `\r` as a line end (Python's) would see: two messages, so the
        // gateway reads (and decides) two as well.
        let line = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\r{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}}\r";
        let got: Vec<&[u8]> = pieces(line).collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].starts_with(b"{\"jsonrpc\":\"2.0\",\"id\":9"));
        assert_eq!(pieces(b"\r\r").count(), 0);
    }
}
