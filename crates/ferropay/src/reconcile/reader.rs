//! Streams a settlement file: a blocking thread reads the CSV record by record into one reused
//! buffer and hands parsed lines over in chunks through a bounded channel. At most
//! `CHANNEL_CHUNKS + 2` chunks exist at once, so memory does not grow with the file.
//!
//! The header says which parser reads the records: the contract's columns (the sandbox's file,
//! Stripe's balance transactions as the connector writes them), or Adyen's Settlement details
//! report ([`super::adyen_report`]).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use csv::{ByteRecord, ReaderBuilder};
use tokio::sync::mpsc;

use super::adyen_report::AdyenColumns;
use super::line::{Columns, ReadLine};

/// The parser a file's header picks.
enum Format {
    Contract(Columns),
    Adyen(AdyenColumns),
}

impl Format {
    fn from_header(header: &ByteRecord) -> Result<Self, String> {
        match Columns::from_header(header) {
            Ok(columns) => Ok(Self::Contract(columns)),
            Err(error) => AdyenColumns::from_header(header)
                .map(Self::Adyen)
                .ok_or(error),
        }
    }

    fn parse(&self, record: &ByteRecord, line_no: u64) -> ReadLine {
        match self {
            Self::Contract(columns) => columns.parse(record, line_no),
            Self::Adyen(columns) => columns.parse(record, line_no),
        }
    }
}

/// Chunks read ahead of the matcher.
const CHANNEL_CHUNKS: usize = 2;

/// Lines read, in file order, and how far into the file they reach.
pub struct Chunk {
    pub lines: Vec<ReadLine>,
    /// Bytes of the file consumed so far.
    pub bytes_read: u64,
}

/// Starts reading `path` on a blocking thread. The receiver yields chunks of at most
/// `chunk_lines` lines, or one error (unreadable file, bad header) after which it ends.
pub fn spawn(path: PathBuf, chunk_lines: usize) -> mpsc::Receiver<Result<Chunk, String>> {
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = read(&path, chunk_lines.max(1), &sender) {
            // The receiver may be gone already (the run failed); nothing else to tell then.
            let _ = sender.blocking_send(Err(error));
        }
    });
    receiver
}

fn read(
    path: &PathBuf,
    chunk_lines: usize,
    sender: &mpsc::Sender<Result<Chunk, String>>,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    read_from(
        BufReader::with_capacity(256 * 1024, file),
        &path.display().to_string(),
        chunk_lines,
        // `false` once the run stopped listening.
        |chunk| sender.blocking_send(Ok(chunk)).is_ok(),
    )
}

/// Reads a settlement file from `input` (named `name` in errors), handing `on_chunk` chunks of
/// at most `chunk_lines` lines until it answers `false` or the file ends. A bad header or an
/// unreadable file is an error; a bad line is a line that says so.
pub fn read_from(
    input: impl Read,
    name: &str,
    chunk_lines: usize,
    mut on_chunk: impl FnMut(Chunk) -> bool,
) -> Result<(), String> {
    let chunk_lines = chunk_lines.max(1);
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        // A short or long row is a malformed line, not the end of the run.
        .flexible(true)
        .from_reader(input);
    let header = reader
        .byte_headers()
        .map_err(|e| format!("reading the header of {name}: {e}"))?
        .clone();
    let columns = Format::from_header(&header)?;
    let mut record = ByteRecord::new();
    let mut lines = Vec::with_capacity(chunk_lines);
    let mut line_no = 0_u64;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| format!("reading {name} after line {line_no}: {e}"))?;
        if more {
            line_no += 1;
            lines.push(columns.parse(&record, line_no));
        }
        if lines.len() == chunk_lines || (!more && !lines.is_empty()) {
            let chunk = Chunk {
                lines: std::mem::replace(&mut lines, Vec::with_capacity(chunk_lines)),
                bytes_read: reader.position().byte(),
            };
            if !on_chunk(chunk) {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}
