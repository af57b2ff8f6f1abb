//! A command's results on stdout. A reader that goes away early (`evn validate | head -1`) is
//! a normal end of the output, not a failure: `println!` panicked on the broken pipe (exit 101,
//! a panic message on stderr). Rust ignores SIGPIPE, so the broken pipe arrives as an error
//! from `write`; leaving SIGPIPE ignored keeps a socket closed under librdkafka or tokio from
//! killing the process. The command ends at the next result it prints, with exit 0 and no
//! message (`main` knows [`Closed`]); what it had done before stays done.

use std::fmt;
use std::io::{self, Write};

use crate::Failure;

/// The reader of stdout went away.
#[derive(Debug)]
pub(crate) struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// One line of results (what `outln!` calls).
pub(crate) fn line(args: fmt::Arguments<'_>) -> Result<(), Failure> {
    writeln!(io::stdout().lock(), "{args}").map_err(failure)
}

/// A line a long-running command prints once at start (the address it serves on): a
/// supervisor that stopped reading stdout must not stop the service.
pub(crate) fn announce(args: fmt::Arguments<'_>) {
    if let Err(e) = writeln!(io::stdout().lock(), "{args}") {
        tracing::warn!(error = %e, "could not print to stdout");
    }
}

/// A write error on stdout: [`Closed`] for a broken pipe; any other (a full disk behind `>`)
/// is a failure, since the results are lost.
pub(crate) fn failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Closed.into()
    } else {
        anyhow::Error::new(e)
            .context("cannot write to stdout")
            .into()
    }
}

/// A writer over stdout that remembers a broken pipe, for results streamed by a library that
/// reports write errors its own way (csv turns a broken pipe into `ErrorKind::Other`).
pub(crate) struct Watched<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Watched<W> {
    pub(crate) fn new(inner: W) -> Self {
        Watched {
            inner,
            closed: false,
        }
    }

    /// Whether a write or flush found the reader gone.
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    fn watch<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            self.closed |= e.kind() == io::ErrorKind::BrokenPipe;
        }
        result
    }
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.watch(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.watch(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader is gone after `room` bytes.
    struct Pipe {
        room: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_is_closed_and_other_errors_fail() {
        let closed = failure(io::ErrorKind::BrokenPipe.into());
        assert!(closed.error.is::<Closed>());
        let full = failure(io::Error::from_raw_os_error(28));
        assert!(!full.error.is::<Closed>());
        assert_eq!(full.code, 1);
        assert!(format!("{:#}", full.error).starts_with("cannot write to stdout"));
    }

    #[test]
    fn watched_remembers_a_broken_pipe_through_a_buffer() {
        let mut out = Watched::new(io::BufWriter::with_capacity(4, Pipe { room: 6 }));
        assert!(out.write_all(b"abc").is_ok());
        assert!(out.write_all(b"defghij").is_err());
        assert!(out.closed());
        let mut out = Watched::new(Pipe { room: 6 });
        assert!(out.write_all(b"abcdef").is_ok());
        assert!(!out.closed());
    }
}
