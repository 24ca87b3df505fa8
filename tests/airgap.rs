//! Air-gapped: the main job (the README's first command) and the server run inside a network
//! namespace with no network (`unshare -n`; as root, as in CI) and succeed: no model, tokenizer
//! or template is looked up anywhere but on this machine. The driver is
//! `tests/python/airgap.py`.

mod common;

use std::net::TcpListener;
use std::process::Command;

#[test]
fn the_main_job_and_the_server_work_without_a_network() {
    let store = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let out = Command::new("unshare")
        .args(["-n", "python3", "tests/python/airgap.py"])
        .arg(common::assay_bin())
        .arg(&port)
        .arg(store.path().join("airgap.db"))
        .current_dir(common::repo_root())
        .output()
        .expect("unshare (util-linux) runs the test in a network namespace of its own");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!log.contains("Operation not permitted"), "unshare -n needs root (CI runs as root):\n{log}");
    assert!(out.status.success(), "{log}");
    assert!(log.contains("main job: 200 judgments") && log.contains("server: chat and judge answered over loopback"), "{log}");
    eprintln!("{log}");
}
