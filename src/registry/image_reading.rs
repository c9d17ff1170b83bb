//! Reading the image's layers for a push, only those the registry lacks: from the daemon's
//! layer store when it can serve them, else from the export, read once front to back (and
//! stopped early once the rest holds only layers the registry has). A layer store that fails
//! part way hands over to the export. When a guess about which classic-layout entry of the
//! export is which layer turns out wrong, a second export pass packs just those entries.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use super::export_packing::{EarlyStop, ScanPlan};
use super::layer_assembly::{AssembledLayer, Assembly, add_present_layers, assemble_layers};
use super::layer_cache::{CachedLayer, LayerCache};
use super::layer_packer::Packing;
use super::pass_result::LayerOutcome;
use super::push_config::{LayerSource, PushConfig};
use super::push_error::PushError;
use super::reading_passes::Passes;
use crate::docker::image_source::archive_layout::{
    SourceImage, read_source_image, source_image_from_config,
};
use crate::docker::image_source::digest::sha256_hex;
use crate::docker::image_source::layer_store::{StoredImage, layers_to_read};

/// The image as read: its config and layers, and what became of every layer entry.
pub(crate) struct ReadImage {
    pub image: SourceImage,
    /// The manifest's layers, in order.
    pub layers: Vec<AssembledLayer>,
    /// What each pass made of each layer entry (the layer cache learns from them).
    pub outcomes: HashMap<String, LayerOutcome>,
}

/// What the first pass is told: how to pack, which layers the registry holds, which classic
/// export directory held which layer before, and when it may stop.
fn first_pass_plan(
    cfg: &PushConfig,
    diff_ids: &[String],
    image_id: Option<&str>,
    present: &HashMap<String, CachedLayer>,
    cache: &LayerCache,
) -> ScanPlan {
    ScanPlan {
        packing: Packing {
            compression: cfg.compression,
            level: cfg.level(),
        },
        present: present
            .iter()
            .map(|(diff_id, cached)| (diff_id.clone(), cached.uncompressed_size))
            .collect(),
        dir_hints: cache
            .dir_hints()
            .map(|(dir, diff_id)| (dir.clone(), diff_id.clone()))
            .collect(),
        only_entries: None,
        stop_early: image_id.and_then(sha256_hex).map(|hex| EarlyStop {
            config_entry: format!("{hex}.json"),
            needed: diff_ids
                .iter()
                .filter(|d| !present.contains_key(*d))
                .cloned()
                .collect(),
        }),
    }
}

/// Reads every layer the registry lacks, uploading each as it is packed. `early_export` is
/// the export already requested, if it was; `total` is lowered to what is actually read.
pub(crate) async fn read_image(
    passes: &Passes<'_>,
    cfg: &PushConfig,
    cache: &LayerCache,
    present: &HashMap<String, CachedLayer>,
    early_export: Option<Box<dyn Read + Send>>,
    total: &AtomicU64,
) -> Result<ReadImage, PushError> {
    let source = passes.source;
    let plan = &first_pass_plan(
        cfg,
        &source.diff_ids,
        source.image_id.as_deref(),
        present,
        cache,
    );
    let from_store = match (&source.stored, source.image_id.as_deref()) {
        (Some(stored), Some(image_id)) => {
            read_layer_store(passes, cfg, stored, image_id, plan.packing, present, total).await?
        }
        _ => None,
    };
    let (image, mut outcomes) = match from_store {
        Some(read) => read,
        None => read_export(passes, plan, present, early_export).await?,
    };
    let layers = assemble(passes, cfg, plan, &image, &mut outcomes, present).await?;
    Ok(ReadImage {
        image,
        layers,
        outcomes,
    })
}

