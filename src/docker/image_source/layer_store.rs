//! Reading an image's layers straight from the Docker daemon's layer store, the way
//! `docker push` itself does, instead of through the Engine API's whole-image export.
//!
//! Why: the export (`GET /images/{name}/get`) always holds every layer, and Docker ≤ 24 writes
//! all of it to a temporary directory before sending the first byte, about a second per
//! 100 MB. A push whose base layers the registry already has then spends seconds exporting
//! bytes it throws away. The daemon does not keep layer tars: it keeps each layer's files
//! (`overlay2/<cache-id>/diff`) and a *tar-split* record (`tar-split.json.gz`: every tar header
//! and padding byte, and the name and size of every file's content), from which it rebuilds the
//! exact tar, byte for byte, when it pushes. This module does the same rebuild.
//!
//! It is only a faster road to the same bytes: every rebuilt layer is hashed and must equal its
//! diff id from the image config (whose own digest is the image id) before anything built from
//! it is uploaded, so a store that was changed underneath, or one this code misreads, can cost
//! a fallback to the export but never a wrong push. It needs the daemon's data root on this
//! machine and readable (a local daemon, shipit as root or rootless Docker), a graph driver that
//! keeps layer diffs as directories (overlay2, fuse-overlayfs, vfs), and not the containerd
//! image store; anything else uses the export.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::digest::{sha256_digest, sha256_hex};

/// A graph driver whose layer content this module can read, and where it keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreDriver {
    /// `<root>/overlay2/<cache-id>/diff`: the layer's own files (whiteouts as 0/0 devices).
    Overlay2,
    /// The same layout under `fuse-overlayfs/` (rootless Docker on older kernels).
    FuseOverlayfs,
    /// `<root>/vfs/dir/<cache-id>`: the whole filesystem as of the layer. The tar-split names
    /// only the layer's own files, whose content there is the layer's.
    Vfs,
}

impl StoreDriver {
    /// The driver named by `docker info`'s `Driver`, when its layers can be read.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "overlay2" => Some(StoreDriver::Overlay2),
            "fuse-overlayfs" => Some(StoreDriver::FuseOverlayfs),
            "vfs" => Some(StoreDriver::Vfs),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StoreDriver::Overlay2 => "overlay2",
            StoreDriver::FuseOverlayfs => "fuse-overlayfs",
            StoreDriver::Vfs => "vfs",
        }
    }

    fn content_dir(self, root: &Path, cache_id: &str) -> PathBuf {
        match self {
            StoreDriver::Overlay2 | StoreDriver::FuseOverlayfs => {
                root.join(self.name()).join(cache_id).join("diff")
            }
            StoreDriver::Vfs => root.join("vfs").join("dir").join(cache_id),
        }
    }
}

/// Why the layer store cannot serve this image; a push then reads the export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(pub String);

/// What `docker info` says about the daemon's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DaemonStorage {
    /// `DockerRootDir`.
    pub root_dir: Option<String>,
    /// `Driver`.
    pub driver: Option<String>,
    /// `DriverStatus`, pairs such as `["driver-type", "io.containerd.snapshotter.v1"]`.
    pub driver_status: Vec<Vec<String>>,
}

/// The one decision whether a daemon's storage is a layer store this module reads. Pure.
pub(crate) fn choose_store(storage: &DaemonStorage) -> Result<(PathBuf, StoreDriver), Unavailable> {
    let uses_snapshotter = storage.driver_status.iter().any(|pair| {
        pair.first().is_some_and(|key| key == "driver-type")
            && pair
                .get(1)
                .is_some_and(|value| value.contains("snapshotter"))
    });
    if uses_snapshotter {
        return Err(Unavailable(
            "the daemon keeps images in the containerd image store".into(),
        ));
    }
    let driver_name = storage.driver.as_deref().unwrap_or("");
    let driver = StoreDriver::from_name(driver_name).ok_or_else(|| {
        Unavailable(format!(
            "the daemon's storage driver {driver_name:?} keeps no layer directories shipit reads"
        ))
    })?;
    let root = storage
        .root_dir
        .as_deref()
        .filter(|root| root.starts_with('/'))
        .ok_or_else(|| Unavailable("the daemon did not say where its data root is".into()))?;
    Ok((PathBuf::from(root), driver))
}

