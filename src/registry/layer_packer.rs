//! Turning layer content into registry blobs while it streams past: hash the uncompressed tar
//! (its diff id), compress it on every core, and spool the compressed bytes to a file whose
//! digest and size are known when the last byte is written.
//!
//! Memory stays at a few compression blocks per core whatever the layer size: gzip goes
//! through `parallel_gzip` (1 MiB blocks compressed on every core, pigz's scheme: one ordinary
//! gzip member, the same bytes for any thread count), zstd uses its own worker threads.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::parallel_gzip::ParallelGzip;
use super::push_config::Compression;

/// Most threads one layer is compressed on: a single export stream cannot feed more (each
/// compresses 100–300 MB/s), and each one holds two blocks in flight.
const MAX_THREADS: usize = 16;
/// Bytes each zstd worker compresses at a time: like the gzip blocks, a few per thread in
/// flight whatever the layer size.
const ZSTD_JOB_BYTES: u32 = 2 * 1024 * 1024;
/// Read size for layer content; large enough to keep syscalls rare, small enough not to matter.
const READ_CHUNK: usize = 256 * 1024;

/// The error inside an `io::Error` when the push was cancelled mid-stream.
#[derive(Debug, thiserror::Error)]
#[error("the push was cancelled")]
pub(crate) struct Cancelled;

pub(crate) fn is_cancelled(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

/// Counts and hashes what goes through it.
pub(crate) struct DigestingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> DigestingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the `sha256:` digest and the byte count of all that was written.
    pub(crate) fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for DigestingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type SpoolWriter = DigestingWriter<BufWriter<File>>;

/// How layers are compressed: the algorithm and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packing {
    pub compression: Compression,
    pub level: u32,
}

impl Packing {
    /// `compression` at its default level.
    pub(crate) fn new(compression: Compression) -> Self {
        Self {
            compression,
            level: compression.default_level(),
        }
    }
}

impl Default for Packing {
    fn default() -> Self {
        Self::new(Compression::default())
    }
}

/// A streaming compressor over a spool file.
enum LayerCompressor {
    Gzip(ParallelGzip<SpoolWriter>),
    Zstd(zstd::stream::write::Encoder<'static, SpoolWriter>),
}

fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_THREADS)
}

impl LayerCompressor {
    fn new(packing: Packing, out: SpoolWriter, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        Ok(match packing.compression {
            Compression::Gzip => {
                LayerCompressor::Gzip(ParallelGzip::new(out, packing.level, threads)?)
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, packing.level as i32)?;
                encoder.multithread(threads as u32)?;
                // zstd's own job size (8 MiB at level 3, each in flight with its output) would
                // take 300 MB with 16 threads.
                encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_BYTES))?;
                LayerCompressor::Zstd(encoder)
            }
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            LayerCompressor::Gzip(writer) => writer.write_all(buf),
            LayerCompressor::Zstd(writer) => writer.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<SpoolWriter> {
        match self {
            LayerCompressor::Gzip(writer) => writer.finish(),
            LayerCompressor::Zstd(writer) => writer.finish(),
        }
    }
}

/// A blob written to a spool file, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpooledBlob {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
}

/// A layer compressed by shipit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedLayer {
    pub diff_id: String,
    pub uncompressed_size: u64,
    pub blob: SpooledBlob,
}

/// Reads `source` to its end in chunks, feeding each chunk to `sink`, checking `cancel` and
/// reporting progress between chunks.
fn pump(
    source: &mut dyn Read,
    cancel: &CancellationToken,
    on_bytes: &mut dyn FnMut(u64),
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(io::Error::other(Cancelled));
        }
        let n = match source.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        sink(&buffer[..n])?;
        total += n as u64;
        on_bytes(n as u64);
    }
}

fn create_spool(dir: &Path) -> io::Result<(PathBuf, SpoolWriter)> {
    let file = tempfile::Builder::new().prefix("blob-").tempfile_in(dir)?;
    // The upload reads the file back by path after this writer is gone; keep it on disk until
    // the uploader deletes it.
    let (file, path) = file.keep().map_err(|err| err.error)?;
    Ok((
        path,
        DigestingWriter::new(BufWriter::with_capacity(READ_CHUNK, file)),
    ))
}

fn close_spool(writer: SpoolWriter, path: PathBuf) -> io::Result<SpooledBlob> {
    let (buffered, digest, size) = writer.finish();
    buffered.into_inner().map_err(|err| err.into_error())?;
    Ok(SpooledBlob { path, digest, size })
}

