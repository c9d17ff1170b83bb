//! What earlier pushes learned, kept in one JSON file: per registry, which compressed blob each
//! layer (diff id) became and in which repositories it was pushed, so an unchanged layer is
//! neither compressed nor uploaded again; and which `docker save` directory held which layer,
//! so the classic export can be read without compressing layers the registry has.
//!
//! The file is advisory: a lost or corrupt cache only costs time, and every entry is checked
//! against the registry (HEAD) and the layer's hash before it is trusted.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::push_config::Compression;
use super::push_error::PushError;

/// File name inside the cache directory the caller gives.
pub(crate) const CACHE_FILE: &str = "registry-layers.json";
const FORMAT_VERSION: u32 = 1;
/// Entries kept per registry and for directory hints; the least recently used go first.
const MAX_LAYERS_PER_REGISTRY: usize = 4096;
const MAX_DIR_HINTS: usize = 8192;

/// A compressed layer a registry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedLayer {
    pub digest: String,
    pub size: u64,
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
    /// Repositories of this registry the blob was pushed to (for cross-repository mounts).
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub last_used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DirHint {
    diff_id: String,
    last_used: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// registry host → "<compression> <diff id>" → layer
    #[serde(default)]
    registries: BTreeMap<String, BTreeMap<String, CachedLayer>>,
    #[serde(default)]
    classic_dirs: BTreeMap<String, DirHint>,
}

fn layer_key(compression: Compression, diff_id: &str) -> String {
    format!("{} {diff_id}", compression.as_str())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache in memory: what was loaded, plus what this push learned.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    path: PathBuf,
    data: CacheFile,
}

impl LayerCache {
    /// Loads the cache in `cache_dir`. A missing file is an empty cache; an unreadable or
    /// corrupt one is too, and `warning` says so.
    pub(crate) fn load(cache_dir: &Path) -> (LayerCache, Option<String>) {
        let path = cache_dir.join(CACHE_FILE);
        let (data, warning) = match std::fs::read(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (CacheFile::default(), None),
            Err(err) => (
                CacheFile::default(),
                Some(format!("ignoring layer cache {}: {err}", path.display())),
            ),
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(data) if data.version == FORMAT_VERSION => (data, None),
                Ok(_) => (CacheFile::default(), None),
                Err(err) => (
                    CacheFile::default(),
                    Some(format!(
                        "ignoring corrupt layer cache {}: {err}",
                        path.display()
                    )),
                ),
            },
        };
        (LayerCache { path, data }, warning)
    }

    pub(crate) fn layer(
        &self,
        registry: &str,
        compression: Compression,
        diff_id: &str,
    ) -> Option<&CachedLayer> {
        self.data
            .registries
            .get(registry)?
            .get(&layer_key(compression, diff_id))
    }

    #[cfg(test)]
    fn dir_hint(&self, dir: &str) -> Option<&str> {
        self.data.classic_dirs.get(dir).map(|h| h.diff_id.as_str())
    }

    pub(crate) fn dir_hints(&self) -> impl Iterator<Item = (&String, &String)> {
        self.data
            .classic_dirs
            .iter()
            .map(|(dir, hint)| (dir, &hint.diff_id))
    }

    /// Records that `registry`'s `repository` holds `diff_id` as this blob.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_layer(
        &mut self,
        registry: &str,
        repository: &str,
        diff_id: &str,
        compression: Compression,
        digest: &str,
        size: u64,
        uncompressed_size: Option<u64>,
    ) {
        let layers = self
            .data
            .registries
            .entry(registry.to_string())
            .or_default();
        let key = layer_key(compression, diff_id);
        let mut repositories = match layers.get(&key) {
            Some(old) if old.digest == digest => old.repositories.clone(),
            _ => Vec::new(),
        };
        if !repositories.iter().any(|r| r == repository) {
            repositories.push(repository.to_string());
        }
        let uncompressed_size =
            uncompressed_size.or_else(|| layers.get(&key).and_then(|old| old.uncompressed_size));
        layers.insert(
            key,
            CachedLayer {
                digest: digest.to_string(),
                size,
                compression,
                uncompressed_size,
                repositories,
                last_used: now_secs(),
            },
        );
    }

    pub(crate) fn record_dir(&mut self, dir: &str, diff_id: &str) {
        self.data.classic_dirs.insert(
            dir.to_string(),
            DirHint {
                diff_id: diff_id.to_string(),
                last_used: now_secs(),
            },
        );
    }

    /// Writes the cache, merged with whatever another process wrote meanwhile, under a lock
    /// file, replacing the file atomically.
    pub(crate) fn save(&self) -> Result<(), PushError> {
        let io_error = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| PushError::LocalIo {
                action,
                path,
                source,
            }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error("create the cache directory", dir))?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open the layer cache lock", &lock_path))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock)
            .map_err(io_error("lock the layer cache", &lock_path))?;

        let (on_disk, _) = LayerCache::load(dir);
        let mut merged = on_disk.data;
        merge_into(&mut merged, &self.data);
        prune(&mut merged);
        merged.version = FORMAT_VERSION;

        let bytes = serde_json::to_vec_pretty(&merged).unwrap_or_default();
        let mut temp = tempfile::NamedTempFile::new_in(dir)
            .map_err(io_error("write the layer cache", &self.path))?;
        temp.write_all(&bytes)
            .map_err(io_error("write the layer cache", &self.path))?;
        temp.persist(&self.path)
            .map_err(|err| err.error)
            .map_err(io_error("write the layer cache", &self.path))?;
        // Dropping the handle releases the lock.
        drop(lock);
        Ok(())
    }
}

