//! The build context as a tar stream, produced while walking the tree.
//!
//! A blocking task walks the context and writes tar entries into a small buffer
//! that is handed, chunk by chunk, to a bounded channel; the request body reads
//! from that channel. At most `CHANNEL_CHUNKS × CHUNK_SIZE` bytes are in flight,
//! whatever the size of the context, and a daemon that stops reading stops the walk.
//!
//! Entries are written as the docker CLI writes them (`pkg/archive.TarWithOptions`
//! with `ChownOpts{0,0}`): owner 0:0 without user names, permission and
//! setuid/setgid/sticky bits kept, modification time truncated to the second,
//! symlinks stored with their target as is, hard links as links to the first path
//! seen, FIFOs and devices as headers without data.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::walk::{EntryKind, WalkEntry, relative_os, walk_context};
use super::{BuildContext, ContextError, DOCKERIGNORE, DockerfileLocation};

/// Size of the chunks handed to the request body.
const CHUNK_SIZE: usize = 256 * 1024;
/// Read size for file contents.
const READ_BUFFER: usize = 256 * 1024;
/// Chunks buffered between the walk and the request body.
const CHANNEL_CHUNKS: usize = 8;

/// What was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarSummary {
    pub entries: u64,
    /// Bytes of file contents (headers and padding excluded).
    pub content_bytes: u64,
}

/// A running context tar: the body to send and the task producing it.
pub(crate) struct ContextTar {
    pub(crate) body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>,
    pub(crate) producer: JoinHandle<Result<TarSummary, ContextError>>,
    /// The Dockerfile's name inside the tar, for the daemon's `dockerfile` parameter.
    pub(crate) dockerfile_name: String,
}

/// Starts streaming the context as a tar on a blocking thread.
pub(crate) fn start_context_tar(context: &BuildContext) -> ContextTar {
    let (sender, mut receiver) = mpsc::channel::<Result<Bytes, io::Error>>(CHANNEL_CHUNKS);
    let dockerfile_name = dockerfile_name_in_tar(context);
    let context = context.clone();
    let name = dockerfile_name.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let writer = BufWriter::with_capacity(
            CHUNK_SIZE,
            ChannelWriter {
                sender: sender.clone(),
            },
        );
        let result = write_context_tar(&context, &name, writer);
        if let Err(err) = &result {
            // Fail the request body too, so the daemon does not build from a
            // truncated context. Nobody listening any more is fine.
            let _ = sender.blocking_send(Err(io::Error::other(err.to_string())));
        }
        result
    });
    let body = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    ContextTar {
        body: Box::pin(body),
        producer,
        dockerfile_name,
    }
}

/// The name under which the daemon finds the Dockerfile in the tar: its relative
/// path, or for a Dockerfile outside the context a generated hidden name, as the
/// CLI's `AddDockerfileToBuildContext` does.
pub(crate) fn dockerfile_name_in_tar(context: &BuildContext) -> String {
    match context.dockerfile() {
        DockerfileLocation::InContext(relative) => relative.clone(),
        DockerfileLocation::Outside(_) => {
            format!(".dockerfile.{}", hex::encode(rand::random::<[u8; 10]>()))
        }
    }
}

/// Writes the whole context as a tar into `out`.
pub(crate) fn write_context_tar<W: Write>(
    context: &BuildContext,
    dockerfile_name: &str,
    out: W,
) -> Result<TarSummary, ContextError> {
    let matcher = context.matcher();
    let outside = match context.dockerfile() {
        DockerfileLocation::Outside(path) => Some(path.clone()),
        DockerfileLocation::InContext(_) => None,
    };
    // With an outside Dockerfile the classic builder must be told to drop the
    // generated file from the context, through `.dockerignore` (CLI behaviour).
    let patch_dockerignore = outside.is_some();
    let mut writer = EntryWriter {
        builder: tar::Builder::new(out),
        summary: TarSummary::default(),
        hard_links: HashMap::new(),
        buffer: vec![0u8; READ_BUFFER],
    };
    let mut wrote_dockerignore = false;
    walk_context(context.root(), &matcher, &mut |entry| {
        if patch_dockerignore && entry.relative == DOCKERIGNORE.as_bytes() {
            wrote_dockerignore = true;
            let mut contents = context.dockerignore_bytes().unwrap_or_default().to_vec();
            contents.extend_from_slice(format!("\n{dockerfile_name}\n").as_bytes());
            return writer.append_bytes(DOCKERIGNORE, &contents, mode_of(entry.metadata));
        }
        writer.append_entry(&entry)
    })?;
    if let Some(path) = outside {
        let contents = std::fs::read(&path)
            .map_err(|source| ContextError::DockerfileUnreadable { path, source })?;
        writer.append_bytes(dockerfile_name, &contents, 0o600)?;
        if patch_dockerignore && !wrote_dockerignore {
            let contents = format!("{DOCKERIGNORE}\n{dockerfile_name}\n");
            writer.append_bytes(DOCKERIGNORE, contents.as_bytes(), 0o600)?;
        }
    }
    let summary = writer.summary;
    let mut out = writer.builder.into_inner().map_err(map_write_error)?;
    out.flush().map_err(map_write_error)?;
    Ok(summary)
}