/// The store as an image's `GraphDriver` shows it, which saves asking `docker info` (tens of
/// milliseconds, a fifth of a warm push): overlay drivers name the top layer's `UpperDir`,
/// `<root>/<driver>/<cache id>/diff`. None when the data does not have that shape. Pure.
pub(crate) fn store_from_graph_driver(
    name: &str,
    upper_dir: Option<&str>,
) -> Option<(PathBuf, StoreDriver)> {
    let driver = StoreDriver::from_name(name)?;
    if driver == StoreDriver::Vfs {
        return None;
    }
    let upper = Path::new(upper_dir?);
    if !upper.is_absolute() || upper.file_name()? != "diff" {
        return None;
    }
    let driver_dir = upper.parent()?.parent()?;
    if driver_dir.file_name()? != driver.name() {
        return None;
    }
    Some((driver_dir.parent()?.to_path_buf(), driver))
}

/// Chain ids of a layer stack: the first layer's is its diff id, each next one is the digest
/// of `<parent chain id> <diff id>`. The layer store is keyed by them.
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// One layer as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredLayer {
    pub diff_id: String,
    /// Bytes of file content the store records for the layer (its tar is a little larger).
    pub content_size: u64,
    /// The tar-split record of the layer's tar.
    tar_split: PathBuf,
    /// Where the layer's file content is read from.
    content_dir: PathBuf,
}

/// An image found in a layer store: its config as the daemon stored it and its layers in order.
#[derive(Debug, Clone)]
pub(crate) struct StoredImage {
    /// The config blob; its digest is the image id.
    pub config: Vec<u8>,
    pub layers: Vec<StoredLayer>,
    /// `<root> (<driver>)`, for progress lines.
    pub description: String,
}

/// Finds the image `image_id` with layers `diff_ids` in the store at `root`. Reads only small
/// metadata files; any one missing or disagreeing makes the store unavailable for this image.
pub(crate) fn find_image(
    root: &Path,
    driver: StoreDriver,
    image_id: &str,
    diff_ids: &[String],
) -> Result<StoredImage, Unavailable> {
    let unreadable = |what: &str, path: &Path, err: io::Error| {
        Unavailable(format!("cannot read {what} {}: {err}", path.display()))
    };
    let hex = sha256_hex(image_id)
        .ok_or_else(|| Unavailable(format!("image id {image_id} is not a sha256 digest")))?;
    let metadata_root = root.join("image").join(driver.name());
    let config_path = metadata_root.join("imagedb/content/sha256").join(hex);
    let config = std::fs::read(&config_path)
        .map_err(|err| unreadable("the image config", &config_path, err))?;
    if sha256_digest(&config) != image_id {
        return Err(Unavailable(format!(
            "{} does not hash to the image id",
            config_path.display()
        )));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (diff_id, chain_id) in diff_ids.iter().zip(chain_ids(diff_ids)) {
        let chain_hex = sha256_hex(&chain_id)
            .ok_or_else(|| Unavailable(format!("layer {diff_id} is not a sha256 digest")))?;
        let dir = metadata_root.join("layerdb/sha256").join(chain_hex);
        let read_small = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| text.trim().to_string())
                .map_err(|err| unreadable("layer metadata", &path, err))
        };
        let recorded = read_small("diff")?;
        if recorded != *diff_id {
            return Err(Unavailable(format!(
                "{} records layer {recorded}, not {diff_id}",
                dir.display()
            )));
        }
        let cache_id = read_small("cache-id")?;
        if cache_id.is_empty() || cache_id.contains('/') || cache_id.starts_with('.') {
            return Err(Unavailable(format!(
                "{} names no usable cache id",
                dir.display()
            )));
        }
        let content_dir = driver.content_dir(root, &cache_id);
        if !content_dir.is_dir() {
            return Err(Unavailable(format!(
                "layer content {} is not a directory shipit can read",
                content_dir.display()
            )));
        }
        layers.push(StoredLayer {
            diff_id: diff_id.clone(),
            // Only for progress: a missing or odd `size` file costs nothing but the estimate.
            content_size: read_small("size")
                .ok()
                .and_then(|size| size.parse().ok())
                .unwrap_or(0),
            tar_split: dir.join("tar-split.json.gz"),
            content_dir,
        });
    }
    Ok(StoredImage {
        config,
        layers,
        description: format!("{} ({})", root.display(), driver.name()),
    })
}