/// Adds `ours` to `base`: newer entries win, repository lists are united.
fn merge_into(base: &mut CacheFile, ours: &CacheFile) {
    for (registry, layers) in &ours.registries {
        let target = base.registries.entry(registry.clone()).or_default();
        for (key, layer) in layers {
            match target.get_mut(key) {
                Some(existing) if existing.digest == layer.digest => {
                    for repository in &layer.repositories {
                        if !existing.repositories.contains(repository) {
                            existing.repositories.push(repository.clone());
                        }
                    }
                    existing.last_used = existing.last_used.max(layer.last_used);
                    existing.uncompressed_size =
                        existing.uncompressed_size.or(layer.uncompressed_size);
                }
                Some(existing) if existing.last_used > layer.last_used => {}
                _ => {
                    target.insert(key.clone(), layer.clone());
                }
            }
        }
    }
    for (dir, hint) in &ours.classic_dirs {
        match base.classic_dirs.get(dir) {
            Some(existing) if existing.last_used > hint.last_used => {}
            _ => {
                base.classic_dirs.insert(dir.clone(), hint.clone());
            }
        }
    }
}

fn prune(data: &mut CacheFile) {
    for layers in data.registries.values_mut() {
        if layers.len() > MAX_LAYERS_PER_REGISTRY {
            let mut ages: Vec<(u64, String)> = layers
                .iter()
                .map(|(k, v)| (v.last_used, k.clone()))
                .collect();
            ages.sort();
            for (_, key) in ages.iter().take(layers.len() - MAX_LAYERS_PER_REGISTRY) {
                layers.remove(key);
            }
        }
    }
    if data.classic_dirs.len() > MAX_DIR_HINTS {
        let mut ages: Vec<(u64, String)> = data
            .classic_dirs
            .iter()
            .map(|(k, v)| (v.last_used, k.clone()))
            .collect();
        ages.sort();
        let excess = data.classic_dirs.len() - MAX_DIR_HINTS;
        for (_, key) in ages.iter().take(excess) {
            data.classic_dirs.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_layers_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, warning) = LayerCache::load(dir.path());
        assert!(warning.is_none());
        cache.record_layer(
            "r:1",
            "app",
            "sha256:d",
            Compression::Gzip,
            "sha256:c",
            10,
            Some(30),
        );
        cache.record_dir("abc", "sha256:d");
        cache.save().unwrap();

        let (loaded, _) = LayerCache::load(dir.path());
        let layer = loaded.layer("r:1", Compression::Gzip, "sha256:d").unwrap();
        assert_eq!(layer.digest, "sha256:c");
        assert_eq!(layer.uncompressed_size, Some(30));
        assert_eq!(layer.repositories, vec!["app".to_string()]);
        assert!(loaded.layer("r:1", Compression::Zstd, "sha256:d").is_none());
        assert!(
            loaded
                .layer("other:1", Compression::Gzip, "sha256:d")
                .is_none()
        );
        assert_eq!(loaded.dir_hint("abc"), Some("sha256:d"));
    }

    #[test]
    fn saving_merges_with_what_another_push_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, _) = LayerCache::load(dir.path());
        let (mut second, _) = LayerCache::load(dir.path());
        first.record_layer(
            "r",
            "one",
            "sha256:a",
            Compression::Gzip,
            "sha256:x",
            1,
            None,
        );
        second.record_layer(
            "r",
            "two",
            "sha256:a",
            Compression::Gzip,
            "sha256:x",
            1,
            None,
        );
        second.record_layer(
            "r",
            "two",
            "sha256:b",
            Compression::Gzip,
            "sha256:y",
            1,
            None,
        );
        first.save().unwrap();
        second.save().unwrap();
        let (loaded, _) = LayerCache::load(dir.path());
        let a = loaded.layer("r", Compression::Gzip, "sha256:a").unwrap();
        assert_eq!(a.repositories, vec!["one".to_string(), "two".to_string()]);
        assert!(loaded.layer("r", Compression::Gzip, "sha256:b").is_some());
    }

    #[test]
    fn a_corrupt_cache_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CACHE_FILE), b"{not json").unwrap();
        let (cache, warning) = LayerCache::load(dir.path());
        assert!(warning.unwrap().contains("corrupt"));
        assert!(cache.layer("r", Compression::Gzip, "sha256:a").is_none());
        cache.save().unwrap();
    }

    #[test]
    fn pruning_drops_the_least_recently_used() {
        let mut data = CacheFile::default();
        let layers = data.registries.entry("r".into()).or_default();
        for i in 0..(MAX_LAYERS_PER_REGISTRY + 3) {
            layers.insert(
                format!("gzip sha256:{i}"),
                CachedLayer {
                    digest: format!("sha256:c{i}"),
                    size: 1,
                    compression: Compression::Gzip,
                    uncompressed_size: None,
                    repositories: vec![],
                    last_used: i as u64,
                },
            );
        }
        prune(&mut data);
        let layers = &data.registries["r"];
        assert_eq!(layers.len(), MAX_LAYERS_PER_REGISTRY);
        assert!(!layers.contains_key("gzip sha256:0"));
        assert!(layers.contains_key(&format!("gzip sha256:{}", MAX_LAYERS_PER_REGISTRY + 2)));
    }
}