struct EntryWriter<W: Write> {
    builder: tar::Builder<W>,
    summary: TarSummary,
    /// First path seen for each multiply-linked inode.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    /// Copy buffer for file contents.
    buffer: Vec<u8>,
}

impl<W: Write> EntryWriter<W> {
    fn append_entry(&mut self, entry: &WalkEntry<'_>) -> Result<(), ContextError> {
        let meta = entry.metadata;
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode_of(meta));
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        let path = relative_os(entry.relative);
        let result = match entry.kind {
            EntryKind::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                self.builder.append_data(&mut header, &path, io::empty())
            }
            EntryKind::File => {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.hard_links.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        let target = relative_os(first);
                        let result =
                            append_with_link(&mut self.builder, &mut header, &path, &target);
                        self.summary.entries += 1;
                        return result.map_err(|err| map_entry_error(err, entry.absolute));
                    }
                    self.hard_links.insert(key, entry.relative.to_vec());
                }
                let file =
                    File::open(entry.absolute).map_err(|source| ContextError::Unreadable {
                        path: entry.absolute.to_path_buf(),
                        source,
                    })?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                self.summary.content_bytes += meta.len();
                let reader = ExactReader {
                    inner: file,
                    remaining: meta.len(),
                };
                self.append_file(&mut header, &path, reader)
            }
            EntryKind::Symlink => {
                let target = std::fs::read_link(entry.absolute).map_err(|source| {
                    ContextError::Unreadable {
                        path: entry.absolute.to_path_buf(),
                        source,
                    }
                })?;
                header.set_entry_type(tar::EntryType::Symlink);
                append_with_link(&mut self.builder, &mut header, &path, target.as_os_str())
            }
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                let entry_type = match entry.kind {
                    EntryKind::Fifo => tar::EntryType::Fifo,
                    EntryKind::CharDevice => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                };
                header.set_entry_type(entry_type);
                if entry.kind != EntryKind::Fifo {
                    let rdev = meta.rdev();
                    let _ = header.set_device_major(linux_major(rdev));
                    let _ = header.set_device_minor(linux_minor(rdev));
                }
                self.builder.append_data(&mut header, &path, io::empty())
            }
        };
        self.summary.entries += 1;
        result.map_err(|err| map_entry_error(err, entry.absolute))
    }

    /// Writes a regular file's header and contents. The tar crate copies data
    /// through an 8 KiB buffer behind two dynamic calls, which made large files
    /// several times slower to send than to read; here the contents go through
    /// one large buffer straight to the output.
    fn append_file(
        &mut self,
        header: &mut tar::Header,
        path: &std::ffi::OsStr,
        mut reader: ExactReader,
    ) -> io::Result<()> {
        if header.set_path(path).is_err() {
            // A name too long for the header: the tar crate adds the GNU
            // long-name entry; such files are rare enough for its slower copy.
            return self.builder.append_data(header, path, reader);
        }
        header.set_cksum();
        let out = self.builder.get_mut();
        out.write_all(header.as_bytes())?;
        let mut written = 0u64;
        loop {
            let read = reader.read(&mut self.buffer)?;
            if read == 0 {
                break;
            }
            out.write_all(&self.buffer[..read])?;
            written += read as u64;
        }
        let partial = (written % 512) as usize;
        if partial != 0 {
            out.write_all(&[0u8; 512][..512 - partial])?;
        }
        Ok(())
    }

    fn append_bytes(&mut self, name: &str, contents: &[u8], mode: u32) -> Result<(), ContextError> {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0),
        );
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(contents.len() as u64);
        self.summary.entries += 1;
        self.summary.content_bytes += contents.len() as u64;
        self.builder
            .append_data(&mut header, name, contents)
            .map_err(|err| map_entry_error(err, Path::new(name)))
    }
}