/// Hashes and compresses an uncompressed layer into a new spool file in `spool_dir`.
pub(crate) fn pack_layer(
    source: &mut dyn Read,
    packing: Packing,
    spool_dir: &Path,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> io::Result<PackedLayer> {
    let (path, spool) = create_spool(spool_dir)?;
    let result = (|| {
        let mut compressor = LayerCompressor::new(packing, spool, compression_threads())?;
        let mut hasher = Sha256::new();
        let uncompressed_size = pump(source, cancel, on_bytes, |chunk| {
            hasher.update(chunk);
            compressor.write_all(chunk)
        })?;
        let blob = close_spool(compressor.finish()?, path.clone())?;
        Ok(PackedLayer {
            diff_id: format!("sha256:{}", hex::encode(hasher.finalize())),
            uncompressed_size,
            blob,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Copies an already compressed blob into a spool file, checking it has the digest it is
/// stored under when the archive names one.
pub(crate) fn spool_blob(
    source: &mut dyn Read,
    expected_digest: Option<&str>,
    spool_dir: &Path,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> io::Result<SpooledBlob> {
    let (path, mut spool) = create_spool(spool_dir)?;
    let result = (|| {
        pump(source, cancel, on_bytes, |chunk| spool.write_all(chunk))?;
        let blob = close_spool(spool, path.clone())?;
        if let Some(expected) = expected_digest
            && blob.digest != expected
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the blob stored as {expected} has digest {}", blob.digest),
            ));
        }
        Ok(blob)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Reads a layer only to learn its diff id and size.
pub(crate) fn hash_layer(
    source: &mut dyn Read,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let size = pump(source, cancel, on_bytes, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Compressible but not trivial: a few MB of text-like bytes.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 7 == 0 {
                    b' '
                } else {
                    b'a' + (state % 16) as u8
                }
            })
            .collect()
    }

    fn pack_with(data: &[u8], compression: Compression, threads: usize) -> (PackedLayer, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (path, spool) = create_spool(dir.path()).unwrap();
        let mut compressor =
            LayerCompressor::new(Packing::new(compression), spool, threads).unwrap();
        compressor.write_all(data).unwrap();
        let blob = close_spool(compressor.finish().unwrap(), path).unwrap();
        let bytes = std::fs::read(&blob.path).unwrap();
        let layer = PackedLayer {
            diff_id: format!("sha256:{}", hex::encode(Sha256::digest(data))),
            uncompressed_size: data.len() as u64,
            blob,
        };
        (layer, bytes)
    }

    #[test]
    fn gzip_output_is_one_valid_member_and_the_same_for_any_thread_count() {
        let data = sample(3 * 1024 * 1024 + 17);
        let (one, bytes_one) = pack_with(&data, Compression::Gzip, 1);
        let (three, bytes_three) = pack_with(&data, Compression::Gzip, 3);
        assert_eq!(one.blob.digest, three.blob.digest);
        assert_eq!(bytes_one, bytes_three);
        // 16 letters at random: about four bits a byte, so a bit over half the size.
        assert!(one.blob.size < data.len() as u64 * 7 / 10);
        // A single-member decoder must read the whole stream back.
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(Cursor::new(&bytes_one))
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
    }

    #[test]
    fn zstd_output_round_trips() {
        let data = sample(2 * 1024 * 1024);
        let (layer, bytes) = pack_with(&data, Compression::Zstd, 2);
        assert_eq!(layer.blob.size, bytes.len() as u64);
        assert_eq!(zstd::decode_all(Cursor::new(bytes)).unwrap(), data);
    }

    #[test]
    fn pack_layer_reports_diff_id_digest_and_progress() {
        let data = sample(600 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0u64;
        let packed = pack_layer(
            &mut Cursor::new(&data),
            Packing::new(Compression::Gzip),
            dir.path(),
            &mut |n| seen += n,
            &CancellationToken::new(),
        )
        .unwrap();
        assert_eq!(seen, data.len() as u64);
        assert_eq!(packed.uncompressed_size, data.len() as u64);
        assert_eq!(
            packed.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
        let bytes = std::fs::read(&packed.blob.path).unwrap();
        assert_eq!(
            packed.blob.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
        );
    }

    #[test]
    fn spool_blob_rejects_content_that_does_not_match_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let err = spool_blob(
            &mut Cursor::new(b"not what it claims"),
            Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            dir.path(),
            &mut |_| {},
            &CancellationToken::new(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn cancellation_stops_packing_and_removes_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = pack_layer(
            &mut Cursor::new(sample(1024)),
            Packing::new(Compression::Gzip),
            dir.path(),
            &mut |_| {},
            &cancel,
        )
        .unwrap_err();
        assert!(is_cancelled(&err));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
