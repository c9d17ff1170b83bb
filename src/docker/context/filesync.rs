//! The build context served over the BuildKit session, the way the docker CLI
//! serves it: the daemon pulls files instead of receiving a tar.
//!
//! With `remote=client-session` the daemon asks the session for two directories,
//! `context` and `dockerfile` (the Dockerfile's own directory), through fsutil's
//! `DiffCopy` stream, passing the filters of each read in gRPC metadata
//! (`exclude-patterns` from `.dockerignore`, `include-patterns`, `followpaths`).
//! The sender walks the directory and sends one `STAT` packet per entry, then an
//! empty `STAT`; the daemon compares the stats with the copy it kept from the
//! previous build under the session's shared key and requests (`REQ`, by the
//! entry's index in the walk) only the files that changed; each is answered with
//! `DATA` packets and an empty `DATA`; `FIN` ends the exchange. An unchanged
//! context therefore costs a walk and a few kilobytes of stats, not a re-send of
//! every byte: this is why a cached `docker build` is fast, and why shipit does
//! the same.
//!
//! The walk and its filters follow the CLI's fsutil (the version vendored by
//! docker 20.10): an excluded directory that an exception may reach into is sent
//! itself and walked; uid and gid are reset to 0 for the context (the CLI's
//! `resetUIDAndGID`) and kept for the Dockerfile's directory; hard links after
//! the first become links to it.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bollard::fsutil::types::{Packet, Stat, packet::PacketType};
use bollard::moby::filesync::v1::file_sync_server::FileSync;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::ContextError;
use super::dockerignore::PatternMatcher;
use super::walk::{EntryFilter, EntryKind, Verdict, WalkEntry, walk_filtered};
use crate::go_path::clean_within;

/// Bytes per `DATA` packet; well under gRPC's 4 MiB message limit.
const DATA_CHUNK: usize = 64 * 1024;
/// Files read and sent at once (fsutil uses four).
const FILE_SENDERS: usize = 4;
/// Packets queued for the daemon; bounds memory to about this many chunks.
const QUEUED_PACKETS: usize = 64;
/// Symlink hops followed for one `followpaths` entry before giving up on it.
const MAX_LINK_HOPS: usize = 255;

/// The directories a build may read: the context and the Dockerfile's directory.
#[derive(Debug, Clone)]
pub(crate) struct SyncedDirs {
    pub(crate) context: PathBuf,
    pub(crate) dockerfile_dir: PathBuf,
}

/// The first problem met while serving the context, kept for the build's error:
/// the daemon only sees "the sender failed", the user should see which file.
#[derive(Clone, Default)]
pub(crate) struct SyncFailure(Arc<Mutex<Option<ContextError>>>);

impl SyncFailure {
    fn record(&self, err: ContextError) {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(err);
        }
    }

    pub(crate) fn take(&self) -> Option<ContextError> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// The `moby.filesync.v1.FileSync` service of the session.
pub(crate) struct FileSyncService {
    dirs: SyncedDirs,
    failure: SyncFailure,
}

impl FileSyncService {
    pub(crate) fn new(dirs: SyncedDirs, failure: SyncFailure) -> Self {
        FileSyncService { dirs, failure }
    }
}

type PacketStream = Pin<Box<dyn futures::Stream<Item = Result<Packet, Status>> + Send>>;

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = PacketStream;
    type TarStreamStream = PacketStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<PacketStream>, Status> {
        let values = |key: &str| -> Option<Vec<String>> {
            let found: Vec<String> = request
                .metadata()
                .get_all(key)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            (!found.is_empty()).then_some(found)
        };
        let dir_name = values("dir-name")
            .and_then(|names| names.into_iter().next())
            .unwrap_or_default();
        let (root, reset_owner) = match dir_name.as_str() {
            "context" => (self.dirs.context.clone(), true),
            "dockerfile" => (self.dirs.dockerfile_dir.clone(), false),
            other => {
                return Err(Status::not_found(format!(
                    "no access allowed to dir {other:?}"
                )));
            }
        };
        let filter = SyncFilter::new(
            &root,
            values("include-patterns"),
            &values("exclude-patterns").unwrap_or_default(),
            values("followpaths"),
        )
        .map_err(|err| Status::invalid_argument(err.to_string()))?;

        let (sender, mut receiver) = mpsc::channel(QUEUED_PACKETS);
        let incoming = request.into_inner();
        tokio::spawn(serve_dir(
            root,
            reset_owner,
            filter,
            incoming,
            sender,
            self.failure.clone(),
        ));
        let outgoing = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        Ok(Response::new(Box::pin(outgoing)))
    }

    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> Result<Response<PacketStream>, Status> {
        // Not announced in the session's methods, so the daemon never asks.
        Err(Status::unimplemented(
            "shipit serves build contexts through DiffCopy only",
        ))
    }
}

