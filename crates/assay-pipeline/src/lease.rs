//! Leases on runs: the process that works on a run (a judge or optimise run, from the CLI or
//! a server) holds its lease and renews it as it goes, so that two processes never compute the
//! same run at once. A lease lapses after `TTL_S` without renewal, or at once when its holder
//! was a process on this machine that no longer exists (a killed run resumes right away).

use crate::error::{PipelineError, Result};
use assay_store::{RunId, Store};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long a claim holds without renewal; work renews it at every chunk or item.
const TTL_S: i64 = 15 * 60;

/// This process, as it names itself in leases: host, pid and start time.
fn me() -> &'static str {
    static ME: OnceLock<String> = OnceLock::new();
    ME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}:{}", std::process::id(), now())
    })
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Whether the holder named `owner` may still be working: its claim has not lapsed, and if it
/// is a process of this host, that process exists.
fn alive(owner: &str, until: i64) -> bool {
    if until < now() {
        return false;
    }
    let mine = me().split(':').next();
    let mut parts = owner.split(':');
    match (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) {
        (host, Some(pid)) if host == mine && cfg!(target_os = "linux") => std::path::Path::new(&format!("/proc/{pid}")).exists(),
        _ => true,
    }
}

/// A claim on one run, released when the work ends.
pub struct RunLease {
    run: RunId,
}

impl RunLease {
    /// Claims `run` for this process, or says who works on it.
    pub fn claim(store: &mut Store, run: RunId) -> Result<Self> {
        let held = store.run_lease(run)?;
        if let Some((owner, until)) = &held {
            if owner != me() && alive(owner, *until) {
                return Err(PipelineError::Busy(format!("run {run} is being worked on by another process ({owner}); try again when it ends")));
            }
        }
        if !store.swap_run_lease(run, held.as_ref().map(|h| h.0.as_str()), Some(me()), now() + TTL_S)? {
            return Err(PipelineError::Busy(format!("run {run} is being worked on by another process (claimed just now); try again when it ends")));
        }
        Ok(Self { run })
    }

    /// Extends the claim (between chunks of work).
    pub fn renew(&self, store: &mut Store) -> Result<()> {
        if store.swap_run_lease(self.run, Some(me()), Some(me()), now() + TTL_S)? {
            Ok(())
        } else {
            Err(PipelineError::Busy(format!("run {} was taken over by another process", self.run)))
        }
    }

    /// Gives the run up.
    pub fn release(self, store: &mut Store) -> Result<()> {
        store.swap_run_lease(self.run, Some(me()), None, 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_worked_on_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("assay.db")).unwrap();
        let project = store.create_project(&assay_store::NewProject { name: "p".into(), generation_prompt: "x".into(), ..Default::default() }).unwrap();
        let run = store.create_run(project.id, &assay_store::NewRun { kind: assay_store::RunKind::Discovery, set_version: None, dataset: None, params: serde_json::json!({}) }).unwrap();
        let lease = RunLease::claim(&mut store, run.id).unwrap();
        lease.renew(&mut store).unwrap();
        // Another live process of this host holds it (pid 1 exists on Linux).
        let host = me().split(':').next().unwrap().to_string();
        let other = format!("{host}:1:0");
        assert!(store.swap_run_lease(run.id, Some(me()), Some(&other), now() + 60).unwrap());
        let err = RunLease::claim(&mut store, run.id).err().unwrap().to_string();
        assert!(err.contains("being worked on by another process") && err.contains(&other), "{err}");
        // A holder of this host that is gone, or one whose claim lapsed, does not hold it.
        assert!(store.swap_run_lease(run.id, Some(&other), Some(&format!("{host}:4000000:0")), now() + 60).unwrap());
        RunLease::claim(&mut store, run.id).unwrap();
        assert!(store.swap_run_lease(run.id, Some(me()), Some("elsewhere:7:0"), now() - 1).unwrap());
        let lease2 = RunLease::claim(&mut store, run.id).unwrap();
        lease2.release(&mut store).unwrap();
        assert_eq!(store.run_lease(run.id).unwrap(), None);
    }
}
