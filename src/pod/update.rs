//! UpdateContainerResources: new cpu, memory, pids and cpuset limits for a created or running
//! container, applied by its runtime (`update --resources`, which writes the cgroup files on v1
//! and v2 alike) and remembered across daemon restarts in `resources.pb` beside the record.

use std::sync::Arc;

use tracing::{info, instrument};

use super::record::{self, ContainerState};
use super::{Engine, EngineError, Result};
use crate::api;

/// The last resources set by an update, beside the container's record.
pub const RESOURCES_FILE: &str = "resources.pb";

impl Engine {
    #[instrument(skip(self, res), fields(container_id = %id))]
    pub async fn update_container_resources(
        self: &Arc<Self>,
        id: &str,
        res: api::LinuxContainerResources,
    ) -> Result<()> {
        let c = self.container(id)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        if !matches!(
            rec.state(),
            ContainerState::Created | ContainerState::Running
        ) {
            return Err(EngineError::FailedPrecondition(format!(
                "container {} is not created or running",
                rec.id
            )));
        }
        let linux = crate::oci::spec::update_resources(&res, &self.host)?;
        let json = serde_json::to_vec(&linux)
            .map_err(|e| EngineError::io("encoding the resources")(e.into()))?;
        let file = self
            .paths
            .bundle_dir(&rec.id)
            .join(format!("resources-{}.json", &crate::fsutil::new_id()[..16]));
        crate::fsutil::atomic_write_opts(&file, &json, false)
            .map_err(EngineError::io("writing the resources"))?;
        let rt = self.runtimes.get(&rec.runtime_handler)?;
        let applied = rt.update(&rec.id, &file).await;
        let _ = std::fs::remove_file(&file);
        applied?;
        // Applied first, then remembered: a crash in between leaves the cgroup with the new
        // limits and the status with the old, which the client's retry makes agree again.
        record::save_named(&self.paths.container_dir(&rec.id), RESOURCES_FILE, &res)
            .map_err(EngineError::io("saving the resources"))?;
        *c.resources.lock().unwrap() = Some(res);
        info!("container resources updated");
        Ok(())
    }
}