type Outgoing = mpsc::Sender<Result<Packet, Status>>;

/// One `DiffCopy` exchange: the walk sends stats while requests for file
/// contents are answered as they come.
async fn serve_dir(
    root: PathBuf,
    reset_owner: bool,
    mut filter: SyncFilter,
    mut incoming: Streaming<Packet>,
    outgoing: Outgoing,
    failure: SyncFailure,
) {
    let requestable: Arc<Mutex<HashMap<u32, PathBuf>>> = Arc::default();
    let walk = {
        let requestable = requestable.clone();
        let outgoing = outgoing.clone();
        tokio::task::spawn_blocking(move || {
            send_stats(&root, reset_owner, &mut filter, &requestable, &outgoing)
        })
    };
    let walk_failure = {
        let failure = failure.clone();
        let outgoing = outgoing.clone();
        async move {
            match walk.await {
                Ok(Ok(())) | Ok(Err(ContextError::ReceiverGone)) => {}
                Ok(Err(err)) => {
                    let _ = outgoing.send(Ok(error_packet(&err.to_string()))).await;
                    failure.record(err);
                }
                Err(_) => failure.record(ContextError::ReceiverGone),
            }
        }
    };
    let walk_task = tokio::spawn(walk_failure);

    // Requests are taken off the connection as soon as they arrive and queued
    // for the file senders: h2 closes a connection whose peer's small frames
    // (one per request) pile up unread, so the loop must never wait on a sender.
    let (requests, queue) = std::sync::mpsc::channel::<(u32, PathBuf)>();
    let queue = Arc::new(Mutex::new(queue));
    for _ in 0..FILE_SENDERS {
        let queue = queue.clone();
        let outgoing = outgoing.clone();
        let failure = failure.clone();
        tokio::task::spawn_blocking(move || send_requested_files(&queue, &outgoing, &failure));
    }
    loop {
        let packet = match incoming.message().await {
            Ok(Some(packet)) => packet,
            // The daemon hung up: the build ended or was cancelled.
            Ok(None) | Err(_) => break,
        };
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::PacketReq) => {
                let path = requestable
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(&packet.id);
                let Some(path) = path else {
                    let _ = outgoing
                        .send(Ok(error_packet(&format!("invalid file id {}", packet.id))))
                        .await;
                    break;
                };
                if requests.send((packet.id, path)).is_err() {
                    break;
                }
            }
            Ok(PacketType::PacketFin) => {
                // The daemon has every file it asked for; acknowledge and end.
                let _ = outgoing
                    .send(Ok(Packet {
                        r#type: PacketType::PacketFin as i32,
                        ..Packet::default()
                    }))
                    .await;
                break;
            }
            Ok(PacketType::PacketErr) => {
                // The daemon's side failed; its build error says why.
                break;
            }
            _ => {}
        }
    }
    walk_task.abort();
}

/// One file sender: answers queued requests until the queue closes or the
/// daemon stops listening.
fn send_requested_files(
    queue: &Mutex<std::sync::mpsc::Receiver<(u32, PathBuf)>>,
    outgoing: &Outgoing,
    failure: &SyncFailure,
) {
    loop {
        let next = queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        let Ok((id, path)) = next else {
            return;
        };
        match send_file(&path, id, outgoing) {
            Ok(()) => {}
            Err(ContextError::ReceiverGone) => return,
            Err(err) => {
                let _ = outgoing.blocking_send(Ok(error_packet(&err.to_string())));
                failure.record(err);
                return;
            }
        }
    }
}

