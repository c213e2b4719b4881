//! `peapod logs`: what the daemon's log route sends, as pure functions. Container logs are
//! files in the CRI format (`<RFC3339Nano> <stream> <P|F> <text>`, one record per line, `P`
//! for a fragment of a longer line): they are decoded as kubelet's log reader decodes them,
//! so `peapod logs` prints what `kubectl logs` would.

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::status::ApiStatus;

/// kubectl's annotation naming the container `kubectl logs` and `exec` pick by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The query of a log request, as the API server's PodLogOptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
}

impl LogOptions {
    /// Reads `container=..&previous=true&follow=true&tailLines=N&timestamps=true`.
    pub fn from_query(query: Option<&str>) -> Result<LogOptions, ApiStatus> {
        let mut o = LogOptions::default();
        for kv in query
            .unwrap_or_default()
            .split('&')
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            let flag = || match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiStatus::bad_request(format!(
                    "{k}: invalid boolean {v:?}"
                ))),
            };
            match k {
                "container" => o.container = Some(v.to_string()).filter(|c| !c.is_empty()),
                "follow" => o.follow = flag()?,
                "previous" => o.previous = flag()?,
                "timestamps" => o.timestamps = flag()?,
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| {
                        ApiStatus::bad_request(format!("tailLines: invalid number {v:?}"))
                    })?;
                    // The API server treats a negative tail as "everything".
                    o.tail_lines = usize::try_from(n).ok();
                }
                // Other PodLogOptions (sinceSeconds, limitBytes...) are not supported, and
                // ignoring them would print something else than asked.
                _ => {
                    return Err(ApiStatus::bad_request(format!(
                        "unsupported log option {k:?}"
                    )))
                }
            }
        }
        Ok(o)
    }

    /// The query string for these options (empty or starting with `?`).
    pub fn to_query(&self) -> String {
        let mut q = Vec::new();
        if let Some(c) = &self.container {
            q.push(format!("container={c}"));
        }
        for (k, on) in [
            ("follow", self.follow),
            ("previous", self.previous),
            ("timestamps", self.timestamps),
        ] {
            if on {
                q.push(format!("{k}=true"));
            }
        }
        if let Some(n) = self.tail_lines {
            q.push(format!("tailLines={n}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    it.map(String::as_str).collect::<Vec<_>>().join(" ")
}

/// The container a log request is about: the one named, else the pod's only container, else
/// the one kubectl's default-container annotation names. Errors are worded as the API
/// server's (`a container name must be specified ...`, `container x is not valid ...`).
pub fn pick_container(pod: &Pod, asked: Option<&str>) -> Result<String, ApiStatus> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.unwrap_or_default();
    let all = || spec.containers.iter().chain(init.iter());
    let name = match asked {
        Some(c) => c.to_string(),
        None if spec.containers.len() == 1 => spec.containers[0].name.clone(),
        None => {
            let annotated = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
                .filter(|c| all().any(|x| &x.name == *c));
            match annotated {
                Some(c) => c.clone(),
                None => {
                    let mut msg = format!(
                        "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                        names(spec.containers.iter().map(|c| &c.name))
                    );
                    if !init.is_empty() {
                        msg.push_str(&format!(
                            " or one of the init containers: [{}]",
                            names(init.iter().map(|c| &c.name))
                        ));
                    }
                    return Err(ApiStatus::bad_request(msg));
                }
            }
        }
    };
    if !all().any(|c| c.name == name) {
        return Err(ApiStatus::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        )));
    }
    Ok(name)
}

/// The status of container `name` of the pod, init containers included.
pub fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .chain(st.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
}

/// Which log file (`<restart count>.log`) a request reads, or the API's error when there is
/// none to read: kubelet's wording for a missing previous instance and for a container that
/// has not started yet.
pub fn log_instance(pod: &Pod, container: &str, previous: bool) -> Result<i32, ApiStatus> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let st = container_status(pod, container);
    let restarts = st.map_or(0, |s| s.restart_count);
    if previous {
        let ran_before = st.is_some_and(|s| {
            s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
        });
        if restarts == 0 || !ran_before {
            return Err(ApiStatus::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
            )));
        }
        return Ok(restarts - 1);
    }
    let started = st
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        || st.is_some_and(|s| s.container_id.as_deref().is_some_and(|i| !i.is_empty()));
    if !started {
        let reason = st
            .and_then(|s| s.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_else(|| "ContainerCreating".into());
        return Err(ApiStatus::bad_request(format!(
            "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}"
        )));
    }
    Ok(restarts)
}

