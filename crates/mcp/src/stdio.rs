//! `blackbox mcp wrap`: the gateway in place of an MCP server started over stdio. It starts the
//! real server as its child and carries newline-delimited messages both ways, in order: a
//! message from the client is decided (a `tools/call`) and recorded before the next one is read,
//! so a `notifications/cancelled` never overtakes the call it cancels.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::message::parse;
use crate::session::{Session, Verdict};

/// How long the server gets to exit after its input is closed before it is killed (the MCP
/// Python client kills the gateway's process group 2 s after closing its input).
const GRACE: Duration = Duration::from_millis(1200);

/// Lines the client gets, in one order: the server's and the gateway's own answers.
type Out = mpsc::Sender<Vec<u8>>;

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

/// Client → server: every line decided or remembered, then forwarded (or answered here).
async fn client_to_server(
    session: Arc<Session>,
    input: impl AsyncRead + Unpin,
    mut server: tokio::process::ChildStdin,
    out: Out,
) {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    while next_line(&mut input, &mut line).await.is_some() {
        let text = trim_cr(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let verdict = match parse(text) {
            Ok(msg) => session.from_client(&msg).await,
            Err(e) => {
                session.unreadable("client", &e, text);
                Verdict::Answer(Session::unreadable_answer(&e))
            }
        };
        match verdict {
            Verdict::Forward => {
                line.push(b'\n');
                if server.write_all(&line).await.is_err() || server.flush().await.is_err() {
                    return;
                }
            }
            Verdict::Answer(v) => {
                if out.send(answer_line(&v)).await.is_err() {
                    return;
                }
            }
            Verdict::Drop => {}
        }
    }
    // The client closed its side: so does the gateway (the server sees the end of its input).
    drop(server);
}

/// Server → client: every line recorded, then forwarded as it was (an unreadable one too: the
/// client judges it as it would without the gateway).
async fn server_to_client(session: Arc<Session>, output: impl AsyncRead + Unpin, out: Out) {
    let mut output = BufReader::with_capacity(1 << 16, output);
    let mut line = Vec::new();
    while next_line(&mut output, &mut line).await.is_some() {
        let text = trim_cr(&line);
        if !text.iter().all(u8::is_ascii_whitespace) {
            match parse(text) {
                Ok(msg) => session.from_server(&msg),
                Err(e) => session.unreadable("server", &e, text),
            }
        }
        if out.send(std::mem::take(&mut line)).await.is_err() {
            return;
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Runs `command` as the MCP server behind the gateway, the gateway's stdin and stdout being
/// the client's connection. Returns the server's exit code.
///
/// # Errors
/// The command cannot be started.
pub async fn wrap(session: Arc<Session>, command: &[OsString]) -> Result<i32, String> {
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
    let writer = tokio::spawn(write_lines(tokio::io::stdout(), rx));
    let mut to_server = tokio::spawn(client_to_server(
        session.clone(),
        tokio::io::stdin(),
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
    let _ = tokio::time::timeout(Duration::from_millis(200), &mut to_client).await;
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