fn error_packet(message: &str) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: message.as_bytes().to_vec(),
        ..Packet::default()
    }
}

/// Walks the directory and sends one `STAT` per entry, then the empty `STAT`
/// that ends the listing. Regular files become requestable by their index.
fn send_stats(
    root: &Path,
    reset_owner: bool,
    filter: &mut SyncFilter,
    requestable: &Mutex<HashMap<u32, PathBuf>>,
    outgoing: &Outgoing,
) -> Result<(), ContextError> {
    let mut index: u32 = 0;
    let mut first_link_of: HashMap<(u64, u64), String> = HashMap::new();
    walk_filtered(root, filter, &mut |entry| {
        let stat = stat_of(&entry, reset_owner, &mut first_link_of)?;
        if entry.kind == EntryKind::File {
            requestable
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(index, entry.absolute.to_path_buf());
        }
        index = index.wrapping_add(1);
        let packet = Packet {
            r#type: PacketType::PacketStat as i32,
            stat: Some(stat),
            ..Packet::default()
        };
        outgoing
            .blocking_send(Ok(packet))
            .map_err(|_| ContextError::ReceiverGone)
    })?;
    outgoing
        .blocking_send(Ok(Packet {
            r#type: PacketType::PacketStat as i32,
            ..Packet::default()
        }))
        .map_err(|_| ContextError::ReceiverGone)
}

/// Sends a file's contents as `DATA` packets followed by an empty one.
fn send_file(path: &Path, id: u32, outgoing: &Outgoing) -> Result<(), ContextError> {
    let unreadable = |source| ContextError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    loop {
        let mut chunk = vec![0u8; DATA_CHUNK];
        let read = match file.read(&mut chunk) {
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(unreadable(err)),
        };
        chunk.truncate(read);
        let packet = Packet {
            r#type: PacketType::PacketData as i32,
            id,
            data: chunk,
            ..Packet::default()
        };
        outgoing
            .blocking_send(Ok(packet))
            .map_err(|_| ContextError::ReceiverGone)?;
        if read == 0 {
            return Ok(());
        }
    }
}

/// fsutil's `Stat` for one entry.
fn stat_of(
    entry: &WalkEntry<'_>,
    reset_owner: bool,
    first_link_of: &mut HashMap<(u64, u64), String>,
) -> Result<Stat, ContextError> {
    let meta = entry.metadata;
    let path = String::from_utf8_lossy(entry.relative).into_owned();
    let mut stat = Stat {
        path: path.clone(),
        mode: go_file_mode(meta.mode()),
        uid: if reset_owner { 0 } else { meta.uid() },
        gid: if reset_owner { 0 } else { meta.gid() },
        mod_time: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ..Stat::default()
    };
    if entry.kind == EntryKind::Directory {
        return Ok(stat);
    }
    stat.size = i64::try_from(meta.size()).unwrap_or(i64::MAX);
    if matches!(entry.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        let (major, minor) = device_numbers(meta.rdev());
        stat.devmajor = major as i64;
        stat.devminor = minor as i64;
    }
    if entry.kind == EntryKind::Symlink {
        let target =
            std::fs::read_link(entry.absolute).map_err(|source| ContextError::Unreadable {
                path: entry.absolute.to_path_buf(),
                source,
            })?;
        stat.linkname = String::from_utf8_lossy(target.as_os_str().as_bytes()).into_owned();
    } else if meta.nlink() > 1 {
        match first_link_of.get(&(meta.dev(), meta.ino())) {
            Some(first) => {
                stat.linkname = first.clone();
                stat.size = 0;
            }
            None => {
                first_link_of.insert((meta.dev(), meta.ino()), path);
            }
        }
    }
    Ok(stat)
}

