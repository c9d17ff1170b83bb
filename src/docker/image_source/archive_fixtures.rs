//! Image archives made in memory for tests: layer tars, a classic `docker save` archive and an
//! OCI layout archive, each with a config whose diff ids match its layers.

use crate::docker::image_source::digest::{sha256_digest, sha256_hex};
use crate::docker::image_source::media_types::{OCI_CONFIG, OCI_MANIFEST};

/// A tar layer whose content depends on `seed`, `len` bytes of file data.
pub(crate) fn layer_tar(seed: u8, len: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let data: Vec<u8> = (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect();
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, format!("file-{seed}"), data.as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

fn add_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, path, data).unwrap();
}

fn add_symlink(builder: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder.append_link(&mut header, path, target).unwrap();
}

/// A classic `docker save` archive of the given layers (in layer order), written with the
/// directories sorted by name as Docker 20.10 does, and the last layer repeated as a
/// symlink when `repeat_first` is set.
pub(crate) fn classic_archive(layers: &[Vec<u8>], repeat_first: bool) -> (Vec<u8>, String) {
    let mut diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let mut dirs: Vec<String> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            // Directory names unrelated to layer order, like Docker's v1 ids.
            let name = sha256_digest(&[l.as_slice(), &[i as u8]].concat());
            sha256_hex(&name).unwrap().to_string()
        })
        .collect();
    let mut layer_paths: Vec<String> = dirs.iter().map(|d| format!("{d}/layer.tar")).collect();
    if repeat_first {
        diff_ids.push(diff_ids[0].clone());
        let dir = "f".repeat(64);
        layer_paths.push(format!("{dir}/layer.tar"));
        dirs.push(dir);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    let config_name = format!("{}.json", sha256_hex(&config_digest).unwrap());
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": ["app:1"], "Layers": layer_paths,
    }]))
    .unwrap();

    let mut builder = tar::Builder::new(Vec::new());
    let mut order: Vec<usize> = (0..dirs.len()).collect();
    order.sort_by(|a, b| dirs[*a].cmp(&dirs[*b]));
    add_file(&mut builder, &config_name, &config);
    for i in order {
        let dir = &dirs[i];
        add_file(&mut builder, &format!("{dir}/VERSION"), b"1.0");
        add_file(&mut builder, &format!("{dir}/json"), b"{\"id\":\"x\"}");
        if i < layers.len() {
            add_file(&mut builder, &format!("{dir}/layer.tar"), &layers[i]);
        } else {
            add_symlink(
                &mut builder,
                &format!("{dir}/layer.tar"),
                &format!("../{}/layer.tar", dirs[0]),
            );
        }
    }
    add_file(&mut builder, "manifest.json", &manifest);
    add_file(&mut builder, "repositories", b"{}");
    (builder.into_inner().unwrap(), config_digest)
}

/// A Docker 25 style OCI layout: one uncompressed layer, one already gzipped, blobs first
/// and index.json last.
pub(crate) fn oci_archive(plain: &[u8], gzipped: &[u8], gzipped_diff: &str) -> (Vec<u8>, String) {
    let plain_digest = sha256_digest(plain);
    let gz_digest = sha256_digest(gzipped);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [plain_digest, gzipped_diff]},
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": plain_digest, "size": plain.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": gz_digest, "size": gzipped.len()},
        ]
    }))
    .unwrap();
    let manifest_digest = sha256_digest(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len()}]
    }))
    .unwrap();
    let blob = |d: &str| format!("blobs/sha256/{}", sha256_hex(d).unwrap());
    let mut builder = tar::Builder::new(Vec::new());
    add_file(&mut builder, &blob(&plain_digest), plain);
    add_file(&mut builder, &blob(&gz_digest), gzipped);
    add_file(&mut builder, &blob(&config_digest), &config);
    add_file(&mut builder, &blob(&manifest_digest), &manifest);
    add_file(
        &mut builder,
        "oci-layout",
        b"{\"imageLayoutVersion\":\"1.0.0\"}",
    );
    add_file(&mut builder, "index.json", &index);
    (builder.into_inner().unwrap(), gz_digest)
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
