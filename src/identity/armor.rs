//! ASCII armor for envelopes: standard base64 (with padding) in 64-column
//! lines between `-----BEGIN CARDFS ENVELOPE-----` and
//! `-----END CARDFS ENVELOPE-----`. Streaming both ways in constant memory.
//!
//! Invariants: the reader accepts any line wrapping and CRLF line ends,
//! refuses anything after the END line except whitespace, and reports a
//! missing END line as truncation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::{self, BufRead, Read, Write};

pub const BEGIN: &str = "-----BEGIN CARDFS ENVELOPE-----";
pub const END: &str = "-----END CARDFS ENVELOPE-----";
const LINE_BYTES: usize = 48;

/// Writes armored text; call [`ArmorWriter::finish`] to write the end.
pub struct ArmorWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
    started: bool,
}

impl<W: Write> ArmorWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::with_capacity(LINE_BYTES),
            started: false,
        }
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            writeln!(self.inner, "{BEGIN}")?;
        }
        Ok(())
    }

    fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut text = STANDARD.encode(bytes);
        text.push('\n');
        self.inner.write_all(text.as_bytes())
    }

    /// Writes the remaining bytes and the END line; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.start()?;
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.line(&rest)?;
        }
        writeln!(self.inner, "{END}")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ArmorWriter<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        self.start()?;
        let n = buf.len();
        while !buf.is_empty() {
            let take = (LINE_BYTES - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == LINE_BYTES {
                let line = std::mem::take(&mut self.pending);
                self.line(&line)?;
                self.pending = line;
                self.pending.clear();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads armored text and yields the bytes.
pub struct ArmorReader<R: BufRead> {
    inner: R,
    state: State,
    chars: String,
    out: Vec<u8>,
    pos: usize,
}

#[derive(PartialEq, Eq)]
enum State {
    Start,
    Body,
    Done,
}

impl<R: BufRead> ArmorReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::Start,
            chars: String::new(),
            out: Vec::new(),
            pos: 0,
        }
    }

    fn next_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        // Lines are at most a few hundred bytes in any armor we wrote;
        // bound them so hostile input cannot grow memory.
        let n = (&mut self.inner).take(4096).read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if n == 4096 && !line.ends_with('\n') {
            return Err(invalid("armor line too long"));
        }
        Ok(Some(line.trim().to_string()))
    }

    /// Decodes the next batch of bytes into `self.out`.
    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() && self.state != State::Done {
            let line = self.next_line()?;
            match (&self.state, line) {
                (_, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "armor ends without its END line (truncated)",
                    ));
                }
                (State::Start, Some(l)) if l.is_empty() => {}
                (State::Start, Some(l)) if l == BEGIN => self.state = State::Body,
                (State::Start, Some(_)) => return Err(invalid("armor does not start with BEGIN")),
                (State::Body, Some(l)) if l == END => {
                    if !self.chars.is_empty() {
                        self.decode_all()?;
                    }
                    self.state = State::Done;
                    self.check_tail()?;
                }
                (State::Body, Some(l)) => {
                    self.chars.push_str(&l);
                    let whole = self.chars.len() / 4 * 4;
                    if self.chars[..whole].ends_with('=') || whole == self.chars.len() {
                        self.decode_all()?;
                    } else {
                        let rest = self.chars.split_off(whole);
                        self.decode_all()?;
                        self.chars = rest;
                    }
                }
                (State::Done, _) => unreachable!(),
            }
        }
        Ok(())
    }

    fn decode_all(&mut self) -> io::Result<()> {
        let decoded = STANDARD
            .decode(self.chars.as_bytes())
            .map_err(|_| invalid("armor holds invalid base64"))?;
        self.out.extend_from_slice(&decoded);
        self.chars.clear();
        Ok(())
    }

    fn check_tail(&mut self) -> io::Result<()> {
        while let Some(line) = self.next_line()? {
            if !line.is_empty() {
                return Err(invalid("text follows the armor's END line"));
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for ArmorReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.state == State::Done {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Looks at the start of `reader`: armored input is unwrapped, binary input
/// passes through unchanged.
pub fn dearmor<'a>(mut reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = Vec::with_capacity(BEGIN.len());
    (&mut reader)
        .take(BEGIN.len() as u64)
        .read_to_end(&mut head)?;
    let trimmed = head.trim_ascii_start();
    let rest = io::Cursor::new(head.clone()).chain(reader);
    if trimmed.starts_with(b"-----") {
        Ok(Box::new(ArmorReader::new(io::BufReader::new(rest))))
    } else {
        Ok(Box::new(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armor(data: &[u8]) -> String {
        let mut w = ArmorWriter::new(Vec::new());
        w.write_all(data).unwrap();
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn round_trips_at_line_boundaries() {
        for len in [0, 1, 47, 48, 49, 96, 1000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let text = armor(&data);
            assert!(text.lines().all(|l| l.len() <= 64));
            let mut back = Vec::new();
            dearmor(text.as_bytes())
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
            // Re-wrapped lines with CRLF are accepted too.
            let rewrapped = text.replace('\n', "\r\n");
            let mut back = Vec::new();
            dearmor(rewrapped.as_bytes())
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn refuses_truncation_and_garbage() {
        let text = armor(&[7; 100]);
        let cut = &text[..text.len() - END.len() - 1];
        let err = dearmor(cut.as_bytes())
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let bad = text.replacen('A', "*", 1);
        assert!(
            dearmor(bad.as_bytes())
                .unwrap()
                .read_to_end(&mut Vec::new())
                .is_err()
        );
        let extra = format!("{text}more\n");
        assert!(
            dearmor(extra.as_bytes())
                .unwrap()
                .read_to_end(&mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn binary_passes_through() {
        let mut back = Vec::new();
        dearmor(&b"CFSE\x01binary"[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"CFSE\x01binary");
    }
}