/// The layers of `image` not in `present`, each diff id once, in image order.
pub(crate) fn layers_to_read<'a>(
    image: &'a StoredImage,
    present: &HashSet<String>,
) -> Vec<&'a StoredLayer> {
    let mut seen = HashSet::new();
    image
        .layers
        .iter()
        .filter(|layer| !present.contains(&layer.diff_id) && seen.insert(layer.diff_id.clone()))
        .collect()
}

/// One record of a tar-split file (vbatts/tar-split's `storage.Entry`).
#[derive(Debug, Deserialize)]
struct TarSplitEntry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    /// The name's bytes when they are not UTF-8 (base64, as Go encodes `[]byte`).
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: i64,
    /// Segment: the raw bytes (base64). File: a CRC-64 of the content, not needed here: the
    /// whole layer's digest is checked instead.
    #[serde(default)]
    payload: Option<String>,
}

/// tar-split record types.
const FILE_ENTRY: u8 = 1;
const SEGMENT_ENTRY: u8 = 2;

/// A file's path inside the layer's content directory: relative, no `..`. Pure.
fn content_path(name: &[u8]) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = Path::new(std::ffi::OsStr::from_bytes(name));
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "the tar-split names {:?}, which climbs out of the layer",
                    String::from_utf8_lossy(name)
                )));
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid(
            "the tar-split names a file with an empty path".into(),
        ));
    }
    Ok(relative)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn decode_base64(text: &str) -> io::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|err| invalid(format!("the tar-split holds bad base64: {err}")))
}

/// What the reader is in the middle of.
enum Pending {
    None,
    Bytes {
        bytes: Vec<u8>,
        at: usize,
    },
    File {
        file: File,
        left: u64,
        path: PathBuf,
    },
}

type Entries = serde_json::StreamDeserializer<
    'static,
    serde_json::de::IoRead<BufReader<flate2::read::GzDecoder<File>>>,
    TarSplitEntry,
>;

/// The layer's tar, rebuilt from its tar-split record and content directory as it is read.
pub(crate) struct LayerReader {
    entries: Entries,
    content_dir: PathBuf,
    pending: Pending,
}

