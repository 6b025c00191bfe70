//! Where the process runs: OpenTelemetry resource attributes, read once at
//! init so the hook does no environment or file I/O.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::options::Options;

#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub attributes: BTreeMap<String, Value>,
}

/// Kubernetes Downward API variables and the resource key each fills.
const K8S_ENV: &[(&str, &str)] = &[
    ("POD_NAME", "k8s.pod.name"),
    ("K8S_POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("K8S_NAMESPACE", "k8s.namespace.name"),
    ("K8S_NAMESPACE_NAME", "k8s.namespace.name"),
    ("NODE_NAME", "k8s.node.name"),
    ("K8S_NODE_NAME", "k8s.node.name"),
    ("POD_UID", "k8s.pod.uid"),
    ("K8S_POD_UID", "k8s.pod.uid"),
    ("CONTAINER_NAME", "k8s.container.name"),
    ("K8S_CONTAINER_NAME", "k8s.container.name"),
];

impl Resource {
    pub fn detect(options: &Options) -> Resource {
        Self::from_lookup(options, |k| std::env::var(k).ok())
    }

    /// Detection over any variable source, so tests need not touch the process env.
    pub fn from_lookup(options: &Options, var: impl Fn(&str) -> Option<String>) -> Resource {
        let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
        let var = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(list) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for pair in list.split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    let (k, v) = (percent_decode(k.trim()), percent_decode(v.trim()));
                    if !k.is_empty() {
                        attrs.insert(k, Value::String(v));
                    }
                }
            }
        }
        for (env, key) in K8S_ENV {
            if let Some(v) = var(env) {
                attrs.entry((*key).to_string()).or_insert(Value::String(v));
            }
        }
        let service = options
            .service_name
            .clone()
            .or_else(|| var("OTEL_SERVICE_NAME"))
            .or_else(|| {
                attrs
                    .get("service.name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or_else(binary_name)
            .unwrap_or_else(|| "unknown_service".to_string());
        attrs.insert("service.name".into(), Value::String(service));
        if let Some(v) = &options.service_version {
            attrs.insert("service.version".into(), Value::String(v.clone()));
        }
        if let Some(e) = &options.environment {
            attrs.insert("deployment.environment".into(), Value::String(e.clone()));
        }
        if let Some(h) = var("HOSTNAME").or_else(read_hostname) {
            attrs.entry("host.name".into()).or_insert(Value::String(h));
        }
        attrs.insert("process.pid".into(), Value::from(std::process::id()));
        Resource { attributes: attrs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

fn binary_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_stem()?.to_string_lossy().into_owned())
}

fn read_hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// OTEL_RESOURCE_ATTRIBUTES values are percent-encoded (W3C Baggage rules).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2)))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: Option<&u8>) -> Option<u8> {
    (*b? as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_otel_and_downward_api() {
        let env: BTreeMap<&str, &str> = [
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=1.4.2,team=pay%20ments",
            ),
            ("OTEL_SERVICE_NAME", "checkout"),
            ("POD_NAME", "checkout-7d9f"),
            ("POD_NAMESPACE", "shop"),
            ("NODE_NAME", "node-3"),
            ("HOSTNAME", "checkout-7d9f"),
        ]
        .into_iter()
        .collect();
        let options = Options::default().with_environment("prod");
        let r = Resource::from_lookup(&options, |k| env.get(k).map(|v| v.to_string()));
        assert_eq!(r.get("service.name"), Some("checkout"));
        assert_eq!(r.get("service.version"), Some("1.4.2"));
        assert_eq!(r.get("team"), Some("pay ments"));
        assert_eq!(r.get("k8s.pod.name"), Some("checkout-7d9f"));
        assert_eq!(r.get("k8s.namespace.name"), Some("shop"));
        assert_eq!(r.get("k8s.node.name"), Some("node-3"));
        assert_eq!(r.get("deployment.environment"), Some("prod"));
        assert!(r.attributes.contains_key("process.pid"));
    }

    #[test]
    fn service_name_falls_back_to_the_binary() {
        let r = Resource::from_lookup(&Options::default(), |_| None);
        assert!(!r.get("service.name").unwrap_or("").is_empty());
    }
}
