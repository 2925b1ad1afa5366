//! The MCP gateway's readers (docs/MCP.md): a JSON-RPC message (`message::parse`) and a
//! server-sent event stream (`sse::SseReader`). Neither may panic; a parsed message is what it
//! says it is; an event stream reads the same whatever the chunks it arrives in.
#![no_main]

use blackbox_mcp::message::{Kind, parse};
use blackbox_mcp::sse::{Event, SseReader};
use libfuzzer_sys::fuzz_target;

fn events(chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut r = SseReader::new(4096);
    let mut out = Vec::new();
    for c in chunks {
        r.feed(c, &mut |e| {
            out.push(match e {
                Event::Data(d) => Some(d.to_vec()),
                Event::TooLarge => None,
            });
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        if let Ok(m) = parse(body) {
            match m.kind {
                Kind::Request => assert!(m.id.is_some() && m.method.is_some()),
                Kind::Notification => assert!(m.id.is_none() && m.method.is_some()),
                Kind::Response => {
                    assert!(m.id.is_some() && m.method.is_none());
                    assert!(m.result().is_some() || m.error().is_some());
                }
            }
        }
        return;
    }
    // The same stream, whole and cut at a point the selector picks.
    let cut = usize::from(sel >> 1).min(body.len());
    let whole = events(&[body]);
    let split = events(&[&body[..cut], &body[cut..]]);
    assert_eq!(whole, split);
});