/// A Unix `st_mode` as Go's `os.FileMode`, which is what fsutil puts on the wire.
pub(crate) fn go_file_mode(mode: u32) -> u32 {
    const MODE_DIR: u32 = 1 << 31;
    const MODE_SYMLINK: u32 = 1 << 27;
    const MODE_DEVICE: u32 = 1 << 26;
    const MODE_NAMED_PIPE: u32 = 1 << 25;
    const MODE_SOCKET: u32 = 1 << 24;
    const MODE_SETUID: u32 = 1 << 23;
    const MODE_SETGID: u32 = 1 << 22;
    const MODE_CHAR_DEVICE: u32 = 1 << 21;
    const MODE_STICKY: u32 = 1 << 20;
    let mut go = mode & 0o777;
    go |= match mode & 0o170000 {
        0o040000 => MODE_DIR,
        0o120000 => MODE_SYMLINK,
        0o010000 => MODE_NAMED_PIPE,
        0o140000 => MODE_SOCKET,
        0o020000 => MODE_DEVICE | MODE_CHAR_DEVICE,
        0o060000 => MODE_DEVICE,
        _ => 0,
    };
    if mode & 0o4000 != 0 {
        go |= MODE_SETUID;
    }
    if mode & 0o2000 != 0 {
        go |= MODE_SETGID;
    }
    if mode & 0o1000 != 0 {
        go |= MODE_STICKY;
    }
    go
}

/// Linux's encoding of `st_rdev` (glibc's `major`/`minor`).
fn device_numbers(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// The filters of one `DiffCopy` read, applied as fsutil's walker applies them.
pub(crate) struct SyncFilter {
    /// `None` sends everything; otherwise an entry must match one of these
    /// (a directory also when it is a prefix of one).
    includes: Option<Vec<String>>,
    excludes: PatternMatcher,
    /// A directory an include pattern matched whole: everything below is in.
    last_included_dir: Option<Vec<u8>>,
}

impl SyncFilter {
    pub(crate) fn new(
        root: &Path,
        includes: Option<Vec<String>>,
        excludes: &[String],
        follow_paths: Option<Vec<String>>,
    ) -> Result<Self, super::PatternError> {
        let mut includes = includes.map(|patterns| {
            patterns
                .iter()
                .map(|pattern| clean_relative(pattern))
                .collect::<Vec<_>>()
        });
        if let Some(follow_paths) = follow_paths
            && let Some(targets) = follow_links(root, &follow_paths)
        {
            let mut all = includes.unwrap_or_default();
            all.extend(targets);
            all.sort();
            includes = dedupe_paths(all);
        }
        Ok(SyncFilter {
            includes,
            excludes: PatternMatcher::new(excludes)?,
            last_included_dir: None,
        })
    }
}

impl EntryFilter for SyncFilter {
    fn verdict(&mut self, relative: &[u8], is_dir: bool) -> Verdict {
        if let Some(includes) = &self.includes {
            let below_included_dir = self.last_included_dir.as_deref().is_some_and(|dir| {
                relative.len() > dir.len()
                    && relative.starts_with(dir)
                    && relative[dir.len()] == b'/'
            });
            if !below_included_dir {
                let name = String::from_utf8_lossy(relative);
                let mut matched = false;
                let mut partial = true;
                for pattern in includes {
                    if let Some(is_partial) = match_prefix(pattern, &name) {
                        matched = true;
                        if !is_partial {
                            partial = false;
                            break;
                        }
                    }
                }
                if !matched {
                    return Verdict::Skip;
                }
                if !partial && is_dir {
                    self.last_included_dir = Some(relative.to_vec());
                }
            }
        }
        if self.excludes.matches(relative) {
            // fsutil sends an excluded directory itself when an exception may
            // bring back something below it (the tar writer does not).
            return if is_dir && self.excludes.may_reinclude_below(relative) {
                Verdict::Send
            } else {
                Verdict::Skip
            };
        }
        Verdict::Send
    }
}

/// A path cleaned as if rooted at the context (Go's `filepath.Clean` of
/// `/` + path, so `..` cannot climb out), then made relative again; `.` for the
/// root itself.
fn clean_relative(path: &str) -> String {
    match clean_within(path) {
        root if root.is_empty() => ".".to_string(),
        relative => relative,
    }
}

/// fsutil's `matchPrefix`: whether `name` matches `pattern` or, when the
/// pattern is deeper than the name, the pattern's leading components (then the
/// match is partial: `Some(true)`).
fn match_prefix(pattern: &str, name: &str) -> Option<bool> {
    let depth = name.matches('/').count();
    let (pattern, partial) = if pattern.matches('/').count() > depth {
        let cut = pattern
            .match_indices('/')
            .nth(depth)
            .map_or(pattern.len(), |(at, _)| at);
        (&pattern[..cut], true)
    } else {
        (pattern, false)
    };
    go_path_match(pattern, name).then_some(partial)
}

/// Go's `filepath.Match`: `*` and `?` stop at `/`, `[…]` classes with `^`
/// negation and ranges, `\` escapes. A malformed pattern matches nothing.
pub(crate) fn go_path_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name).unwrap_or(false)
}

