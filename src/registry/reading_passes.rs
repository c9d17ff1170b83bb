//! One reading pass of a push, run: the reader on a blocking thread (the export or the layer
//! store), the uploads of the blobs it hands over beside it, and which failure to report when
//! either stops.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::blob_uploads::{UploadSink, run_uploads};
use super::export_packing::{ScanPlan, pack_export};
use super::layer_packer::Packing;
use super::pass_result::{BlobSink, ScanError, ScanResult};
use super::push_config::PushConfig;
use super::push_error::PushError;
use super::push_progress::{Notify, PushProgress};
use super::push_source::PushSource;
use super::push_workspace::Workspace;
use super::registry_session::RegistrySession;
use super::store_packing::pack_stored_layers;
use crate::docker::image_source::layer_store::StoredImage;

/// Spool files waiting for an upload slot; bounds the disk the spool can take.
const PENDING_BLOBS: usize = 2;

/// What every reading pass of one push shares: where the blobs it packs go, and how progress
/// and failures are reported.
pub(crate) struct Passes<'a> {
    pub source: &'a PushSource,
    session: &'a Arc<RegistrySession>,
    spool_dir: &'a Path,
    /// Blobs a cached layer of another repository may be mounted from.
    mount_sources: Arc<HashMap<String, Vec<String>>>,
    pub notify: Notify,
    /// Bytes read so far, by every pass.
    pub progress: Arc<AtomicU64>,
    cancel: &'a CancellationToken,
}

impl<'a> Passes<'a> {
    /// The passes of one push of `source` to `session`, spooling in `workspace`.
    pub(crate) fn new(
        source: &'a PushSource,
        session: &'a Arc<RegistrySession>,
        workspace: &'a Workspace,
        cfg: &PushConfig,
        progress: &PushProgress,
        cancel: &'a CancellationToken,
    ) -> Self {
        let mount_sources = source
            .diff_ids
            .iter()
            .filter_map(|d| workspace.cache.layer(&session.host, cfg.compression, d))
            .map(|c| (c.digest.clone(), c.repositories.clone()))
            .collect();
        Passes {
            source,
            session,
            spool_dir: workspace.spool.path(),
            mount_sources: Arc::new(mount_sources),
            notify: progress.notify(),
            progress: progress.read.clone(),
            cancel,
        }
    }

    /// One pass over the export archive (`reader`, opened from the source).
    pub(crate) async fn export(
        &self,
        reader: Box<dyn Read + Send>,
        plan: ScanPlan,
    ) -> Result<ScanResult, PushError> {
        let spool_dir = self.spool_dir.to_path_buf();
        self.run(move |sink, on_bytes, cancel| {
            pack_export(reader, &plan, sink, &spool_dir, on_bytes, cancel)
        })
        .await
    }

    /// One pass over the layer store: the layers of `stored` not in `present`.
    pub(crate) async fn layer_store(
        &self,
        stored: &StoredImage,
        present: HashSet<String>,
        packing: Packing,
    ) -> Result<ScanResult, PushError> {
        let to_read = stored.clone();
        let spool_dir = self.spool_dir.to_path_buf();
        self.run(move |sink, on_bytes, cancel| {
            pack_stored_layers(
                &to_read, &present, packing, sink, &spool_dir, on_bytes, cancel,
            )
        })
        .await
    }

    /// One reading pass (`read`, on a blocking thread: the export or the layer store) with the
    /// uploads of the blobs it hands over running beside it.
    async fn run<F>(&self, read: F) -> Result<ScanResult, PushError>
    where
        F: FnOnce(
                &dyn BlobSink,
                &mut dyn FnMut(u64),
                &CancellationToken,
            ) -> Result<ScanResult, ScanError>
            + Send
            + 'static,
    {
        let Passes {
            source,
            session,
            mount_sources,
            notify,
            progress,
            cancel,
            ..
        } = self;
        let pass_cancel = cancel.child_token();
        let (blob_tx, blob_rx) = mpsc::channel(PENDING_BLOBS);
        let sink = UploadSink {
            handle: tokio::runtime::Handle::current(),
            session: Arc::clone(session),
            blobs: blob_tx,
        };
        let reader_cancel = pass_cancel.clone();
        let reader_progress = progress.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let mut on_bytes = |n: u64| {
                reader_progress.fetch_add(n, Ordering::Relaxed);
            };
            let result = read(&sink, &mut on_bytes, &reader_cancel);
            // Closing the channel lets the uploads finish.
            drop(sink);
            result
        });
        let uploads = run_uploads(
            Arc::clone(session),
            blob_rx,
            mount_sources.clone(),
            notify.clone(),
        );
        tokio::pin!(scan);
        tokio::pin!(uploads);
        let mut scan_result: Option<Result<ScanResult, ScanError>> = None;
        let mut upload_result: Option<Result<(), PushError>> = None;
        let (scan_result, upload_result) = loop {
            match (scan_result.take(), upload_result.take()) {
                (Some(scanned), Some(uploaded)) => break (scanned, uploaded),
                (scanned, uploaded) => {
                    scan_result = scanned;
                    upload_result = uploaded;
                }
            }
            tokio::select! {
                joined = &mut scan, if scan_result.is_none() => {
                    let result = joined.unwrap_or_else(|err| Err(ScanError::Io {
                        entry: None,
                        source: std::io::Error::other(format!("the archive reader stopped: {err}")),
                    }));
                    if result.is_err() {
                        pass_cancel.cancel();
                    }
                    scan_result = Some(result);
                }
                result = &mut uploads, if upload_result.is_none() => {
                    if result.is_err() {
                        pass_cancel.cancel();
                    }
                    upload_result = Some(result);
                }
            }
        };
        decide_pass_result(scan_result, upload_result, source, session)
    }
}

/// Which failure to report when a pass fails. An upload failure stops the reader (its blobs
/// have nowhere to go), so it is the cause; a cancelled upload is not.
fn decide_pass_result(
    scan_result: Result<ScanResult, ScanError>,
    upload_result: Result<(), PushError>,
    source: &PushSource,
    session: &RegistrySession,
) -> Result<ScanResult, PushError> {
    match (scan_result, upload_result) {
        (Ok(scan), Ok(())) => Ok(scan),
        (_, Err(upload)) if !matches!(upload, PushError::Cancelled { .. }) => Err(upload),
        (Err(scan), _) => Err(scan_error(scan, source, session)),
        (Ok(_), Err(cancelled)) => Err(cancelled),
    }
}

fn scan_error(err: ScanError, source: &PushSource, session: &RegistrySession) -> PushError {
    match err {
        ScanError::Sink(err) => err,
        ScanError::Cancelled => PushError::Cancelled {
            registry: session.host.clone(),
            repository: session.repository.clone(),
        },
        ScanError::Layout(problem) => source.layout_error(problem),
        ScanError::Io { entry, source: io } => PushError::Export {
            image: source.name(),
            reason: match entry {
                Some(entry) => format!("reading {entry} failed: {io}"),
                None => format!("reading the archive failed: {io}"),
            },
        },
    }
}