/// Whether the instance `instance` of the container has ended for good, so that a follow
/// may stop once its file is drained: it terminated, or a newer instance exists.
pub fn instance_done(pod: Option<&Pod>, container: &str, instance: i32) -> bool {
    let Some(pod) = pod else { return true };
    let Some(st) = container_status(pod, container) else {
        return true;
    };
    st.restart_count > instance
        || st
            .state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some() && s.running.is_none())
}

/// `2024-01-01T00:00:00.120000000Z` as Go's RFC3339Nano prints it (trailing zeros of the
/// fraction dropped), which is how kubelet prints timestamps for `--timestamps`.
pub fn rfc3339_nano(ts: &str) -> String {
    let Some(dot) = ts.find('.') else {
        return ts.to_string();
    };
    let rest = &ts[dot + 1..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let frac = rest[..end].trim_end_matches('0');
    let zone = &rest[end..];
    if frac.is_empty() {
        format!("{}{zone}", &ts[..dot])
    } else {
        format!("{}.{frac}{zone}", &ts[..dot])
    }
}

/// A streaming decoder of CRI log records into the lines kubectl prints: a partial (`P`)
/// record is held until the record that completes its line, and the line carries the first
/// fragment's timestamp, as kubelet's reader does.
#[derive(Debug, Default)]
pub struct Decoder {
    timestamps: bool,
    /// The line being assembled from partial records: (timestamp, text so far).
    pending: Option<(String, String)>,
}

impl Decoder {
    pub fn new(timestamps: bool) -> Decoder {
        Decoder {
            timestamps,
            pending: None,
        }
    }

    /// Decodes one record (one line of the file, without its newline); a complete line, with
    /// its newline, when the record ends one. A record that does not parse is skipped, as
    /// kubelet skips it.
    pub fn record(&mut self, raw: &str) -> Option<String> {
        let mut f = raw.splitn(4, ' ');
        let (ts, _stream, tag) = (f.next()?, f.next()?, f.next()?);
        let text = f.next().unwrap_or_default();
        let (ts0, mut line) = self
            .pending
            .take()
            .unwrap_or_else(|| (ts.to_string(), String::new()));
        line.push_str(text);
        if tag.split(':').any(|t| t == "P") {
            self.pending = Some((ts0, line));
            return None;
        }
        line.push('\n');
        Some(if self.timestamps {
            format!("{} {line}", rfc3339_nano(&ts0))
        } else {
            line
        })
    }

    /// What is still held at the end of the file: a line whose last fragment never came
    /// (the container died mid-line), printed without a newline as kubelet does.
    pub fn finish(&mut self) -> Option<String> {
        let (ts, line) = self.pending.take()?;
        Some(if self.timestamps {
            format!("{} {line}", rfc3339_nano(&ts))
        } else {
            line
        })
    }
}

/// The lines of a whole log file's text, decoded; the last `tail` of them when given. A
/// line whose last fragment is missing (the file ends mid-line) is the last one.
pub fn decode_all(text: &str, timestamps: bool, tail: Option<usize>) -> Vec<String> {
    let mut d = Decoder::new(timestamps);
    let mut out: Vec<String> = text.lines().filter_map(|l| d.record(l)).collect();
    out.extend(d.finish());
    if let Some(n) = tail {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    out
}

/// `peapod logs`: the route's body copied to stdout as it arrives.
pub async fn print(
    socket: &std::path::Path,
    namespace: &str,
    pod: &str,
    opts: &LogOptions,
) -> Result<(), super::client::ClientError> {
    use std::io::Write;
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}/log{}",
        opts.to_query()
    );
    let mut stdout = std::io::stdout();
    super::client::get_streamed(socket, &path, |chunk| {
        // A closed stdout (`| head`) ends the copy as kubectl's does: nothing more to print.
        let _ = stdout.write_all(chunk).and_then(|()| stdout.flush());
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, PodSpec,
        PodStatus,
    };

    const LOG: &str = "2024-01-01T00:00:00.000000000Z stdout F one\n\
                       2024-01-01T00:00:01.500000000Z stderr P tw\n\
                       2024-01-01T00:00:02.000000000Z stderr F o\n\
                       2024-01-01T00:00:03.123456789Z stdout F three\n";

    #[test]
    fn partial_records_join_into_one_line() {
        assert_eq!(decode_all(LOG, false, None), ["one\n", "two\n", "three\n"]);
    }

    #[test]
    fn timestamps_are_rfc3339nano_of_the_first_fragment() {
        assert_eq!(
            decode_all(LOG, true, None),
            [
                "2024-01-01T00:00:00Z one\n",
                "2024-01-01T00:00:01.5Z two\n",
                "2024-01-01T00:00:03.123456789Z three\n"
            ]
        );
    }

    #[test]
    fn tail_counts_decoded_lines() {
        assert_eq!(decode_all(LOG, false, Some(2)), ["two\n", "three\n"]);
        assert_eq!(decode_all(LOG, false, Some(0)), Vec::<String>::new());
        assert_eq!(decode_all(LOG, false, Some(10)).len(), 3);
    }

    #[test]
    fn an_unfinished_line_is_printed_without_newline_and_garbage_skipped() {
        let text = "garbage\n2024-01-01T00:00:00Z stdout F \n2024-01-01T00:00:00Z stdout P half";
        assert_eq!(decode_all(text, false, None), ["\n", "half"]);
    }

    #[test]
    fn streaming_decoder_holds_partials() {
        let mut d = Decoder::new(false);
        assert_eq!(d.record("2024-01-01T00:00:00Z stdout P a"), None);
        assert_eq!(d.record("2024-01-01T00:00:00Z stdout P b"), None);
        assert_eq!(
            d.record("2024-01-01T00:00:00Z stdout F c").as_deref(),
            Some("abc\n")
        );
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn query_round_trips() {
        let o = LogOptions {
            container: Some("app".into()),
            follow: true,
            previous: false,
            timestamps: true,
            tail_lines: Some(3),
        };
        let q = o.to_query();
        assert_eq!(q, "?container=app&follow=true&timestamps=true&tailLines=3");
        assert_eq!(LogOptions::from_query(Some(&q[1..])).unwrap(), o);
        assert_eq!(
            LogOptions::from_query(Some("tailLines=-1"))
                .unwrap()
                .tail_lines,
            None
        );
        assert_eq!(
            LogOptions::from_query(Some("sinceSeconds=5"))
                .unwrap_err()
                .code,
            400
        );
    }

    fn pod(apps: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            ..Default::default()
        };
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: apps.iter().map(c).collect(),
                init_containers: Some(init.iter().map(c).collect()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn container_defaulting_as_the_api_server() {
        assert_eq!(pick_container(&pod(&["a"], &[]), None).unwrap(), "a");
        assert_eq!(
            pick_container(&pod(&["a", "b"], &[]), None)
                .unwrap_err()
                .message,
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(
            pick_container(&pod(&["a", "b"], &["i"]), None)
                .unwrap_err()
                .kubectl_line(),
            "Error from server (BadRequest): a container name must be specified for pod web, \
             choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(
            pick_container(&pod(&["a"], &[]), Some("x"))
                .unwrap_err()
                .message,
            "container x is not valid for pod web"
        );
        assert_eq!(
            pick_container(&pod(&["a"], &["i"]), Some("i")).unwrap(),
            "i"
        );
        let mut p = pod(&["a", "b"], &[]);
        p.metadata.annotations = Some(
            [(DEFAULT_CONTAINER_ANNOTATION.to_string(), "b".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(pick_container(&p, None).unwrap(), "b");
    }

    fn with_status(restarts: i32, running: bool, last_terminated: bool) -> Pod {
        let mut p = pod(&["a"], &[]);
        let term = || ContainerState {
            terminated: Some(ContainerStateTerminated::default()),
            ..Default::default()
        };
        p.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "a".into(),
                restart_count: restarts,
                state: Some(if running {
                    ContainerState {
                        running: Some(ContainerStateRunning::default()),
                        ..Default::default()
                    }
                } else {
                    term()
                }),
                last_state: last_terminated.then(term),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn the_instance_read_and_kubelets_errors() {
        assert_eq!(log_instance(&with_status(2, true, true), "a", false), Ok(2));
        assert_eq!(log_instance(&with_status(2, true, true), "a", true), Ok(1));
        assert_eq!(
            log_instance(&with_status(0, true, false), "a", true)
                .unwrap_err()
                .message,
            "previous terminated container \"a\" in pod \"web\" not found"
        );
        assert_eq!(
            log_instance(&pod(&["a"], &[]), "a", false)
                .unwrap_err()
                .message,
            "container \"a\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        assert!(!instance_done(Some(&with_status(1, true, true)), "a", 1));
        assert!(instance_done(Some(&with_status(1, false, true)), "a", 1));
        assert!(instance_done(Some(&with_status(2, true, true)), "a", 1));
        assert!(instance_done(None, "a", 0));
    }
}