/// The layers the registry lacks, from the layer store. None when the store could not be read
/// after all (a file gone, a layer that does not hash to its diff id) and the push block lets
/// the export do the job; progress then starts over.
async fn read_layer_store(
    passes: &Passes<'_>,
    cfg: &PushConfig,
    stored: &StoredImage,
    image_id: &str,
    packing: Packing,
    present: &HashMap<String, CachedLayer>,
    total: &AtomicU64,
) -> Result<Option<(SourceImage, HashMap<String, LayerOutcome>)>, PushError> {
    let source = passes.source;
    (passes.notify)(format!(
        "reading {} from the daemon's layer store in {}",
        source.name(),
        stored.description
    ));
    let present_ids: HashSet<String> = present.keys().cloned().collect();
    // Progress counts what this pass reads, not the whole image.
    total.store(
        layers_to_read(stored, &present_ids)
            .iter()
            .map(|layer| layer.content_size)
            .sum(),
        Ordering::Relaxed,
    );
    match passes.layer_store(stored, present_ids, packing).await {
        Ok(pass) => {
            let image = source_image_from_config(stored.config.clone(), image_id)
                .map_err(|problem| source.layout_error(problem))?;
            let mut outcomes = pass.layers;
            add_present_layers(&mut outcomes, present);
            Ok(Some((image, outcomes)))
        }
        Err(PushError::Export { reason, .. }) if cfg.layer_source == LayerSource::Auto => {
            (passes.notify)(format!(
                "the layer store could not be read ({reason}); reading the daemon's export \
                 instead"
            ));
            total.store(source.total_bytes, Ordering::Relaxed);
            passes.progress.store(0, Ordering::Relaxed);
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// One pass over the export. Read part way (`plan.stop_early`), the config orders the layers,
/// each one packed in this pass or already in the registry.
async fn read_export(
    passes: &Passes<'_>,
    plan: &ScanPlan,
    present: &HashMap<String, CachedLayer>,
    early_export: Option<Box<dyn Read + Send>>,
) -> Result<(SourceImage, HashMap<String, LayerOutcome>), PushError> {
    let source = passes.source;
    (passes.notify)(format!("reading {}", source.name()));
    let reader = match early_export {
        Some(reader) => reader,
        None => source.open_export()?,
    };
    let first = passes.export(reader, plan.clone()).await?;
    let mut outcomes = first.layers;
    let image = match (
        &plan.stop_early,
        first.stopped_early,
        source.image_id.as_deref(),
    ) {
        (Some(stop), true, Some(image_id)) => {
            let config = first
                .metadata
                .files
                .get(&stop.config_entry)
                .cloned()
                .unwrap_or_default();
            let image = source_image_from_config(config, image_id)
                .map_err(|problem| source.layout_error(problem))?;
            let packed: Vec<LayerOutcome> = outcomes
                .values()
                .filter(|o| matches!(o, LayerOutcome::Packed { .. }))
                .cloned()
                .collect();
            for outcome in packed {
                if let LayerOutcome::Packed { diff_id, .. } = &outcome {
                    outcomes.insert(format!("diff:{diff_id}"), outcome.clone());
                }
            }
            add_present_layers(&mut outcomes, present);
            image
        }
        _ => read_source_image(&first.metadata, &source.platform)
            .map_err(|problem| source.layout_error(problem))?,
    };
    Ok((image, outcomes))
}

/// The manifest's layers, after a second export pass over the entries that were not the
/// layers expected, when there are any.
async fn assemble(
    passes: &Passes<'_>,
    cfg: &PushConfig,
    plan: &ScanPlan,
    image: &SourceImage,
    outcomes: &mut HashMap<String, LayerOutcome>,
    present: &HashMap<String, CachedLayer>,
) -> Result<Vec<AssembledLayer>, PushError> {
    let source = passes.source;
    let assemble = |outcomes: &HashMap<String, LayerOutcome>| {
        assemble_layers(image, outcomes, present, cfg.format, cfg.compression)
            .map_err(|problem| source.layout_error(problem))
    };
    let mut assembly = assemble(outcomes)?;
    if let Assembly::NeedsPass(entries) = &assembly {
        (passes.notify)(format!(
            "{} layer(s) were not the ones expected; reading the export again",
            entries.len()
        ));
        let second_plan = ScanPlan {
            only_entries: Some(entries.clone()),
            stop_early: None,
            ..plan.clone()
        };
        let second = passes.export(source.open_export()?, second_plan).await?;
        for (entry, outcome) in second.layers {
            if entries.contains(&entry) {
                outcomes.insert(entry, outcome);
            }
        }
        assembly = assemble(outcomes)?;
    }
    match assembly {
        Assembly::Complete(layers) => Ok(layers),
        Assembly::NeedsPass(entries) => Err(PushError::Export {
            image: source.name(),
            reason: format!(
                "{} layer(s) could not be read from the export: {}",
                entries.len(),
                entries.into_iter().collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}
