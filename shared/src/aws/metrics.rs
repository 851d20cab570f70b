//! CloudWatch metrics from the functions, as embedded-metric-format (EMF) log lines.
//!
//! A line of JSON on standard output with an `_aws` block becomes metrics when Lambda ships
//! the log to CloudWatch: no API call, no extra latency on the hot path, and the numbers
//! stay next to the log lines that explain them. Metrics are per feed (dimension `Feed`)
//! in the namespace `feedstix`.

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "feedstix";

/// One metric value.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name, such as `Objects`.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// The CloudWatch unit: `Count`, `Bytes`, `Milliseconds`.
    pub unit: &'static str,
}

/// Formats one EMF line for `feed` with `metrics`, timestamped `at_ms` (Unix milliseconds).
pub fn line(feed: &str, metrics: &[Metric], at_ms: i64) -> String {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|m| json!({ "Name": m.name, "Unit": m.unit }))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Feed"]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Feed".into(), Value::String(feed.into()));
    for m in metrics {
        root.insert(m.name.into(), json!(m.value));
    }
    Value::Object(root).to_string()
}

/// Prints one EMF line to standard output, where Lambda's log shipping picks it up.
pub fn emit(feed: &str, metrics: &[Metric]) {
    println!(
        "{}",
        line(feed, metrics, chrono::Utc::now().timestamp_millis())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_every_metric_under_the_feed_dimension() {
        let text = line(
            "urlhaus",
            &[
                Metric {
                    name: "Objects",
                    value: 12.0,
                    unit: "Count",
                },
                Metric {
                    name: "SourceLatency",
                    value: 340.0,
                    unit: "Milliseconds",
                },
            ],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Feed"], "urlhaus");
        assert_eq!(v["Objects"], 12.0);
        assert_eq!(v["SourceLatency"], 340.0);
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "feedstix");
        assert_eq!(cw["Dimensions"][0][0], "Feed");
        assert_eq!(cw["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
