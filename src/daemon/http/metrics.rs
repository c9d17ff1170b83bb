//! The daemon's Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! One registry for the whole daemon: ingest counts webhook outcomes and request durations,
//! the queue's counts are read at each scrape, and the worker records each stage's duration
//! when its run ends.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::daemon::queue::QueueState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `github`, `gitlab`, `generic`.
    pub source: String,
    /// `queued`, `ignored`, `duplicate`, `ping`, `signature_missing`, `bad_payload`…
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route as declared (`/api/runs/{id}`), never the raw path, so ids do not explode
    /// the number of series.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// A stage's series: its kind rather than its name, since stage names come from pushed
/// pipeline files and a pusher must not be able to add series without bound.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// As configured (`owner/name`): bounded by the daemon's configuration.
    pub repository: String,
    /// `build`, `push`, `deploy`.
    pub kind: String,
    /// How the stage ended: `succeeded`, `failed`, `rolled_back`, `timed_out`, `interrupted`.
    pub status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Mutex<Registry>,
    webhooks: Family<WebhookLabels, Counter>,
    requests: HistogramFamily<RequestLabels>,
    runs: Family<StateLabels, Gauge>,
    queue_depth: Gauge,
    stages: HistogramFamily<StageLabels>,
}

fn request_buckets() -> Histogram {
    // 0.5 ms to about 16 s: a hook answer is milliseconds, an SSE log stream can last long.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn stage_buckets() -> Histogram {
    // 0.5 s to about 68 min: a cached build takes a second, a blue/green deploy can take an hour.
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shipit_daemon");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by source and outcome",
            webhooks.clone(),
        );
        let requests: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(request_buckets as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status",
            requests.clone(),
        );
        let runs = Family::<StateLabels, Gauge>::default();
        registry.register("runs", "Runs in the queue by state", runs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Runs queued and not yet claimed",
            queue_depth.clone(),
        );
        let stages: HistogramFamily<StageLabels> =
            Family::new_with_constructor(stage_buckets as fn() -> Histogram);
        registry.register(
            "stage_duration_seconds",
            "Time the stages this daemon ran took, by repository, stage kind and how they ended",
            stages.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            webhooks,
            requests,
            runs,
            queue_depth,
            stages,
        }
    }

    pub fn stage(&self, labels: StageLabels, seconds: f64) {
        self.stages.get_or_create(&labels).observe(seconds);
    }

    pub fn webhook(&self, source: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn request(&self, labels: RequestLabels, seconds: f64) {
        self.requests.get_or_create(&labels).observe(seconds);
    }

    /// Sets the run gauges from the queue's counts, just before a scrape.
    pub fn set_runs(&self, counts: &[(QueueState, u64)]) {
        self.runs.clear();
        let mut queued = 0;
        for (state, count) in counts {
            let state_name = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            if *state == QueueState::Queued {
                queued = *count;
            }
            self.runs
                .get_or_create(&StateLabels { state: state_name })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// The text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_runs_and_queue_depth_are_exposed() {
        let metrics = Metrics::new();
        metrics.webhook("github", "queued");
        metrics.webhook("github", "queued");
        metrics.webhook("gitlab", "signature_mismatch");
        metrics.set_runs(&[(QueueState::Queued, 3), (QueueState::Running, 1)]);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"shipit_daemon_webhook_deliveries_total{source="github",outcome="queued"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"shipit_daemon_runs{state="running"} 1"#),
            "{text}"
        );
        assert!(text.contains("shipit_daemon_queue_depth 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn stage_durations_are_a_histogram_by_repository_kind_and_status() {
        let metrics = Metrics::new();
        let labels = StageLabels {
            repository: "acme/shop".into(),
            kind: "build".into(),
            status: "succeeded".into(),
        };
        metrics.stage(labels.clone(), 3.0);
        metrics.stage(labels, 700.0);
        let text = metrics.encode();
        let series = r#"repository="acme/shop",kind="build",status="succeeded""#;
        for line in [
            format!("shipit_daemon_stage_duration_seconds_count{{{series}}} 2"),
            format!("shipit_daemon_stage_duration_seconds_sum{{{series}}} 703.0"),
            format!(r#"shipit_daemon_stage_duration_seconds_bucket{{le="4.0",{series}}} 1"#),
            format!(r#"shipit_daemon_stage_duration_seconds_bucket{{le="1024.0",{series}}} 2"#),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }
}
