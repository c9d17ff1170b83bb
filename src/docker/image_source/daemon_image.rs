//! What the daemon says about an image before any of its content is read: its layers, its
//! platform, its size, and whether its layer store is on this machine and readable.

use bollard::Docker;

use super::layer_store::{
    DaemonStorage, StoredImage, Unavailable, choose_store, find_image, store_from_graph_driver,
};

/// An image as the daemon's inspect describes it.
#[derive(Debug, Clone)]
pub(crate) struct DaemonImage {
    /// The image id (the config's digest), when the daemon reports one.
    pub id: Option<String>,
    /// Layer diff ids, in order.
    pub diff_ids: Vec<String>,
    /// `os/architecture`.
    pub platform: String,
    /// About how many bytes its layers hold.
    pub size: u64,
    graph_driver: Option<bollard::models::DriverData>,
}

/// Inspects `image` (an id or a name).
pub(crate) async fn inspect_image(
    docker: &Docker,
    image: &str,
) -> Result<DaemonImage, bollard::errors::Error> {
    let inspect = docker.inspect_image(image).await?;
    Ok(DaemonImage {
        diff_ids: inspect
            .root_fs
            .and_then(|root| root.layers)
            .unwrap_or_default(),
        platform: format!(
            "{}/{}",
            inspect.os.unwrap_or_else(|| "linux".into()),
            inspect.architecture.unwrap_or_else(|| "amd64".into())
        ),
        id: inspect.id,
        size: inspect.size.unwrap_or(0).max(0) as u64,
        graph_driver: inspect.graph_driver,
    })
}

impl DaemonImage {
    /// The image in the daemon's layer store, when the store is on this machine and readable.
    /// The image's `GraphDriver` usually says where the store is; `docker info` otherwise.
    pub(crate) async fn find_in_layer_store(
        &self,
        docker: &Docker,
    ) -> Result<StoredImage, Unavailable> {
        let image_id = self
            .id
            .clone()
            .ok_or_else(|| Unavailable("the daemon reported no image id".into()))?;
        let from_image = self.graph_driver.as_ref().and_then(|graph| {
            store_from_graph_driver(&graph.name, graph.data.get("UpperDir").map(String::as_str))
        });
        let (root, driver) = match from_image {
            Some(found) => found,
            None => {
                let info = docker
                    .info()
                    .await
                    .map_err(|err| Unavailable(format!("docker info failed: {err}")))?;
                choose_store(&DaemonStorage {
                    root_dir: info.docker_root_dir,
                    driver: info.driver,
                    driver_status: info.driver_status.unwrap_or_default(),
                })?
            }
        };
        let diff_ids = self.diff_ids.clone();
        tokio::task::spawn_blocking(move || find_image(&root, driver, &image_id, &diff_ids))
            .await
            .map_err(|err| Unavailable(format!("the layer store lookup stopped: {err}")))?
    }
}
