//! A reading pass over the daemon's layer store: the layers the registry lacks, rebuilt,
//! hashed against their diff ids and compressed.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::layer_packer::{Packing, pack_layer};
use super::pass_result::{BlobSink, LayerOutcome, ScanError, ScanResult};
use crate::docker::image_source::archive_layout::LayoutProblem;
use crate::docker::image_source::layer_store::{LayerReader, StoredImage, layers_to_read};

/// Rebuilds, hashes and compresses every layer of `image` the registry lacks (not in
/// `present`), one after another (each compresses on every core), and hands each to `sink` once
/// its diff id is proven: a store changed underneath, or misread, can never push a wrong
/// layer. Outcomes are keyed `diff:<diff id>`, as `source_image_from_config` names the layers.
pub(crate) fn pack_stored_layers(
    image: &StoredImage,
    present: &HashSet<String>,
    packing: Packing,
    sink: &dyn BlobSink,
    spool_dir: &Path,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> Result<ScanResult, ScanError> {
    let mut layers = HashMap::new();
    for layer in layers_to_read(image, present) {
        let entry = format!("diff:{}", layer.diff_id);
        let read_error = |source| {
            ScanError::reading(
                format!("layer {} from the layer store", layer.diff_id),
                source,
            )
        };
        let mut reader = LayerReader::open(layer).map_err(read_error)?;
        let packed =
            pack_layer(&mut reader, packing, spool_dir, on_bytes, cancel).map_err(read_error)?;
        if packed.diff_id != layer.diff_id {
            let _ = std::fs::remove_file(&packed.blob.path);
            return Err(ScanError::Layout(LayoutProblem(format!(
                "layer {} rebuilt from the layer store hashes to {}",
                layer.diff_id, packed.diff_id
            ))));
        }
        layers.insert(
            entry,
            LayerOutcome::Packed {
                diff_id: packed.diff_id,
                uncompressed_size: packed.uncompressed_size,
                digest: packed.blob.digest.clone(),
                size: packed.blob.size,
            },
        );
        sink.submit(packed.blob)?;
    }
    Ok(ScanResult {
        layers,
        ..ScanResult::default()
    })
}
