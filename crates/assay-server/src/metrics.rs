//! Prometheus counters, gauges and histograms, written out by hand in the text exposition
//! format (a handful of series does not need a metrics framework).

use assay_engine::EngineStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket of `LATENCY_BUCKETS`.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (b, &bound) in self.buckets.iter_mut().zip(&LATENCY_BUCKETS) {
            if v <= bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

/// One per-model series: name, type, help, and its value from an engine's figures.
type Series = (&'static str, &'static str, &'static str, fn(&EngineStats) -> f64);

/// Per-model series, from `assay_engine::Engine::stats`.
const ENGINE_SERIES: [Series; 13] = [
    ("assay_prompt_tokens_total", "counter", "Prompt tokens of sequences admitted (generation and judging).", |s| s.scheduler.prompt_tokens as f64),
    ("assay_prompt_tokens_reused_total", "counter", "Prompt tokens whose keys and values were found in the prefix tree.", |s| s.scheduler.reused_tokens as f64),
    ("assay_prefix_hit_rate", "gauge", "Share of prompt tokens found in the prefix tree since start.", |s| s.scheduler.reused_tokens as f64 / (s.scheduler.prompt_tokens.max(1)) as f64),
    ("assay_generated_tokens_total", "counter", "Tokens generated.", |s| s.generated_tokens as f64),
    ("assay_judge_checks_total", "counter", "Checks judged.", |s| s.judge_checks as f64),
    ("assay_engine_steps_total", "counter", "Scheduler steps (batched forward passes).", |s| s.scheduler.steps as f64),
    ("assay_batch_rows", "gauge", "Tokens (rows) in the last step.", |s| s.scheduler.last_step_rows as f64),
    ("assay_preemptions_total", "counter", "Sequences preempted for KV blocks (recomputed later).", |s| s.scheduler.preemptions as f64),
    ("assay_kv_blocks_used", "gauge", "KV pool blocks in use (by sequences or the prefix tree).", |s| s.scheduler.pool.used as f64),
    ("assay_kv_blocks_free", "gauge", "KV pool blocks free.", |s| s.scheduler.pool.free as f64),
    ("assay_kv_blocks_cached", "gauge", "KV pool blocks the prefix tree holds (evictable when no sequence uses them).", |s| s.scheduler.cached_blocks as f64),
    ("assay_sequences_waiting", "gauge", "Sequences waiting to start.", |s| s.scheduler.waiting as f64),
    ("assay_queue_depth", "gauge", "Requests waiting or running.", |s| s.requests as f64),
];

/// Everything `/metrics` reports.
#[derive(Default)]
pub struct Metrics {
    /// Requests by (route, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Connections closed on accept because `--max-connections` were open.
    refused_connections: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().expect("metrics lock").entry((route.to_string(), status)).or_default() += 1;
        self.latency.lock().expect("metrics lock").entry(route.to_string()).or_default().observe(seconds);
    }

    pub fn record_refused_connection(&self) {
        self.refused_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The text exposition of every series; `engines` gives per model its engine's figures.
    pub fn render(&self, engines: &[(String, EngineStats)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP assay_requests_total HTTP requests by route and status.\n# TYPE assay_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "assay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let refused = self.refused_connections.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP assay_refused_connections_total Connections closed on accept (--max-connections open).\n# TYPE assay_refused_connections_total counter\nassay_refused_connections_total {refused}"
        );
        out.push_str("# HELP assay_request_duration_seconds Time to the response head (streams: to the first byte).\n# TYPE assay_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().expect("metrics lock").iter() {
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(out, "assay_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "assay_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "assay_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "assay_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        for (name, kind, help, get) in ENGINE_SERIES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (model, stats) in engines {
                let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", get(stats));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record_request("/v1/models", 200, 0.003);
        m.record_request("/v1/models", 200, 0.2);
        m.record_request("/v1/models", 401, 0.001);
        let mut e = EngineStats { generated_tokens: 7, requests: 3, ..EngineStats::default() };
        e.scheduler.prompt_tokens = 100;
        e.scheduler.reused_tokens = 25;
        let text = m.render(&[("smollm2".to_string(), e)]);
        assert!(text.contains("assay_requests_total{route=\"/v1/models\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("assay_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("assay_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.25\"} 3"), "{text}");
        assert!(text.contains("assay_generated_tokens_total{model=\"smollm2\"} 7"), "{text}");
        assert!(text.contains("assay_queue_depth{model=\"smollm2\"} 3"), "{text}");
        assert!(text.contains("assay_prefix_hit_rate{model=\"smollm2\"} 0.25"), "{text}");
    }
}
