//! The CRI ImageService against a real registry on loopback: pull by short name through a
//! mirror and by a direct reference, status and list, a container from a pulled image, removal
//! while a container uses the image, garbage collection, and errors.

use std::time::Duration;

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

fn layer_count(d: &Daemon) -> usize {
    std::fs::read_dir(d.root.join("images/layers"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_run_remove_and_collect() {
    if !require_root() {
        return;
    }
    let reg = Registry::start();
    let digest = reg.push("busybox", "library/busybox:1.0");
    reg.push("busybox-whiteout", "peapod/whiteout:latest");
    let mirror = format!(
        "[registry.mirrors.\"docker.io\"]\nendpoints = [\"http://{}\"]\nfallback = false\n",
        reg.addr
    );
    let d = Daemon::start_with(&mirror).await;
    let mut img = d.img().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");

    // A short name, normalised as containerd does and served by the mirror.
    let id = img
        .pull_image(PullImageRequest {
            image: spec("busybox:1.0"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    let st = img
        .image_status(ImageStatusRequest {
            image: spec("docker.io/library/busybox:1.0"),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let image = st.image.expect("pulled image has a status");
    assert_eq!(image.id, id);
    // The pull names the image as asked (never by the mirror), beside the tag the same image
    // already had from the fixture import.
    assert!(
        image
            .repo_tags
            .contains(&"docker.io/library/busybox:1.0".to_string()),
        "{image:?}"
    );
    assert!(
        image
            .repo_digests
            .contains(&format!("docker.io/library/busybox@{digest}")),
        "{image:?}"
    );
    assert!(
        !image.repo_tags.iter().any(|t| t.contains("127.0.0.1")),
        "{image:?}"
    );
    assert!(image.size > 0);
    assert!(st.info["info"].contains("chainIDs"));

    // A direct reference to the loopback registry (plain HTTP for loopback hosts).
    let direct = format!("{}/peapod/whiteout:latest", reg.addr);
    let wid = img
        .pull_image(PullImageRequest {
            image: spec(&direct),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    let all = img
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    // The three imported fixtures plus the two pulls.
    assert!(all.iter().any(|i| i.id == id) && all.iter().any(|i| i.id == wid));
    let fs = img
        .image_fs_info(ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);

    // A container from the whiteout image sees the upper layer's deletions.
    let c = container_config(
        "wh",
        &direct,
        &[
            "sh",
            "-c",
            "ls /data; test -e /bin/vi && echo vi-present || echo vi-gone; sleep 300",
        ],
    );
    let (pod, ids) = run_pod(&mut rt, pod_config("pulled", &logs), vec![c]).await;
    let lines = wait_log(&logs.join("wh/0.log"), Duration::from_secs(10), |l| {
        l.len() >= 2
    })
    .await;
    assert_eq!(lines, ["b", "vi-gone"]);

    // Removing the image while the container runs: the image goes, the container does not.
    let layers_before = layer_count(&d);
    img.remove_image(RemoveImageRequest { image: spec(&wid) })
        .await
        .unwrap();
    let gone = img
        .image_status(ImageStatusRequest {
            image: spec(&direct),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.image.is_none());
    assert_eq!(
        container_status(&mut rt, &ids[0]).await.state,
        ContainerState::ContainerRunning as i32
    );
    assert_eq!(
        layer_count(&d),
        layers_before,
        "layers of a running container were collected"
    );

    // Once the container is gone, the next collection frees the whiteout image's own layer.
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    img.remove_image(RemoveImageRequest { image: spec(&id) })
        .await
        .unwrap();
    assert!(layer_count(&d) < layers_before, "nothing was collected");
    // Removing what is gone succeeds.
    img.remove_image(RemoveImageRequest { image: spec(&id) })
        .await
        .unwrap();

    // Errors: an unknown tag, and a reference that is not one.
    let e = img
        .pull_image(PullImageRequest {
            image: spec("busybox:nope"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = img
        .pull_image(PullImageRequest {
            image: spec("UPPER/Case:x"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_credentials() {
    if !require_root() {
        return;
    }
    let reg = Registry::start_auth(Some(("tester", "s3cret")));
    reg.push("busybox-entry", "private/entry:1");
    let d = Daemon::start().await;
    let mut img = d.img().await;
    let image = format!("{}/private/entry:1", reg.addr);
    let pull = |auth: Option<AuthConfig>| {
        let mut img = img.clone();
        let image = image.clone();
        async move {
            img.pull_image(PullImageRequest {
                image: spec(&image),
                auth,
                sandbox_config: None,
            })
            .await
        }
    };
    let e = pull(None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = pull(Some(AuthConfig {
        username: "tester".into(),
        password: "wrong".into(),
        ..Default::default()
    }))
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Right credentials, as kubelet sends them from a pull secret (base64 user:password).
    pull(Some(AuthConfig {
        auth: "dGVzdGVyOnMzY3JldA==".into(),
        ..Default::default()
    }))
    .await
    .expect("pull with credentials");
    let st = img
        .image_status(ImageStatusRequest {
            image: spec(&image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_some());
    d.cleanup().await;
}
