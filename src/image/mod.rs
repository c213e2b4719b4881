//! The local image store: content, layers, image records and container rootfs snapshots.