/// Permission bits plus setuid, setgid and sticky, as Go's `FileInfoHeader` keeps.
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// Appends a link-type entry whose target is stored byte for byte: the tar crate's
/// own link helper normalises the target as a path (`./x` would become `x`), which
/// would change what the symlink points at.
fn append_with_link<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    path: &std::ffi::OsStr,
    target: &std::ffi::OsStr,
) -> io::Result<()> {
    let target = target.as_bytes();
    // The classic header holds 100 bytes of link name; longer targets go in a GNU
    // `././@LongLink` entry of type `K` just before, which Go's reader understands.
    if target.len() >= 100 {
        let mut long = tar::Header::new_gnu();
        long.set_path("././@LongLink")?;
        long.set_mode(0o644);
        long.set_entry_type(tar::EntryType::GNULongLink);
        let mut data = target.to_vec();
        data.push(0);
        long.set_size(data.len() as u64);
        long.set_cksum();
        builder.append(&long, data.as_slice())?;
        header.set_link_name_literal(&target[..99])?;
    } else {
        header.set_link_name_literal(target)?;
    }
    builder.append_data(header, path, io::empty())
}

/// Linux `major()`/`minor()` of a device number.
fn linux_major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)) as u32
}

fn linux_minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)) as u32
}

/// Marker inside an `io::Error`: the file's size changed while it was read.
#[derive(Debug)]
struct SizeChanged;

impl std::fmt::Display for SizeChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("file shrank while being read")
    }
}

impl std::error::Error for SizeChanged {}

/// Marker inside an `io::Error`: the request body was dropped.
#[derive(Debug)]
struct ReceiverGone;

impl std::fmt::Display for ReceiverGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the build context receiver went away")
    }
}

impl std::error::Error for ReceiverGone {}

fn map_entry_error(err: io::Error, path: &Path) -> ContextError {
    if err.get_ref().is_some_and(|inner| inner.is::<SizeChanged>()) {
        ContextError::ChangedWhileReading {
            path: path.to_path_buf(),
        }
    } else if err
        .get_ref()
        .is_some_and(|inner| inner.is::<ReceiverGone>())
    {
        ContextError::ReceiverGone
    } else {
        ContextError::Unreadable {
            path: path.to_path_buf(),
            source: err,
        }
    }
}

fn map_write_error(err: io::Error) -> ContextError {
    map_entry_error(err, Path::new("<tar stream>"))
}