/// `None` for a malformed pattern.
fn match_from(pattern: &[char], name: &[char]) -> Option<bool> {
    let Some((&first, rest)) = pattern.split_first() else {
        return Some(name.is_empty());
    };
    match first {
        '*' => {
            let mut rest = rest;
            while rest.first() == Some(&'*') {
                rest = &rest[1..];
            }
            for skip in 0..=name.len() {
                if skip > 0 && name[skip - 1] == '/' {
                    break;
                }
                if match_from(rest, &name[skip..])? {
                    return Some(true);
                }
            }
            Some(false)
        }
        '?' => match name.split_first() {
            Some((&c, tail)) if c != '/' => match_from(rest, tail),
            _ => Some(false),
        },
        '[' => {
            let (class_matches, after) = match_class(rest, name.first().copied())?;
            if class_matches {
                match_from(after, &name[1..])
            } else {
                Some(false)
            }
        }
        '\\' => {
            let (&escaped, after) = rest.split_first()?;
            match name.split_first() {
                Some((&c, tail)) if c == escaped => match_from(after, tail),
                _ => Some(false),
            }
        }
        literal => match name.split_first() {
            Some((&c, tail)) if c == literal => match_from(rest, tail),
            _ => Some(false),
        },
    }
}

/// Matches one character against the class starting after `[`; returns whether
/// it matched and the pattern after `]`. `None` when the class is malformed.
fn match_class(class: &[char], c: Option<char>) -> Option<(bool, &[char])> {
    let mut rest = class;
    let negated = rest.first() == Some(&'^');
    if negated {
        rest = &rest[1..];
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        let (&next, _) = rest.split_first()?;
        if next == ']' && ranges > 0 {
            rest = &rest[1..];
            break;
        }
        let (low, after) = class_char(rest)?;
        rest = after;
        let mut high = low;
        if rest.first() == Some(&'-') {
            let (end, after) = class_char(&rest[1..])?;
            high = end;
            rest = after;
        }
        if let Some(c) = c
            && low <= c
            && c <= high
        {
            matched = true;
        }
        ranges += 1;
    }
    // An empty name matches no class, negated or not.
    Some((c.is_some() && matched != negated, rest))
}

fn class_char(pattern: &[char]) -> Option<(char, &[char])> {
    match pattern {
        ['\\', escaped, rest @ ..] => Some((*escaped, rest)),
        [']' | '-', ..] | [] => None,
        [c, rest @ ..] => Some((*c, rest)),
    }
}

/// fsutil's `FollowLinks`: the `followpaths` with every symlink on the way
/// resolved inside `root`, so that the daemon gets both the links and what they
/// point to. `None` when one of them is the root itself (no filter at all).
fn follow_links(root: &Path, paths: &[String]) -> Option<Vec<String>> {
    let mut resolved = BTreeSet::new();
    for path in paths {
        resolve_path(root, &clean_relative(path), &mut resolved, 0);
    }
    dedupe_paths(resolved.into_iter().collect())
}

fn resolve_path(root: &Path, path: &str, resolved: &mut BTreeSet<String>, hops: usize) {
    if hops > MAX_LINK_HOPS {
        return;
    }
    let mut current = String::new();
    let mut remaining = path;
    loop {
        let (part, rest) = match remaining.split_once('/') {
            Some((part, rest)) => (part, rest),
            None => (remaining, ""),
        };
        current = if current.is_empty() || current == "." {
            part.to_string()
        } else {
            format!("{current}/{part}")
        };
        remaining = rest;
        let targets = symlink_targets(root, &current, true);
        if (remaining.is_empty() || !targets.is_empty()) && resolved.contains(&current) {
            return;
        }
        if !targets.is_empty() {
            resolved.insert(current.clone());
            for target in targets {
                let next = if remaining.is_empty() {
                    target
                } else {
                    format!("{target}/{remaining}")
                };
                resolve_path(root, &clean_relative(&next), resolved, hops + 1);
            }
            return;
        }
        if remaining.is_empty() {
            resolved.insert(current);
            return;
        }
    }
}

