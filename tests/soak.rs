//! A soak: `assay serve` with SmolLM2 under 8 clients for a bounded time, in bursts (8 s of
//! back-to-back requests, 2 s idle), each client mixing J2-shaped judging (K-QA answers of
//! `examples/kqa_items.jsonl` x the 25 checks of `examples/medical_answer_checks.json`, two
//! items per request), chat completions and streamed chat completions. Every request must
//! succeed; resident memory must stay under a stated bound while it runs and come back to its
//! baseline (plus the KV pool, a fixed budget the OS reserves as blocks are first used) after.

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
const SOAK: Duration = Duration::from_secs(60);
const KV_MIB: u64 = 256;
/// Memory beyond the baseline and the KV pool that the soak may take at its peak: requests'
/// activations, tokenizing, response buffers (measured: about 100 MiB).
const PEAK_ALLOWANCE_MIB: u64 = 512;
/// What may stay after it beyond the baseline and the KV pool.
const AFTER_ALLOWANCE_MIB: u64 = 128;

fn resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).unwrap_or(0) / 1024
}

/// In the idle part of a burst cycle (the last 2 s of every 10 s).
fn idle(started: Instant) -> bool {
    started.elapsed().as_secs() % 10 >= 8
}

#[test]
fn eight_clients_in_bursts_hold_memory_bounded_and_it_returns_after() {
    let server = Server::start(&["--kv-cache-mb", &KV_MIB.to_string()]);
    let pid = server.child.id();
    let items: Vec<Value> = std::fs::read_to_string(common::repo_root().join("examples/kqa_items.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let checks: Value = serde_json::from_str(&std::fs::read_to_string(common::repo_root().join("examples/medical_answer_checks.json")).unwrap()).unwrap();
    assert_eq!(server.post("/v1/chat/completions", &json!({"model": "smollm2", "messages": [{"role": "user", "content": "Warm up."}], "max_tokens": 4})).0, 200);
    let baseline = resident_mib(pid);

    let (peak, done) = (AtomicU64::new(baseline), AtomicBool::new(false));
    let statuses = Mutex::new(BTreeMap::<String, usize>::new());
    let judged = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(resident_mib(pid), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (server, items, checks, statuses, judged) = (&server, &items, &checks, &statuses, &judged);
                s.spawn(move || {
                    let mut round = client;
                    while started.elapsed() < SOAK {
                        if idle(started) {
                            std::thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                        let chat = |stream: bool| json!({"model": "smollm2", "messages": [{"role": "user", "content": format!("Client {client}, round {round}: explain one thing about sleep.")}], "max_tokens": 48, "temperature": 0.7, "seed": round, "stream": stream});
                        let (kind, status) = match round % 3 {
                            0 => {
                                let pair = [items[round % items.len()].clone(), items[(round + 1) % items.len()].clone()];
                                let (status, body) = server.post("/v1/judge", &json!({"checks": checks, "items": pair}));
                                if status == 200 {
                                    judged.fetch_add(body["results"].as_array().map_or(0, |r| r.iter().map(|i| i["judgments"].as_array().map_or(0, Vec::len)).sum::<usize>()) as u64, Ordering::Relaxed);
                                }
                                ("judge", status)
                            }
                            1 => ("chat", server.post("/v1/chat/completions", &chat(false)).0),
                            _ => {
                                let response = ureq::post(&format!("{}/v1/chat/completions", server.base)).send_json(chat(true));
                                let status = match response {
                                    Ok(r) => {
                                        let mut text = String::new();
                                        r.into_reader().read_to_string(&mut text).unwrap();
                                        if text.trim_end().ends_with("data: [DONE]") {
                                            200
                                        } else {
                                            599
                                        }
                                    }
                                    Err(ureq::Error::Status(code, _)) => code,
                                    Err(_) => 0,
                                };
                                ("stream", status)
                            }
                        };
                        *statuses.lock().unwrap().entry(format!("{kind} {status}")).or_default() += 1;
                        round += CLIENTS;
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let ran = started.elapsed();
    // The engine and the server release freed memory once idle (within a second).
    std::thread::sleep(Duration::from_secs(3));
    let (peak, after) = (peak.into_inner(), resident_mib(pid));
    let statuses = statuses.into_inner().unwrap();
    let requests: usize = statuses.values().sum();
    eprintln!(
        "soak: {CLIENTS} clients, {:.0} s, {requests} requests {statuses:?}, {} checks judged; resident memory: baseline {baseline} MiB, peak {peak} MiB, after {after} MiB (KV pool {KV_MIB} MiB)",
        ran.as_secs_f64(),
        judged.into_inner()
    );
    assert!(statuses.keys().all(|k| k.ends_with(" 200")), "every request must succeed: {statuses:?}");
    assert!(statuses.keys().filter(|k| k.starts_with("judge") || k.starts_with("chat") || k.starts_with("stream")).count() == 3, "each kind ran: {statuses:?}");
    assert!(peak <= baseline + KV_MIB + PEAK_ALLOWANCE_MIB, "peak {peak} MiB over baseline {baseline} + KV pool {KV_MIB} + {PEAK_ALLOWANCE_MIB} MiB");
    assert!(after <= baseline + KV_MIB + AFTER_ALLOWANCE_MIB, "after {after} MiB over baseline {baseline} + KV pool {KV_MIB} + {AFTER_ALLOWANCE_MIB} MiB");
    assert_eq!(server.get("/health").0, 200);
}