/// Reads exactly the size announced in the tar header: a file that grew is cut
/// there (as the CLI does), one that shrank is an error rather than a corrupt tar.
struct ExactReader {
    inner: File,
    remaining: u64,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let limit = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..limit])?;
        if read == 0 {
            return Err(io::Error::other(SizeChanged));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// The `Write` end of the channel feeding the request body.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sender
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::other(ReceiverGone))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Path of every entry in a tar, for tests.
#[cfg(test)]
fn entry_names(tar_bytes: &[u8]) -> io::Result<Vec<PathBuf>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut names = Vec::new();
    for entry in archive.entries()? {
        names.push(entry?.path()?.into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    struct Entry {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        mtime: u64,
        link: Option<Vec<u8>>,
        data: Vec<u8>,
    }

    fn tar_of(root: &Path, dockerfile: Option<&Path>) -> Vec<Entry> {
        let context = BuildContext::open(root, dockerfile).unwrap();
        let name = dockerfile_name_in_tar(&context);
        let mut out = Vec::new();
        write_context_tar(&context, &name, &mut out).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            entries.push(Entry {
                path: entry.path().unwrap().to_string_lossy().into_owned(),
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                mtime: header.mtime().unwrap(),
                link: entry.link_name_bytes().map(|link| link.into_owned()),
                data,
            });
        }
        entries
    }

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries
            .iter()
            .map(|entry| entry.path.trim_end_matches('/'))
            .collect()
    }

    fn context_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, contents).unwrap();
        }
        dir
    }

    #[test]
    fn files_are_sent_with_contents_mode_and_root_owner() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("bin/run", "#!/bin/sh\n")]);
        fs::set_permissions(
            dir.path().join("bin/run"),
            fs::Permissions::from_mode(0o4751),
        )
        .unwrap();
        let entries = tar_of(dir.path(), None);
        assert_eq!(names(&entries), ["Dockerfile", "bin", "bin/run"]);
        let run = &entries[2];
        assert_eq!(run.kind, tar::EntryType::Regular);
        assert_eq!(run.mode, 0o4751);
        assert_eq!(run.uid, 0);
        assert_eq!(run.data, b"#!/bin/sh\n");
        assert_eq!(entries[1].kind, tar::EntryType::Directory);
    }

    #[test]
    fn modification_times_are_kept_to_the_second() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n")]);
        let file = File::options()
            .write(true)
            .open(dir.path().join("Dockerfile"))
            .unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 987_654_321);
        file.set_modified(when).unwrap();
        let entries = tar_of(dir.path(), None);
        assert_eq!(entries[0].mtime, 1_600_000_000);
    }

    #[test]
    fn symlinks_keep_their_target_byte_for_byte() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n")]);
        symlink("./Dockerfile", dir.path().join("rel")).unwrap();
        symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        symlink("self", dir.path().join("self")).unwrap();
        let long_target = "x/".repeat(80);
        symlink(&long_target, dir.path().join("long")).unwrap();
        let entries = tar_of(dir.path(), None);
        let link = |name: &str| {
            let entry = entries.iter().find(|entry| entry.path == name).unwrap();
            assert_eq!(entry.kind, tar::EntryType::Symlink);
            String::from_utf8(entry.link.clone().unwrap()).unwrap()
        };
        assert_eq!(link("rel"), "./Dockerfile");
        assert_eq!(link("abs"), "/etc/passwd");
        assert_eq!(link("self"), "self");
        assert_eq!(link("long"), long_target);
    }

    #[test]
    fn hard_links_point_at_the_first_path() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("a", "same")]);
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let entries = tar_of(dir.path(), None);
        let b = entries.iter().find(|entry| entry.path == "b").unwrap();
        assert_eq!(b.kind, tar::EntryType::Link);
        assert_eq!(b.link.as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn long_paths_survive() {
        let deep = format!("{}/file", "directory".repeat(20));
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), (deep.as_str(), "x")]);
        let entries = tar_of(dir.path(), None);
        assert!(entries.iter().any(|entry| entry.path == deep));
    }

    #[test]
    fn ignored_files_are_not_sent_but_dockerfile_and_dockerignore_are() {
        let dir = context_with(&[
            ("Dockerfile", "FROM scratch\n"),
            (".dockerignore", "*\n!src\n"),
            ("secret.env", "x"),
            ("src/main.rs", "fn main() {}"),
        ]);
        let classic = tar_of(dir.path(), None);
        assert_eq!(
            names(&classic),
            [".dockerignore", "Dockerfile", "src", "src/main.rs"]
        );
    }

    #[test]
    fn a_dockerfile_outside_the_context_is_added_and_hidden_from_the_classic_builder() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        fs::write(dir.path().join("ctx/app"), "x").unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let entries = tar_of(&dir.path().join("ctx"), Some(Path::new("../Dockerfile")));
        let generated = entries
            .iter()
            .find(|entry| entry.path.starts_with(".dockerfile."))
            .unwrap();
        assert_eq!(generated.data, b"FROM scratch\n");
        let ignore = entries
            .iter()
            .find(|entry| entry.path == ".dockerignore")
            .unwrap();
        let ignore = String::from_utf8(ignore.data.clone()).unwrap();
        assert!(ignore.contains(&generated.path));
    }

    #[test]
    fn a_fifo_is_sent_as_a_header_without_blocking() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n")]);
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let entries = tar_of(dir.path(), None);
        let pipe = entries.iter().find(|entry| entry.path == "pipe").unwrap();
        assert_eq!(pipe.kind, tar::EntryType::Fifo);
    }

    #[test]
    fn a_file_that_shrinks_while_sent_is_an_error_not_a_corrupt_tar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "0123456789").unwrap();
        let mut reader = ExactReader {
            inner: File::open(&path).unwrap(),
            remaining: 20,
        };
        let mut sink = Vec::new();
        let err = io::copy(&mut reader, &mut sink).unwrap_err();
        assert!(matches!(
            map_entry_error(err, &path),
            ContextError::ChangedWhileReading { .. }
        ));
    }

    #[tokio::test]
    async fn the_stream_carries_the_whole_tar_through_a_bounded_channel() {
        use futures::StreamExt;
        let big = "y".repeat(3 * CHUNK_SIZE + 17);
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("big", big.as_str())]);
        let context = BuildContext::open(dir.path(), None).unwrap();
        let mut tar = start_context_tar(&context);
        let mut bytes = Vec::new();
        while let Some(chunk) = tar.body.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let summary = tar.producer.await.unwrap().unwrap();
        assert_eq!(summary.entries, 2);
        assert_eq!(entry_names(&bytes).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn dropping_the_body_stops_the_walk() {
        let big = "z".repeat(4 * CHUNK_SIZE * CHANNEL_CHUNKS);
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("big", big.as_str())]);
        let context = BuildContext::open(dir.path(), None).unwrap();
        let tar = start_context_tar(&context);
        drop(tar.body);
        let result = tar.producer.await.unwrap();
        assert!(matches!(result, Err(ContextError::ReceiverGone)));
    }
}