impl LayerReader {
    pub(crate) fn open(layer: &StoredLayer) -> io::Result<Self> {
        let file = File::open(&layer.tar_split).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot open {}: {err}", layer.tar_split.display()),
            )
        })?;
        let json = BufReader::with_capacity(64 * 1024, flate2::read::GzDecoder::new(file));
        Ok(Self {
            entries: serde_json::Deserializer::from_reader(json).into_iter(),
            content_dir: layer.content_dir.clone(),
            pending: Pending::None,
        })
    }

    /// Moves to the next record with bytes to give; false at the end.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            let Some(entry) = self.entries.next() else {
                return Ok(false);
            };
            let entry =
                entry.map_err(|err| invalid(format!("the tar-split record is damaged: {err}")))?;
            match entry.kind {
                SEGMENT_ENTRY => {
                    let bytes = decode_base64(entry.payload.as_deref().unwrap_or(""))?;
                    if !bytes.is_empty() {
                        self.pending = Pending::Bytes { bytes, at: 0 };
                        return Ok(true);
                    }
                }
                FILE_ENTRY => {
                    if entry.size <= 0 {
                        continue;
                    }
                    let name = match (&entry.name_raw, &entry.name) {
                        (Some(raw), _) if !raw.is_empty() => decode_base64(raw)?,
                        (_, Some(name)) => name.as_bytes().to_vec(),
                        _ => return Err(invalid("the tar-split has a file without a name".into())),
                    };
                    let path = self.content_dir.join(content_path(&name)?);
                    // The content is a regular file: a symlink here is not the layer's.
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .map_err(|err| {
                            io::Error::new(
                                err.kind(),
                                format!("cannot read layer file {}: {err}", path.display()),
                            )
                        })?;
                    self.pending = Pending::File {
                        file,
                        left: entry.size as u64,
                        path,
                    };
                    return Ok(true);
                }
                other => {
                    return Err(invalid(format!(
                        "the tar-split has a record of unknown type {other}"
                    )));
                }
            }
        }
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.pending {
                Pending::None => {
                    if !self.advance()? {
                        return Ok(0);
                    }
                }
                Pending::Bytes { bytes, at } => {
                    let n = (bytes.len() - *at).min(buf.len());
                    buf[..n].copy_from_slice(&bytes[*at..*at + n]);
                    *at += n;
                    if *at == bytes.len() {
                        self.pending = Pending::None;
                    }
                    return Ok(n);
                }
                Pending::File { file, left, path } => {
                    let want = (*left).min(buf.len() as u64) as usize;
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "layer file {} is {left} bytes shorter than when the layer was made",
                                path.display()
                            ),
                        ));
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        self.pending = Pending::None;
                    }
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};
    use std::io::Write as _;

    fn layer_digest(layer: &StoredLayer) -> io::Result<String> {
        let mut reader = LayerReader::open(layer)?;
        let mut hasher = Sha256::new();
        io::copy(&mut reader, &mut hasher)?;
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    fn storage(driver: &str, root: &str, status: &[(&str, &str)]) -> DaemonStorage {
        DaemonStorage {
            root_dir: Some(root.into()),
            driver: Some(driver.into()),
            driver_status: status
                .iter()
                .map(|(k, v)| vec![k.to_string(), v.to_string()])
                .collect(),
        }
    }

    #[test]
    fn overlay2_vfs_and_fuse_overlayfs_are_read_other_stores_are_not() {
        let (root, driver) = choose_store(&storage(
            "overlay2",
            "/var/lib/docker",
            &[("Backing Filesystem", "extfs")],
        ))
        .unwrap();
        assert_eq!(root, PathBuf::from("/var/lib/docker"));
        assert_eq!(driver, StoreDriver::Overlay2);
        assert_eq!(
            driver.content_dir(&root, "abc"),
            PathBuf::from("/var/lib/docker/overlay2/abc/diff")
        );
        let (_, vfs) = choose_store(&storage("vfs", "/d", &[])).unwrap();
        assert_eq!(
            vfs.content_dir(Path::new("/d"), "x"),
            PathBuf::from("/d/vfs/dir/x")
        );
        let (_, fuse) = choose_store(&storage("fuse-overlayfs", "/d", &[])).unwrap();
        assert_eq!(
            fuse.content_dir(Path::new("/d"), "x"),
            PathBuf::from("/d/fuse-overlayfs/x/diff")
        );

        let snapshotter = storage(
            "overlayfs",
            "/var/lib/docker",
            &[("driver-type", "io.containerd.snapshotter.v1")],
        );
        assert!(
            choose_store(&snapshotter)
                .unwrap_err()
                .0
                .contains("containerd image store")
        );
        assert!(
            choose_store(&storage("zfs", "/d", &[]))
                .unwrap_err()
                .0
                .contains("zfs")
        );
        assert!(choose_store(&storage("overlay2", "", &[])).is_err());
        assert!(choose_store(&DaemonStorage::default()).is_err());
    }

    #[test]
    fn the_store_is_found_from_an_overlay_upper_dir() {
        assert_eq!(
            store_from_graph_driver("overlay2", Some("/var/lib/docker/overlay2/0a1b/diff")),
            Some((PathBuf::from("/var/lib/docker"), StoreDriver::Overlay2))
        );
        assert_eq!(
            store_from_graph_driver(
                "fuse-overlayfs",
                Some("/home/u/.local/share/docker/fuse-overlayfs/x/diff")
            ),
            Some((
                PathBuf::from("/home/u/.local/share/docker"),
                StoreDriver::FuseOverlayfs
            ))
        );
        // Other shapes ask `docker info` instead.
        assert_eq!(store_from_graph_driver("overlay2", None), None);
        assert_eq!(
            store_from_graph_driver("overlay2", Some("/d/other/x/diff")),
            None
        );
        assert_eq!(
            store_from_graph_driver("overlay2", Some("/d/overlay2/x/merged")),
            None
        );
        assert_eq!(
            store_from_graph_driver("overlay2", Some("overlay2/x/diff")),
            None
        );
        assert_eq!(store_from_graph_driver("vfs", Some("/d/vfs/dir/x")), None);
        assert_eq!(
            store_from_graph_driver("overlayfs", Some("/d/overlayfs/x/diff")),
            None
        );
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn content_paths_stay_inside_the_layer() {
        assert_eq!(
            content_path(b"usr/bin/x").unwrap(),
            PathBuf::from("usr/bin/x")
        );
        assert_eq!(
            content_path(b"./etc/passwd").unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(
            content_path(b"/abs/file").unwrap(),
            PathBuf::from("abs/file")
        );
        assert!(content_path(b"a/../../etc/shadow").is_err());
        assert!(content_path(b"./").is_err());
    }

    /// A layer store with one image built from `files` (name → content), in the layout the
    /// daemon writes: the tar-split record is made from a real tar by splitting it into header
    /// segments and file content the way tar-split's disassembler does.
    struct FakeStore {
        root: tempfile::TempDir,
        image_id: String,
        diff_id: String,
        tar: Vec<u8>,
    }

    /// The fake layer's cache id: its files are under `overlay2/<cache id>/diff`.
    const FAKE_CACHE_ID: &str = "0123456789abcdef";

    impl FakeStore {
        /// Where the store keeps the layer's file `name`.
        fn content(&self, name: &str) -> PathBuf {
            StoreDriver::Overlay2
                .content_dir(self.root.path(), FAKE_CACHE_ID)
                .join(name)
        }
    }

    fn segment(bytes: &[u8]) -> String {
        format!(
            "{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn fake_store(files: &[(&str, &[u8])]) -> FakeStore {
        let root = tempfile::tempdir().unwrap();
        let cache_id = FAKE_CACHE_ID;
        let content = root.path().join("overlay2").join(cache_id).join("diff");
        let mut builder = tar::Builder::new(Vec::new());
        let mut record = String::new();
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_path(name).unwrap();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            let before = builder.get_ref().len();
            builder.append(&header, *bytes).unwrap();
            let written = builder.get_ref()[before..].to_vec();
            record += &segment(&written[..512]);
            record += &format!(
                "{{\"type\":1,\"name\":\"{name}\",\"size\":{},\"payload\":null,\"position\":0}}\n",
                bytes.len()
            );
            let padding = &written[512 + bytes.len()..];
            if !padding.is_empty() {
                record += &segment(padding);
            }
            let path = content.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let before = builder.get_ref().len();
        let tar = builder.into_inner().unwrap();
        record += &segment(&tar[before..]);
        let diff_id = sha256_digest(&tar);
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{diff_id}\"]}}}}"
        );
        let image_id = sha256_digest(config.as_bytes());
        let meta = root.path().join("image/overlay2");
        let config_dir = meta.join("imagedb/content/sha256");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join(sha256_hex(&image_id).unwrap()), &config).unwrap();
        let layer_dir = meta
            .join("layerdb/sha256")
            .join(sha256_hex(&diff_id).unwrap());
        std::fs::create_dir_all(&layer_dir).unwrap();
        std::fs::write(layer_dir.join("diff"), &diff_id).unwrap();
        std::fs::write(layer_dir.join("cache-id"), cache_id).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            File::create(layer_dir.join("tar-split.json.gz")).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(record.as_bytes()).unwrap();
        gz.finish().unwrap();
        FakeStore {
            root,
            image_id,
            diff_id,
            tar,
        }
    }

    fn find(store: &FakeStore) -> Result<StoredImage, Unavailable> {
        find_image(
            store.root.path(),
            StoreDriver::Overlay2,
            &store.image_id,
            std::slice::from_ref(&store.diff_id),
        )
    }

    #[test]
    fn rebuilds_the_exact_layer_tar() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let store = fake_store(&[
            ("etc/hostname", b"web\n"),
            ("srv/big.bin", &big),
            ("empty", b""),
        ]);
        let image = find(&store).unwrap();
        let mut rebuilt = Vec::new();
        LayerReader::open(&image.layers[0])
            .unwrap()
            .read_to_end(&mut rebuilt)
            .unwrap();
        assert_eq!(rebuilt.len(), store.tar.len());
        assert!(
            rebuilt == store.tar,
            "the rebuilt tar differs from the original"
        );
        assert_eq!(layer_digest(&image.layers[0]).unwrap(), store.diff_id);
    }

    #[test]
    fn a_changed_file_changes_the_digest_and_a_shortened_one_is_an_error() {
        let store = fake_store(&[("a.txt", b"hello world\n")]);
        let image = find(&store).unwrap();
        let file = store.content("a.txt");
        std::fs::write(&file, b"HELLO WORLD\n").unwrap();
        assert_ne!(layer_digest(&image.layers[0]).unwrap(), store.diff_id);
        std::fs::write(&file, b"hi").unwrap();
        let err = layer_digest(&image.layers[0]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("a.txt"), "{err}");
    }

    #[test]
    fn a_symlink_where_content_should_be_is_refused() {
        let store = fake_store(&[("a.txt", b"hello world\n")]);
        let image = find(&store).unwrap();
        let file = store.content("a.txt");
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
        assert!(layer_digest(&image.layers[0]).is_err());
    }

    #[test]
    fn missing_or_disagreeing_metadata_makes_the_store_unavailable() {
        let store = fake_store(&[("a.txt", b"x")]);
        let wrong_id = format!("sha256:{}", "0".repeat(64));
        let err = find_image(
            store.root.path(),
            StoreDriver::Overlay2,
            &wrong_id,
            std::slice::from_ref(&store.diff_id),
        )
        .unwrap_err();
        assert!(err.0.contains("image config"), "{err}");

        let other_layer = format!("sha256:{}", "1".repeat(64));
        let err = find_image(
            store.root.path(),
            StoreDriver::Overlay2,
            &store.image_id,
            &[other_layer],
        )
        .unwrap_err();
        assert!(err.0.contains("layer metadata"), "{err}");

        std::fs::remove_dir_all(store.root.path().join("overlay2")).unwrap();
        let err = find(&store).unwrap_err();
        assert!(err.0.contains("layer content"), "{err}");
    }

    #[test]
    fn layers_to_read_skips_present_and_repeated_layers() {
        let layer = |d: &str| StoredLayer {
            diff_id: d.into(),
            content_size: 0,
            tar_split: PathBuf::new(),
            content_dir: PathBuf::new(),
        };
        let image = StoredImage {
            config: Vec::new(),
            layers: vec![layer("a"), layer("b"), layer("a"), layer("c")],
            description: String::new(),
        };
        let present: HashSet<String> = ["b".to_string()].into();
        let ids: Vec<&str> = layers_to_read(&image, &present)
            .iter()
            .map(|l| l.diff_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }
}
