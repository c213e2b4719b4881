//! ListPodSandbox and ListContainers replies without a filter, kept encoded between changes.
//!
//! kubelet relists every second with no filter, and at a few hundred pods building, sorting,
//! encoding and freeing each reply was most of the daemon's work while idle. The reply to an
//! unfiltered List is kept as its protobuf encoding under the engine's change counter
//! ([`crate::pod::table::generation`]); while the counter stands, the next List sends the same
//! bytes. A filtered List is built afresh each time.
//!
//! The two reply types replace prost's generated ones (build.rs maps them here with
//! `extern_path`): the same fields and wire format, plus an optional encoding that, when
//! present, is what goes on the wire.

use std::sync::Mutex;

use bytes::{BufMut, Bytes};
use prost::encoding::{message, skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::api::{Container, PodSandbox};

macro_rules! list_reply {
    ($(#[$doc:meta])* $name:ident, $field:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq)]
        pub struct $name {
            pub $field: Vec<$item>,
            /// The encoding of the whole reply; when set, `$field` is empty and unused.
            encoded: Option<Bytes>,
        }

        impl $name {
            pub fn new($field: Vec<$item>) -> Self {
                $name {
                    $field,
                    encoded: None,
                }
            }

            /// A reply whose encoding is `bytes` (what [`Message::encode_to_vec`] gave).
            pub(crate) fn from_encoded(bytes: Bytes) -> Self {
                $name {
                    $field: Vec::new(),
                    encoded: Some(bytes),
                }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match &self.encoded {
                    Some(b) => write!(f, "{}({} encoded bytes)", stringify!($name), b.len()),
                    None => f
                        .debug_struct(stringify!($name))
                        .field(stringify!($field), &self.$field)
                        .finish(),
                }
            }
        }

        impl Message for $name {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                match &self.encoded {
                    Some(b) => buf.put_slice(b),
                    None => message::encode_repeated(1, &self.$field, buf),
                }
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl bytes::Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                match tag {
                    1 => message::merge_repeated(wire_type, &mut self.$field, buf, ctx).map_err(
                        |mut e| {
                            e.push(stringify!($name), stringify!($field));
                            e
                        },
                    ),
                    _ => skip_field(wire_type, tag, buf, ctx),
                }
            }

            fn encoded_len(&self) -> usize {
                match &self.encoded {
                    Some(b) => b.len(),
                    None => message::encoded_len_repeated(1, &self.$field),
                }
            }

            fn clear(&mut self) {
                self.$field.clear();
                self.encoded = None;
            }
        }
    };
}

list_reply!(
    /// `runtime.v1.ListPodSandboxResponse`.
    ListPodSandboxResponse,
    items,
    PodSandbox
);
list_reply!(
    /// `runtime.v1.ListContainersResponse`.
    ListContainersResponse,
    containers,
    Container
);

/// The last unfiltered reply of one List, and the change count it was built at.
#[derive(Default)]
pub(crate) struct Kept(Mutex<Option<(u64, Bytes)>>);

impl Kept {
    /// The kept encoding if it was built at `generation` (the change count read before this
    /// call reads anything); else `build`'s reply, encoded and kept under it. A change made
    /// while building moves the count past it, so the next call builds again rather than
    /// send a stale reply.
    pub(crate) fn get<M: Message>(&self, generation: u64, build: impl FnOnce() -> M) -> Bytes {
        if let Some((g, b)) = &*self.0.lock().unwrap() {
            if *g == generation {
                return b.clone();
            }
        }
        let bytes = Bytes::from(build().encode_to_vec());
        *self.0.lock().unwrap() = Some((generation, bytes.clone()));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PodSandboxMetadata;

    fn pod(id: &str) -> PodSandbox {
        PodSandbox {
            id: id.into(),
            metadata: Some(PodSandboxMetadata {
                name: format!("{id}-name"),
                ..Default::default()
            }),
            labels: [("a".to_string(), "b".to_string())].into(),
            created_at: 7,
            ..Default::default()
        }
    }

    #[test]
    fn the_kept_encoding_is_what_the_items_encode_to_and_decodes_back() {
        let items = vec![pod("x"), pod("y")];
        let plain = ListPodSandboxResponse::new(items.clone());
        let bytes = Bytes::from(plain.encode_to_vec());
        let kept = ListPodSandboxResponse::from_encoded(bytes.clone());
        assert_eq!(kept.encoded_len(), plain.encoded_len());
        assert_eq!(kept.encode_to_vec(), bytes.to_vec());
        let back = ListPodSandboxResponse::decode(&bytes[..]).unwrap();
        assert_eq!(back.items, items);
        // An unknown field (a newer runtime.v1) is skipped, not an error.
        let mut with_unknown = bytes.to_vec();
        with_unknown.extend_from_slice(&[0x10, 0x01]);
        let back = ListPodSandboxResponse::decode(&with_unknown[..]).unwrap();
        assert_eq!(back.items.len(), 2);
    }

    #[test]
    fn a_change_makes_the_next_get_build_again() {
        let kept = Kept::default();
        let builds = std::cell::Cell::new(0);
        let get = |generation: u64, n: usize| {
            kept.get(generation, || {
                builds.set(builds.get() + 1);
                ListContainersResponse::new(vec![Container::default(); n])
            })
        };
        let a = get(5, 1);
        let b = get(5, 2);
        assert_eq!(a, b, "nothing changed: the kept reply");
        let c = get(6, 3);
        assert_ne!(a, c);
        let back = ListContainersResponse::decode(&c[..]).unwrap();
        assert_eq!(back.containers.len(), 3);
        assert_eq!(builds.get(), 2);
    }
}
