//! gzip on every core, as one ordinary gzip member (pigz's scheme).
//!
//! The input is cut into blocks of `BLOCK` bytes. Worker threads compress each block as raw
//! deflate primed with the 32 KiB before it and ended by a sync flush (so it stops on a byte
//! boundary), the last one with a final block; the writer puts them in order between a gzip
//! header and trailer. Each block is compressed by a fresh compressor from nothing but its own
//! bytes and the 32 KiB before them, so the output is the same whatever the thread count or the
//! order the workers finish in: a layer always gets the same digest.
//!
//! A block whose bytes look random (already compressed files, encrypted data) is written as
//! stored deflate blocks without trying to compress it: deflate gains nothing there and would
//! spend as long on it as on text. Any block that deflate made larger is stored too.
//!
//! Memory: at most `2 × threads` blocks are in flight, each with its input and output.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes per block. Large enough that priming each block with the previous
/// 32 KiB costs little (3%), small enough that a few blocks per core stay a few MB.
pub(crate) const BLOCK: usize = 1024 * 1024;
/// Deflate's window: how much of the previous block primes the next.
const DICTIONARY: usize = 32 * 1024;
/// A stored deflate block holds at most this many bytes.
const STORED_MAX: usize = 65_535;
/// Bytes of the sample whose byte entropy decides whether a block is stored as it is.
const SAMPLE_PIECE: usize = 4096;
const SAMPLE_PIECES: usize = 16;
/// Shannon entropy (bits per byte) above which a sample counts as random. Random bytes score
/// 7.997 on a 64 KiB sample; compressed files about the same; executables 5–6.5; text 4–5.
const RANDOM_ENTROPY: f64 = 7.97;

/// gzip header: magic, deflate, no flags, no mtime (so equal input gives equal bytes), no extra
/// flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    dictionary: Option<Vec<u8>>,
    data: Vec<u8>,
    last: bool,
    done: mpsc::Sender<io::Result<Vec<u8>>>,
}

