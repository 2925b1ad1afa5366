//! Server-sent events (the WHATWG HTML "event stream" format), read incrementally from the
//! chunks of a response as they pass through: each complete event's `data` is handed over;
//! the bytes themselves are forwarded untouched by the caller.

/// An incremental reader of an event stream.
#[derive(Debug)]
pub struct SseReader {
    /// The current, incomplete line.
    line: Vec<u8>,
    /// The current event's data (lines joined by `\n`).
    data: Vec<u8>,
    has_data: bool,
    /// Data beyond this is not kept (the event is reported as too large).
    max: usize,
    overflow: bool,
    /// The current line is longer than a line may be: the rest of it is dropped.
    discarding: bool,
    /// The last chunk ended with a CR: an LF starting the next one belongs to it.
    after_cr: bool,
}

/// One event, as [`SseReader::feed`] hands it over.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Its data.
    Data(&'a [u8]),
    /// Its data was larger than the reader keeps.
    TooLarge,
}

impl SseReader {
    /// A reader keeping at most `max` bytes of one event's data.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            max,
            overflow: false,
            discarding: false,
            after_cr: false,
        }
    }

    /// Reads `chunk`; calls `on_event` for every event it completes (events without data, such
    /// as keep-alive comments and priming events, are not handed over). A line ends at CRLF, LF
    /// or CR, as the format says (and as clients read it).
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            // The LF of a CRLF split between chunks.
            self.after_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
            let (head, tail) = rest.split_at(i);
            let cr = tail[0] == b'\r';
            rest = &tail[1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.discarding {
                self.discarding = false;
                self.overflow = true;
                self.line.clear();
            } else if self.line.is_empty() {
                self.take_line(head, on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.take_line(&line, on_event);
            }
        }
        if self.discarding {
            return;
        }
        if self.line.len() + rest.len() <= self.line_max() {
            self.line.extend_from_slice(rest);
        } else {
            // Too long to be a line of an event the reader keeps: its event is too large,
            // whatever the line says (as a complete line of that length is, below).
            self.discarding = true;
            self.line.clear();
        }
    }

    /// The longest line kept: a `data` line of the largest event, and its field name.
    fn line_max(&self) -> usize {
        self.max.saturating_add(64)
    }

    fn take_line(&mut self, line: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        if line.len() > self.line_max() {
            self.overflow = true;
            return;
        }
        if line.is_empty() {
            if self.overflow {
                on_event(Event::TooLarge);
            } else if self.has_data {
                on_event(Event::Data(&self.data));
            }
            self.data.clear();
            self.has_data = false;
            self.overflow = false;
            return;
        }
        if line.first() == Some(&b':') {
            return; // a comment
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.has_data = true;
            if self.data.len() + value.len() > self.max {
                self.overflow = true;
                self.data.clear();
            } else if !self.overflow {
                self.data.extend_from_slice(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut r = SseReader::new(max);
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut |e| {
                out.push(match e {
                    Event::Data(d) => String::from_utf8_lossy(d).into_owned(),
                    Event::TooLarge => "<too large>".into(),
                });
            });
        }
        out
    }

    #[test]
    fn events_across_chunks_comments_priming_and_crlf() {
        let got = events(
            &[
                b"id: 1\ndata: \n\n: keep-alive\n\nevent: message\nid: 2\nda",
                b"ta: {\"a\":1}\r\n\r\ndata: x\ndata:y\n",
                b"\n",
            ],
            1 << 20,
        );
        // The priming event has empty data: handed over as empty (the caller skips it).
        assert_eq!(got, ["", "{\"a\":1}", "x\ny"]);
        // A bare CR ends a line as LF does: nothing hides after it.
        assert_eq!(
            events(&[b"data: one\r\rdata: two\r", b"\n\r\n"], 1 << 20),
            ["one", "two"]
        );
        assert_eq!(
            events(&[b"data: 0123456789\n\ndata: ok\n\n"], 4),
            ["<too large>", "ok"]
        );
    }

    #[test]
    fn a_stream_reads_the_same_wherever_it_is_cut() {
        let long = format!("event: {}\ndata: x\n\n", "y".repeat(200));
        let longdata = format!("data: {}\n\ndata: after\n\n", "z".repeat(150));
        let streams: [&[u8]; 5] = [
            b"id: 1\ndata: \n\n: c\ndata: {\"a\":1}\r\n\r\ndata: x\ndata:y\n\n",
            long.as_bytes(),
            longdata.as_bytes(),
            b"data: a\r\ndata: b\r\n\r\n",
            b"data: one\r\rdata: two\r\r",
        ];
        for s in streams {
            let whole = events(&[s], 100);
            for cut in 0..=s.len() {
                assert_eq!(events(&[&s[..cut], &s[cut..]], 100), whole, "cut at {cut}");
            }
        }
    }
}
