//! `/status.json`: what the status page shows, from this host's point of
//! view.

use std::time::Instant;

use serde_json::{json, Value};

use super::limits::{ANCHORS_SHOWN_MAX, ANCHOR_DEPTH_MAX};
use crate::cap::context::HostContext;

/// The status document.
pub fn render(ctx: &HostContext) -> Value {
    let now = Instant::now();
    let self_id = ctx.node.peer_id().to_base58();
    let hosts: Vec<Value> = ctx
        .node
        .view()
        .hosts()
        .iter()
        .map(|(peer, entry)| {
            json!({
                "peer_id": peer.to_base58(),
                "age_ms": now.saturating_duration_since(entry.last_seen).as_millis() as u64,
                "ttl_ms": entry.ttl.as_millis() as u64,
            })
        })
        .collect();
    let processes = ctx.processes.summaries();
    let live: Vec<u64> = processes
        .iter()
        .filter(|p| p.state == "running")
        .map(|p| p.id)
        .collect();
    let reported: Vec<Value> = ctx
        .reported
        .live(&live)
        .into_iter()
        .map(|(pid, samples)| {
            let anchor = processes
                .iter()
                .find(|p| p.id == pid)
                .map(|p| p.anchor.clone())
                .unwrap_or_default();
            let samples: Vec<Value> = samples
                .iter()
                .map(|s| {
                    let labels: serde_json::Map<String, Value> = s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                        .collect();
                    json!({"name": s.name, "labels": labels, "value": s.value})
                })
                .collect();
            json!({"pid": pid, "anchor": anchor, "samples": samples})
        })
        .collect();
    let (anchors, truncated) = anchors(ctx);
    json!({
        "peer_id": self_id,
        "hosts": hosts,
        "anchors": anchors,
        "anchors_truncated": truncated,
        "processes": processes.iter().map(|p| json!({
            "id": p.id,
            "name": p.name,
            "state": p.state,
            "restarts": p.restarts,
            "anchor": p.anchor,
            "uptime_ms": p.uptime_ms,
        })).collect::<Vec<_>>(),
        "reported": reported,
    })
}

/// Paths of this host's anchor tree, breadth first, at most
/// [`ANCHORS_SHOWN_MAX`]; true if some were left out.
fn anchors(ctx: &HostContext) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut frontier: Vec<Vec<String>> = vec![Vec::new()];
    for _ in 0..ANCHOR_DEPTH_MAX {
        let mut next = Vec::new();
        for path in frontier {
            for child in ctx.tree.ls(&path) {
                if out.len() >= ANCHORS_SHOWN_MAX {
                    return (out, true);
                }
                let mut child_path = path.clone();
                child_path.push(child);
                out.push(format!("/{}", child_path.join("/")));
                next.push(child_path);
            }
        }
        if next.is_empty() {
            return (out, false);
        }
        frontier = next;
    }
    (out, !frontier.is_empty())
}
