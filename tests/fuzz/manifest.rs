//! Static pod manifests, YAML and JSON: decoding and validation (`manifest::load`), then the
//! translation kubelet's runtime manager does (`podspec`: sandbox and container configs,
//! volumes, QoS) for every pod that passes. Never a panic.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use peapod::manifest::{load, Object};
use peapod::podspec::{self, Context, NodeResources};

use crate::TEST_TIME;

fn context() -> Context {
    let mut ctx = Context {
        node_name: "node".into(),
        host_ips: vec!["192.0.2.10".into()],
        pod_ips: vec!["10.88.0.5".into()],
        allocatable: NodeResources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        },
        memory_capacity: 8 << 30,
        resolv_conf: Some("nameserver 192.0.2.1\nsearch example.com\noptions ndots:2\n".into()),
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        hugepage_sizes: vec!["2MB".into()],
        ..Default::default()
    };
    ctx.paths.pod_dir = PathBuf::from("/run/peapod/static-pods/uid");
    ctx
}

fn translate(mut pod: Pod, ctx: &Context) {
    let uid = peapod::manifest::identity::apply_static_defaults(
        &mut pod,
        Path::new("/etc/peapod/manifests/fuzz.yaml"),
        &ctx.node_name,
    );
    let _ = peapod::manifest::spec_hash(&pod);
    let _ = podspec::sandbox_config(&pod, &uid, 0, ctx);
    let _ = podspec::volume_plan(&pod, ctx);
    if let Some(spec) = pod.spec.as_ref() {
        if let Ok(class) = podspec::qos_class(spec) {
            let _ = podspec::cgroup_parent(class, &uid, ctx);
        }
        let _ = podspec::port_mappings(spec);
        let _ = podspec::pod_requests(spec);
        let _ = podspec::admit(&[], &pod, ctx.allocatable);
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let _ = podspec::container_config(&pod, c, ctx);
        }
    }
}

fn check(input: &[u8]) {
    for name in ["fuzz.yaml", "fuzz.json"] {
        let Ok(docs) = load(Path::new(name), input) else {
            continue;
        };
        let mut ctx = context();
        for d in &docs {
            match &d.object {
                Object::ConfigMap(c) => {
                    ctx.config_maps
                        .insert(c.metadata.name.clone().unwrap_or_default(), (**c).clone());
                }
                Object::Secret(s) => {
                    ctx.secrets
                        .insert(s.metadata.name.clone().unwrap_or_default(), (**s).clone());
                }
                Object::Pod(_) => {}
            }
        }
        for d in docs {
            if let Object::Pod(p) = d.object {
                translate(*p, &ctx);
            }
        }
    }
}

#[test]
fn manifest_file() {
    bolero::check!().with_test_time(TEST_TIME).for_each(check);
}