/// Where the symlink at `relative` points, as paths relative to `root` (an
/// absolute target is taken inside the root, as the daemon would resolve it).
/// A last component with wildcards stands for every matching entry.
fn symlink_targets(root: &Path, relative: &str, allow_wildcard: bool) -> Vec<String> {
    let (parent, base) = match relative.rsplit_once('/') {
        Some((parent, base)) => (parent, base),
        None => (".", relative),
    };
    if allow_wildcard && base.contains(['*', '?', '[', '\\']) {
        let Ok(entries) = std::fs::read_dir(root.join(parent)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| go_path_match(base, name))
            .collect();
        names.sort();
        return names
            .into_iter()
            .flat_map(|name| {
                let path = if parent == "." {
                    name
                } else {
                    format!("{parent}/{name}")
                };
                symlink_targets(root, &path, false)
            })
            .collect();
    }
    let link = root.join(relative);
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {}
        _ => return Vec::new(),
    }
    let Ok(target) = std::fs::read_link(&link) else {
        return Vec::new();
    };
    let target = target.to_string_lossy().into_owned();
    if target.starts_with('/') || parent == "." {
        vec![clean_relative(&target)]
    } else {
        vec![clean_relative(&format!("{parent}/{target}"))]
    }
}

/// fsutil's `dedupePaths` over sorted paths: drops paths below one already
/// kept; `None` when the root itself is among them.
fn dedupe_paths(sorted: Vec<String>) -> Option<Vec<String>> {
    let mut kept: Vec<String> = Vec::new();
    for path in sorted {
        if path == "." {
            return None;
        }
        if let Some(last) = kept.last()
            && path.len() > last.len()
            && path.starts_with(last.as_str())
            && path.as_bytes()[last.len()] == b'/'
        {
            continue;
        }
        kept.push(path);
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::super::walk::tests::tree;
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn sent(root: &Path, mut filter: SyncFilter) -> Vec<String> {
        let mut seen = Vec::new();
        walk_filtered(root, &mut filter, &mut |entry| {
            seen.push(String::from_utf8_lossy(entry.relative).into_owned());
            Ok(())
        })
        .unwrap();
        seen
    }

    fn filter(root: &Path, includes: &[&str], excludes: &[&str], follow: &[&str]) -> SyncFilter {
        let list = |items: &[&str]| {
            (!items.is_empty()).then(|| items.iter().map(|s| s.to_string()).collect())
        };
        let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        SyncFilter::new(root, list(includes), &excludes, list(follow)).unwrap()
    }

    #[test]
    fn go_match_follows_filepath_match() {
        assert!(go_path_match("*.md", "README.md"));
        assert!(!go_path_match("*.md", "docs/README.md"));
        assert!(go_path_match("docs/*", "docs/a"));
        assert!(go_path_match("a?c", "abc"));
        assert!(!go_path_match("a?c", "a/c"));
        assert!(go_path_match("[a-c]x", "bx"));
        assert!(!go_path_match("[^a-c]x", "bx"));
        assert!(go_path_match("[^a-c]x", "dx"));
        assert!(go_path_match("weird\\[1\\]", "weird[1]"));
        assert!(go_path_match("Dockerfile", "Dockerfile"));
        assert!(!go_path_match("Dockerfile", "Dockerfile.dockerignore"));
        // Malformed patterns match nothing, as Go reports ErrBadPattern.
        assert!(!go_path_match("[", "["));
        assert!(!go_path_match("a\\", "a"));
    }

    #[test]
    fn relative_cleaning_stays_inside_the_root() {
        for (input, expected) in [
            ("./Dockerfile", "Dockerfile"),
            ("/a//b/", "a/b"),
            ("../../x", "x"),
            ("a/../..", "."),
            ("", "."),
        ] {
            assert_eq!(clean_relative(input), expected, "clean_relative({input:?})");
        }
    }

    #[test]
    fn match_prefix_is_partial_for_parents_of_a_deeper_pattern() {
        assert_eq!(match_prefix("a/b/c", "a"), Some(true));
        assert_eq!(match_prefix("a/b/c", "a/b"), Some(true));
        assert_eq!(match_prefix("a/b/c", "a/b/c"), Some(false));
        assert_eq!(match_prefix("a/b/c", "x"), None);
        assert_eq!(match_prefix("a", "a/b"), None);
    }

    #[test]
    fn modes_are_go_file_modes() {
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(go_file_mode(0o041777), (1 << 31) | (1 << 20) | 0o777);
        assert_eq!(go_file_mode(0o020666), (1 << 26) | (1 << 21) | 0o666);
        assert_eq!(go_file_mode(0o010644), (1 << 25) | 0o644);
    }

    #[test]
    fn device_numbers_decode_linux_rdev() {
        // /dev/null is 1:3, /dev/sda1 8:1, and a large minor is split in two.
        assert_eq!(device_numbers(0x103), (1, 3));
        assert_eq!(device_numbers(0x801), (8, 1));
        assert_eq!(device_numbers(0x0010_0103), (1, 0x103));
    }

    #[test]
    fn without_filters_everything_is_sent_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["b", "a/x", "a.txt"]);
        assert_eq!(
            sent(dir.path(), filter(dir.path(), &[], &[], &[])),
            ["a", "a/x", "a.txt", "b"]
        );
    }

    #[test]
    fn includes_send_parents_and_whole_matched_directories() {
        let dir = tempfile::tempdir().unwrap();
        tree(
            dir.path(),
            &["a/b/c", "a/b/d", "a/z", "keep/1", "keep/2/3", "other"],
        );
        assert_eq!(
            sent(dir.path(), filter(dir.path(), &["a/b/c", "keep"], &[], &[])),
            ["a", "a/b", "a/b/c", "keep", "keep/1", "keep/2", "keep/2/3"]
        );
    }

    #[test]
    fn an_excluded_directory_with_an_exception_below_is_sent_itself() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["docs/a.md", "docs/keep.md", "src/x"]);
        assert_eq!(
            sent(
                dir.path(),
                filter(dir.path(), &[], &["docs", "!docs/keep.md"], &[])
            ),
            ["docs", "docs/keep.md", "src", "src/x"]
        );
        assert_eq!(
            sent(dir.path(), filter(dir.path(), &[], &["docs"], &[])),
            ["src", "src/x"]
        );
    }

    #[test]
    fn follow_paths_bring_symlink_targets_along() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["real/Dockerfile", "other"]);
        symlink("real/Dockerfile", dir.path().join("Dockerfile")).unwrap();
        assert_eq!(
            sent(dir.path(), filter(dir.path(), &[], &[], &["Dockerfile"])),
            ["Dockerfile", "real", "real/Dockerfile"]
        );
        // A missing follow path is no error and selects nothing.
        assert!(sent(dir.path(), filter(dir.path(), &[], &[], &[".dockerignore"])).is_empty());
    }

    #[test]
    fn follow_paths_survive_symlink_loops() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let targets = follow_links(dir.path(), &["a".to_string()]).unwrap();
        assert_eq!(targets, ["a", "b"]);
    }

    #[test]
    fn the_root_as_a_follow_path_lifts_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(follow_links(dir.path(), &[".".to_string()]), None);
        assert_eq!(
            dedupe_paths(vec!["a".into(), "a/b".into(), "ab".into()]),
            Some(vec!["a".to_string(), "ab".to_string()])
        );
    }

    #[test]
    fn hard_links_after_the_first_point_to_it() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["a"]);
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let mut stats = Vec::new();
        let mut links = HashMap::new();
        walk_filtered(
            dir.path(),
            &mut filter(dir.path(), &[], &[], &[]),
            &mut |entry| {
                stats.push(stat_of(&entry, true, &mut links)?);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(stats[0].linkname, "");
        assert_eq!(stats[0].size, 1);
        assert_eq!(stats[1].linkname, "a");
        assert_eq!(stats[1].size, 0);
        assert_eq!((stats[0].uid, stats[0].gid), (0, 0));
    }
}