/// A writer that gzips what it is given on `threads` worker threads into `inner`.
pub(crate) struct ParallelGzip<W: Write> {
    inner: Option<W>,
    block: Vec<u8>,
    /// The last `DICTIONARY` bytes of the block before `block`, if any.
    dictionary: Option<Vec<u8>>,
    jobs: Option<SyncSender<Job>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    workers: Vec<JoinHandle<()>>,
    crc: crc32fast::Hasher,
    total_in: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// `level` 1 (fastest) to 9 (smallest); `threads` at least 1.
    pub(crate) fn new(inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let mut inner = inner;
        inner.write_all(&HEADER)?;
        let threads = threads.max(1);
        let max_pending = 2 * threads;
        let (jobs, receiver) = mpsc::sync_channel::<Job>(max_pending);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads)
            .map(|i| {
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || worker(&receiver, level))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            inner: Some(inner),
            block: Vec::with_capacity(BLOCK),
            dictionary: None,
            jobs: Some(jobs),
            pending: VecDeque::new(),
            max_pending,
            workers,
            crc: crc32fast::Hasher::new(),
            total_in: 0,
        })
    }

    /// Hands the current block to the workers, first writing out finished blocks so that no
    /// more than `max_pending` are in flight.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let data = std::mem::replace(
            &mut self.block,
            if last {
                Vec::new()
            } else {
                Vec::with_capacity(BLOCK)
            },
        );
        let next_dictionary = (!last && !data.is_empty())
            .then(|| data[data.len().saturating_sub(DICTIONARY)..].to_vec());
        let dictionary = std::mem::replace(&mut self.dictionary, next_dictionary);
        let (done, result) = mpsc::channel();
        let jobs = self.jobs.as_ref().expect("submit after finish");
        jobs.send(Job {
            dictionary,
            data,
            last,
            done,
        })
        .map_err(|_| io::Error::other("the gzip workers stopped"))?;
        self.pending.push_back(result);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let compressed = result
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        self.inner
            .as_mut()
            .expect("write after finish")
            .write_all(&compressed)
    }

    /// Compresses what is left, writes the trailer and gives back the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let mut inner = self.inner.take().expect("finish twice");
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(&(self.total_in as u32).to_le_bytes())?;
        Ok(inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        self.crc.update(buf);
        self.total_in += buf.len() as u64;
        while !buf.is_empty() {
            let room = BLOCK - self.block.len();
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.block.extend_from_slice(now);
            buf = later;
            if self.block.len() == BLOCK {
                self.submit(false)?;
            }
        }
        Ok(written)
    }

    /// Blocks are only complete at `finish`; there is nothing useful to flush before.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        // Closing the queue stops the workers once they finish the block in hand.
        self.jobs = None;
        self.pending.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, level: u32) {
    loop {
        let job = {
            let Ok(receiver) = jobs.lock() else { return };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = compress_block(level, job.dictionary.as_deref(), &job.data, job.last);
        // The writer may have given up (an error elsewhere); nothing to tell it then.
        let _ = job.done.send(result);
    }
}

/// One block as raw deflate: primed with `dictionary`, ended by a sync flush, or by a final
/// block when `last`.
pub(crate) fn compress_block(
    level: u32,
    dictionary: Option<&[u8]>,
    data: &[u8],
    last: bool,
) -> io::Result<Vec<u8>> {
    if looks_random(data) {
        return Ok(stored_blocks(data, last));
    }
    let mut compressor = Compress::new(Compression::new(level), false);
    if let Some(dictionary) = dictionary {
        compressor
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = compressor.total_in() as usize;
        let status = compressor
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let input_done = compressor.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output was not filled.
            _ if !last && input_done && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    if out.len() > stored_size(data.len(), last) {
        return Ok(stored_blocks(data, last));
    }
    Ok(out)
}

/// Bytes `stored_blocks` writes for `len` bytes.
fn stored_size(len: usize, last: bool) -> usize {
    let blocks = len.div_ceil(STORED_MAX).max(usize::from(last));
    len + 5 * blocks
}

/// `data` as stored deflate blocks, starting on a byte boundary (every block before ends with
/// a sync flush) and ending on one. The last of the stream carries the final flag.
pub(crate) fn stored_blocks(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_size(data.len(), last));
    let mut pieces = data.chunks(STORED_MAX).peekable();
    if pieces.peek().is_none() {
        if last {
            out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        return out;
    }
    while let Some(piece) = pieces.next() {
        let is_final = last && pieces.peek().is_none();
        let len = piece.len() as u16;
        // BFINAL, BTYPE 00 (stored), then padding to the byte boundary.
        out.push(u8::from(is_final));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Whether a block's bytes are as good as random, from the byte entropy of a sample spread
/// over it. Only blocks large enough for the estimate to mean something are judged.
pub(crate) fn looks_random(data: &[u8]) -> bool {
    if data.len() < SAMPLE_PIECE * SAMPLE_PIECES {
        return false;
    }
    let mut counts = [0u32; 256];
    let stride = data.len() / SAMPLE_PIECES;
    for piece in 0..SAMPLE_PIECES {
        let start = piece * stride;
        for &byte in &data[start..start + SAMPLE_PIECE] {
            counts[byte as usize] += 1;
        }
    }
    let total = (SAMPLE_PIECE * SAMPLE_PIECES) as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum();
    entropy > RANDOM_ENTROPY
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text(len: usize, seed: u64) -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"layer ",
            b"digest ",
            b"registry ",
            b"push ",
            b"gzip ",
            b"blob ",
            b"tar\n",
            b"= ",
        ];
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(words[(state % 8) as usize]);
        }
        out.truncate(len);
        out
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn gzip(data: &[u8], level: u32, threads: usize, write_size: usize) -> Vec<u8> {
        let mut writer = ParallelGzip::new(Vec::new(), level, threads).unwrap();
        for chunk in data.chunks(write_size.max(1)) {
            writer.write_all(chunk).unwrap();
        }
        writer.finish().unwrap()
    }

    fn gunzip_single_member(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn output_is_one_member_and_the_same_for_any_thread_count_and_write_size() {
        let mut data = text(3 * BLOCK + 12_345, 7);
        data.extend(random(BLOCK + 99, 3));
        data.extend(text(BLOCK / 2, 11));
        let one = gzip(&data, 1, 1, 1 << 20);
        for (threads, write_size) in [(2, 4096), (3, 65_537), (8, 7 * BLOCK)] {
            assert_eq!(gzip(&data, 1, threads, write_size), one);
        }
        assert_eq!(gunzip_single_member(&one), data);
        assert_eq!(&one[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn every_level_round_trips_and_higher_levels_are_smaller() {
        let data = text(2 * BLOCK + 5, 5);
        let sizes: Vec<usize> = [1, 2, 6, 9]
            .into_iter()
            .map(|level| {
                let bytes = gzip(&data, level, 2, 100_000);
                assert_eq!(gunzip_single_member(&bytes), data, "level {level}");
                bytes.len()
            })
            .collect();
        assert!(sizes[0] >= sizes[1] && sizes[1] >= sizes[3], "{sizes:?}");
        assert!(sizes[3] < data.len() / 3, "{sizes:?}");
    }

    #[test]
    fn empty_and_tiny_inputs_are_valid_gzip() {
        for data in [Vec::new(), b"x".to_vec(), text(BLOCK, 1)] {
            let bytes = gzip(&data, 1, 2, 1000);
            assert_eq!(gunzip_single_member(&bytes), data);
        }
    }

    #[test]
    fn random_blocks_are_stored_and_text_blocks_compressed() {
        let noise = random(BLOCK, 9);
        assert!(looks_random(&noise));
        assert!(!looks_random(&text(BLOCK, 9)));
        assert!(!looks_random(&noise[..1000]));
        // Half noise, half text: deflate still gets the text.
        let mut mixed = noise[..BLOCK / 2].to_vec();
        mixed.extend(text(BLOCK / 2, 2));
        assert!(!looks_random(&mixed));

        let block = compress_block(1, None, &noise, false).unwrap();
        assert_eq!(block, stored_blocks(&noise, false));
        assert_eq!(block.len(), stored_size(noise.len(), false));
        let bytes = gzip(&noise, 1, 2, 4096);
        assert!(bytes.len() <= noise.len() + noise.len() / 10_000 + 64);
        assert_eq!(gunzip_single_member(&bytes), noise);
    }

    #[test]
    fn stored_blocks_decode_and_only_the_last_is_final() {
        let data = text(STORED_MAX * 2 + 10, 4);
        let mut stream = stored_blocks(&data[..STORED_MAX + 3], false);
        stream.extend(stored_blocks(&data[STORED_MAX + 3..], true));
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(stored_blocks(&[], true), vec![1, 0, 0, 0xff, 0xff]);
        assert!(stored_blocks(&[], false).is_empty());
    }

    #[test]
    fn dropping_an_unfinished_writer_stops_its_workers() {
        let mut writer = ParallelGzip::new(Vec::new(), 1, 3).unwrap();
        writer.write_all(&text(3 * BLOCK, 8)).unwrap();
        // The handles are taken out to watch the threads themselves once the writer is gone.
        let workers = std::mem::take(&mut writer.workers);
        assert_eq!(workers.len(), 3);
        assert!(
            workers.iter().all(|worker| !worker.is_finished()),
            "the workers wait for blocks while the writer lives"
        );
        drop(writer);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !workers.iter().all(JoinHandle::is_finished) {
            assert!(
                std::time::Instant::now() < deadline,
                "gzip workers still running 10 s after their writer was dropped"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for worker in workers {
            worker.join().expect("a worker panicked");
        }
    }
}
