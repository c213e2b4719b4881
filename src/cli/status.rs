//! kubectl's error output for the local API's failures: the API answers with a Kubernetes
//! `Status` object (reason NotFound, code 404, message `pods "web" not found`) and the CLI
//! prints `Error from server (NotFound): pods "web" not found` and exits 1, as kubectl does.

use serde::{Deserialize, Serialize};

/// The fields of a meta/v1 Status that kubectl shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    pub kind: String,
    pub api_version: String,
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: u16,
}

impl ApiStatus {
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> ApiStatus {
        ApiStatus {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        }
    }

    /// `pods "NAME" not found`, as the API server words it.
    pub fn pod_not_found(name: &str) -> ApiStatus {
        ApiStatus::failure(404, "NotFound", format!("pods \"{name}\" not found"))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiStatus {
        ApiStatus::failure(400, "BadRequest", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiStatus {
        ApiStatus::failure(422, "Invalid", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiStatus {
        ApiStatus::failure(500, "InternalError", message)
    }

    /// The line kubectl prints for it.
    pub fn kubectl_line(&self) -> String {
        if self.reason.is_empty() {
            format!("Error from server: {}", self.message)
        } else {
            format!("Error from server ({}): {}", self.reason, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kubectl() {
        let s = ApiStatus::pod_not_found("web");
        assert_eq!(s.code, 404);
        assert_eq!(
            s.kubectl_line(),
            "Error from server (NotFound): pods \"web\" not found"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "Status");
        assert_eq!(json["apiVersion"], "v1");
    }
}
