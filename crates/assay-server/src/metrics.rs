//! Prometheus counters, gauges and histograms, written out by hand in the text exposition
//! format (a handful of series does not need a metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Picks one counter of an `EngineMetrics`.
type Counter = fn(&EngineMetrics) -> &AtomicU64;

/// Per-model engine figures, updated by the engine thread.
#[derive(Default)]
pub struct EngineMetrics {
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub batch_size: AtomicU64,
    pub steps: AtomicU64,
    pub judge_checks: AtomicU64,
    pub prefix_cache_hits: AtomicU64,
    pub prefix_cache_misses: AtomicU64,
}

impl EngineMetrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Everything `/metrics` reports.
#[derive(Default)]
pub struct Metrics {
    /// Requests by (route, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().expect("metrics lock").entry((route.to_string(), status)).or_default() += 1;
        self.latency.lock().expect("metrics lock").entry(route.to_string()).or_default().observe(seconds);
    }

    /// The text exposition of every series; `engines` gives per model its metrics and its
    /// current queue depth (requests waiting or running).
    pub fn render(&self, engines: &[(&str, &EngineMetrics, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP assay_requests_total HTTP requests by route and status.\n# TYPE assay_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "assay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP assay_request_duration_seconds Time to the response head (streams: to the first byte).\n# TYPE assay_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().expect("metrics lock").iter() {
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(out, "assay_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "assay_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "assay_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "assay_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        let series: [(&str, &str, &str, Counter); 7] = [
            ("assay_prompt_tokens_total", "counter", "Prompt tokens prefilled for generation.", |m| &m.prompt_tokens),
            ("assay_generated_tokens_total", "counter", "Tokens generated.", |m| &m.generated_tokens),
            ("assay_batch_size", "gauge", "Sequences in the last batched forward pass.", |m| &m.batch_size),
            ("assay_engine_steps_total", "counter", "Batched forward passes.", |m| &m.steps),
            ("assay_judge_checks_total", "counter", "Checks judged.", |m| &m.judge_checks),
            ("assay_prefix_cache_hits_total", "counter", "Judge prompt prefixes found in the prefix cache.", |m| &m.prefix_cache_hits),
            ("assay_prefix_cache_misses_total", "counter", "Judge prompt prefixes computed.", |m| &m.prefix_cache_misses),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (model, m, _) in engines {
                let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", get(m).load(Ordering::Relaxed));
            }
        }
        out.push_str("# HELP assay_queue_depth Requests waiting or running per model.\n# TYPE assay_queue_depth gauge\n");
        for (model, _, depth) in engines {
            let _ = writeln!(out, "assay_queue_depth{{model=\"{model}\"}} {depth}");
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
        let e = EngineMetrics::default();
        EngineMetrics::add(&e.generated_tokens, 7);
        let text = m.render(&[("smollm2", &e, 3)]);
        assert!(text.contains("assay_requests_total{route=\"/v1/models\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("assay_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("assay_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.25\"} 3"), "{text}");
        assert!(text.contains("assay_generated_tokens_total{model=\"smollm2\"} 7"), "{text}");
        assert!(text.contains("assay_queue_depth{model=\"smollm2\"} 3"), "{text}");
    }
}
