//! The CRI ImageService over the local image store: pull from registries, list, status,
//! remove (with garbage collection of what no image or container uses), filesystem usage.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::status::{missing, to_status};
use super::{one, CriServer, One};
use crate::api::image_service_server::ImageService;
use crate::api::*;
use crate::image::{ImageError, ImageRecord, PullAuth};
use crate::pod::EngineError;

fn img_err(e: ImageError) -> Status {
    to_status(EngineError::Image(e))
}

/// The image's user, split as CRI wants it: a numeric uid, or a user name.
fn user_of(rec: &ImageRecord) -> (Option<Int64Value>, String) {
    let user = rec
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let name = user.split(':').next().unwrap_or("");
    match name.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) if name.is_empty() => (None, String::new()),
        Err(_) => (None, name.to_string()),
    }
}

fn to_image(rec: &ImageRecord, sandbox_image: &str) -> Image {
    let (uid, username) = user_of(rec);
    Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid,
        username,
        spec: Some(ImageSpec {
            image: rec.id.clone(),
            ..Default::default()
        }),
        // The sandbox image is pinned, so kubelet's image GC never removes it.
        pinned: !sandbox_image.is_empty()
            && crate::image::reference::normalize(sandbox_image)
                .is_ok_and(|n| rec.repo_tags.contains(&n)),
    }
}

impl CriServer {
    fn list_images_inner(&self, filter: Option<&ImageFilter>) -> Result<Vec<Image>, Status> {
        let wanted = filter
            .and_then(|f| f.image.as_ref())
            .map(|s| s.image.as_str())
            .filter(|s| !s.is_empty());
        match wanted {
            None => Ok(self
                .engine
                .images
                .list()
                .iter()
                .map(|r| to_image(r, &self.engine.cfg.sandbox_image))
                .collect()),
            Some(r) => match self.engine.images.get(r) {
                Ok(rec) => Ok(vec![to_image(&rec, &self.engine.cfg.sandbox_image)]),
                Err(ImageError::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(img_err(e)),
            },
        }
    }
}

#[tonic::async_trait]
impl ImageService for CriServer {
    async fn list_images(
        &self,
        r: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let images = self.list_images_inner(r.get_ref().filter.as_ref())?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    type StreamImagesStream = One<StreamImagesResponse>;
    async fn stream_images(
        &self,
        r: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.list_images_inner(r.get_ref().filter.as_ref())?;
        Ok(one(StreamImagesResponse { images }))
    }

    async fn image_status(
        &self,
        r: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let r = r.into_inner();
        let spec = r.image.ok_or_else(|| missing("image"))?;
        if spec.image.is_empty() {
            return Err(missing("image.image"));
        }
        // CRI: an absent image is an empty response, not an error.
        let rec = match self.engine.images.get(&spec.image) {
            Ok(rec) => rec,
            Err(ImageError::NotFound { .. }) => {
                return Ok(Response::new(ImageStatusResponse::default()));
            }
            Err(e) => return Err(img_err(e)),
        };
        let mut info = HashMap::new();
        if r.verbose {
            let v = serde_json::json!({
                "chainIDs": rec.chain_ids,
                "manifestDigest": rec.manifest_digest,
                "imageSpec": rec.config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(Response::new(ImageStatusResponse {
            image: Some(to_image(&rec, &self.engine.cfg.sandbox_image)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        r: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let r = r.into_inner();
        let spec = r.image.ok_or_else(|| missing("image"))?;
        if spec.image.is_empty() {
            return Err(missing("image.image"));
        }
        let auth = match r.auth {
            None => None,
            Some(a) if a.username.is_empty() && !a.auth.is_empty() => {
                let mut p = PullAuth::from_basic_auth(&a.auth)
                    .map_err(|e| Status::invalid_argument(format!("auth.auth: {e}")))?;
                p.identity_token = a.identity_token;
                p.registry_token = a.registry_token;
                Some(p)
            }
            Some(a) => Some(PullAuth {
                username: a.username,
                password: a.password,
                identity_token: a.identity_token,
                registry_token: a.registry_token,
            }),
        };
        let e = &self.engine;
        let rec = crate::image::pull(
            e.images.clone(),
            &e.cfg.registry,
            &spec.image,
            auth.as_ref(),
        )
        .await
        .map_err(img_err)?;
        tracing::info!(image = %spec.image, id = %rec.id, "pulled image");
        Ok(Response::new(PullImageResponse { image_ref: rec.id }))
    }

    async fn remove_image(
        &self,
        r: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let spec = r.into_inner().image.ok_or_else(|| missing("image"))?;
        if spec.image.is_empty() {
            return Err(missing("image.image"));
        }
        // Removing an absent image succeeds, as kubelet's image GC expects. A container that
        // uses the image keeps running: its layers stay until no container needs them.
        match self.engine.images.remove(&spec.image) {
            Ok(rec) => tracing::info!(id = %rec.id, "removed image"),
            Err(ImageError::NotFound { .. }) => return Ok(Response::new(RemoveImageResponse {})),
            Err(e) => return Err(img_err(e)),
        }
        let store = self.engine.images.clone();
        let in_use = self.engine.layers_in_use();
        let stats = tokio::task::spawn_blocking(move || crate::image::gc(&store, &in_use))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(img_err)?;
        tracing::info!(?stats, "image garbage collection");
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let store = self.engine.images.clone();
        let u = tokio::task::spawn_blocking(move || crate::image::gc::usage(&store))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(img_err)?;
        let (bytes, inodes) = (u.bytes, u.inodes);
        let fs = FilesystemUsage {
            timestamp: crate::pod::proc::now_ns(),
            fs_id: Some(super::stats::fs_id(&self.engine)),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        };
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![fs],
            container_filesystems: Vec::new(),
        }))
    }
}
