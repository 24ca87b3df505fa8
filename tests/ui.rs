//! The expert workbench in a real browser (headless Chromium over WebDriver) against a real
//! `assay serve` with the real small models (SmolLM2, MiniLM) on real IFEval items: the whole
//! expert journey with JavaScript, its core without, and the guards (bad uploads, login,
//! cross-origin posts) over plain HTTP. Screenshots of every step land in `target/ui/<test>/`.
//! Nothing here depends on what the tiny model answers, only on the workbench doing its job.

mod common;

use common::browser::{Browser, WAIT};
use common::server::Server;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "ui-test-key";
/// Discovery and judge runs of the small model on a few items, on a busy 2-core machine.
const RUN: Duration = Duration::from_secs(600);

fn server() -> Server {
    Server::start(&["--embed-model", "minilm", "--api-key", KEY])
}

/// A `/v1` call with the key, answered JSON.
fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = ureq::request(method, &format!("{}{path}", server.base)).set("Authorization", &format!("Bearer {KEY}"));
    let (status, text, _) = server.call(req, body.map(|b| b.to_string()).as_deref());
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// IFEval items from `../shared/data`, prepared as `assay data import` reads them.
fn ifeval_items(dir: &Path, items: usize) -> PathBuf {
    let out = std::process::Command::new("python3")
        .args(["examples/ifeval/prepare.py", "--out", dir.to_str().unwrap(), "--checks", "4", "--items", &items.to_string()])
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("items.jsonl")
}

/// Small generation budgets keep discovery short on CI.
fn small_budgets(server: &Server, project: &str) {
    let config = json!({
        "generators": [{"name": "careful", "temperature": 0.2, "variant": "as_written", "max_tokens": 32}],
        "answer_tokens": 64
    });
    let (status, body) = api(server, "PUT", &format!("/v1/projects/{project}/config"), Some(config));
    assert_eq!(status, 200, "{body}");
}

async fn log_in(b: &mut Browser, server: &Server, reviewer: &str) {
    b.goto(&format!("{}/ui", server.base)).await;
    assert!(b.current_url().await.contains("/ui/login"), "a browser without the cookie gets the login page");
    b.fill("#key", KEY).await;
    b.fill("#reviewer", reviewer).await;
    b.shot("login").await;
    b.click("#login").await;
    b.wait_for("#new-project", WAIT).await;
    let cookies = b.cookies().await;
    let session = cookies.iter().find(|(name, _)| name == "assay_session").expect("a session cookie");
    assert_ne!(session.1, KEY, "the cookie is not the key");
}

async fn create_project(b: &mut Browser, name: &str) {
    b.fill("#name", name).await;
    b.fill("#task", "Follow the user's instructions").await;
    b.fill("#generation_prompt", "Follow every instruction in the user's request exactly.").await;
    b.click("#create").await;
    b.wait_for_text("h1", name, WAIT).await;
}

async fn upload(b: &mut Browser, server: &Server, project: &str, file: &Path, name: &str) {
    b.goto(&format!("{}/ui/p/{project}/data/new", server.base)).await;
    b.fill("#dataset-name", name).await;
    b.upload("#file", file).await;
    b.click("#upload").await;
}

/// Text of `css` read in one script call: the live status block is swapped while a WebDriver
/// element reference would be held.
async fn live_text(b: &Browser, css: &str) -> String {
    b.execute(&format!("const e = document.querySelector('{css}'); return e ? e.textContent : '';"), vec![]).await.as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expert_journey_in_a_browser() {
    let Some(mut b) = Browser::start("journey", true).await else { return };
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let items = ifeval_items(dir.path(), 4);
    log_in(&mut b, &server, "Dr Ada").await;
    create_project(&mut b, "ife").await;
    small_budgets(&server, "ife");
    b.shot("project").await;

    // A bad upload names the line and stores nothing.
    let bad = dir.path().join("bad.jsonl");
    let good_line = std::fs::read_to_string(&items).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&bad, format!("{good_line}\n{{\"id\": \"x\", \"input\": \n")).unwrap();
    upload(&mut b, &server, "ife", &bad, "broken").await;
    let error = b.wait_for_text("#upload-error", "line 2", WAIT).await;
    assert!(error.contains("bad.jsonl"), "{error}");
    b.shot("bad-upload").await;
    assert_eq!(api(&server, "GET", "/v1/projects/ife", None).1["datasets"], json!([]), "nothing stored");

    upload(&mut b, &server, "ife", &items, "ifeval").await;
    b.wait_for_text("#count", "4 item(s)", WAIT).await;
    b.shot("items").await;

    // Discovery with 3 checks, watched live: the status block changes without a reload.
    b.goto(&format!("{}/ui/p/ife/discover", server.base)).await;
    b.fill("#checks", "3").await;
    b.click("#discover").await;
    b.wait_for("#run-progress", WAIT).await;
    b.execute("window.__sameDocument = true; return true;", vec![]).await;
    let mut seen = vec![live_text(&b, "#run-count").await];
    let started = std::time::Instant::now();
    while live_text(&b, "#run-done").await.is_empty() {
        assert!(started.elapsed() < RUN, "discovery did not finish: {}", live_text(&b, "#live").await);
        assert!(live_text(&b, "#run-state").await != "failed", "discovery failed: {}", live_text(&b, "#live").await);
        let now = live_text(&b, "#run-count").await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.shot("discovery-done").await;
    assert!(seen.len() >= 3, "the progress bar advanced live: {seen:?}");
    assert_eq!(b.execute("return window.__sameDocument === true;", vec![]).await, json!(true), "updated in place, not reloaded");

    // A judge run with the new version, then the report against its JSON twin.
    b.click("#judge-now").await;
    b.wait_for("#to-report", RUN).await;
    b.shot("judge-done").await;
    b.click("#to-report").await;
    b.wait_for("#checks-table", RUN).await;
    b.shot("report").await;
    let (_, report) = api(&server, "GET", "/v1/projects/ife/report", None);
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(b.find_all("#checks-table tbody tr").await.len(), checks.len());
    for c in checks {
        let row = format!("#checks-table tr[data-check=\"{}\"]", c["id"].as_str().unwrap());
        assert_eq!(b.text(&format!("{row} .pass-rate")).await, format!("{:.3}", c["pass_rate"].as_f64().unwrap()), "pass rate of {}", c["id"]);
        let kappa = c["agreement"]["kappa"].as_f64().map_or("–".to_string(), |k| format!("{k:.3}"));
        assert_eq!(b.text(&format!("{row} .kappa")).await, kappa, "kappa of {}", c["id"]);
    }
    assert!(b.exists("figure.plot svg").await, "plots inline");
    // Air-gapped: every resource the page loaded came from this server.
    let loaded = b.execute("return performance.getEntriesByType('resource').map(e => e.name);", vec![]).await;
    assert!(loaded.as_array().unwrap().iter().all(|u| u.as_str().unwrap().starts_with(&server.base)), "{loaded}");
    let alternate = b.attr("link[rel=alternate]", "href").await.unwrap();
    assert!(alternate.starts_with("/v1/projects/ife/report"), "{alternate}");

    // Two questions answered by keyboard only.
    b.goto(&format!("{}/ui/p/ife/questions", server.base)).await;
    let open: usize = b.text("#open-count").await.split_whitespace().next().unwrap().parse().unwrap();
    assert!(open >= 3, "the runs raise questions: {open}");
    for n in 0..2 {
        b.press("j").await;
        b.wait_for("#ruling", WAIT).await;
        let before = b.current_url().await;
        b.press("e").await;
        b.press("p").await; // typed into the ruling, not a shortcut
        for key in " counts as a pass".chars() {
            b.press(&key.to_string()).await;
        }
        b.press("Escape").await;
        if b.exists("#label-pass").await {
            b.press(if n == 0 { "p" } else { "f" }).await;
        }
        b.shot(&format!("question-{n}")).await;
        b.press("s").await;
        for _ in 0..50 {
            if b.current_url().await != before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if n == 0 {
            b.goto(&format!("{}/ui/p/ife/questions", server.base)).await;
        }
    }
    let (_, all) = api(&server, "GET", "/v1/projects/ife/questions?all=true", None);
    let answered: Vec<&Value> = all["questions"].as_array().unwrap().iter().filter(|q| q["status"] == "answered").collect();
    assert_eq!(answered.len(), 2, "{all}");
    for q in &answered {
        assert_eq!(q["ruling"]["text"], "p counts as a pass");
        assert_eq!(q["ruling"]["rater"], "Dr Ada");
    }

    // Five labels by keyboard only in the unlabelled queue; the last one undone and given again.
    b.goto(&format!("{}/ui/p/ife/review?filter=unlabelled", server.base)).await;
    let labelled_before = api(&server, "GET", "/v1/projects/ife/labels", None).1["labels"].as_array().unwrap().len();
    b.wait_for("#position", WAIT).await;
    // `?` shows the keys; single-key shortcuts can be turned off there (WCAG 2.1.4).
    b.press("?").await;
    b.wait_for("#help[open]", WAIT).await;
    b.click("#shortcuts-toggle").await;
    b.press("Escape").await;
    b.wait_for_gone("#help[open]", WAIT).await;
    let position = b.text("#position").await;
    b.press("p").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.text("#position").await, position, "shortcuts off: p labels nothing");
    b.press("?").await;
    b.click("#shortcuts-toggle").await;
    b.press("Escape").await;
    b.wait_for_gone("#help[open]", WAIT).await;
    b.execute("window.__labelling = true; return true;", vec![]).await;
    for n in 0..5 {
        let position = b.text("#position").await;
        b.press(if n % 2 == 0 { "p" } else { "f" }).await;
        b.wait_for_text_matching("#position", "the next pair", |t| t != position, WAIT).await;
    }
    // A taller window for the README's picture of the review view.
    b.client().set_window_size(1280, 1100).await.unwrap();
    let picture = b.shot("labelled").await;
    std::fs::copy(&picture, common::repo_root().join("target/ui/review-view.png")).unwrap();
    b.client().set_window_size(1280, 800).await.unwrap();
    assert_eq!(b.execute("return window.__labelling === true;", vec![]).await, json!(true), "htmx swapped each next pair in, no reload");
    b.press("u").await;
    b.wait_for_gone("#undo-last", WAIT).await;
    let labels = api(&server, "GET", "/v1/projects/ife/labels", None).1;
    assert_eq!(labels["labels"].as_array().unwrap().len(), labelled_before + 4, "undo removed one: {labels}");
    let position = b.text("#position").await;
    b.press("f").await;
    b.wait_for_text_matching("#position", "the next pair", |t| t != position, WAIT).await;
    let labels = api(&server, "GET", "/v1/projects/ife/labels", None).1;
    let mine: Vec<&Value> = labels["labels"].as_array().unwrap().iter().filter(|l| l["rater"] == "Dr Ada").collect();
    // Before the queue, the only labels were those the answers gave, also Dr Ada's.
    assert_eq!((mine.len(), labels["labels"].as_array().unwrap().len()), (labelled_before + 5, labelled_before + 5), "{labels}");

    // The report's confusion matrix: each cell opens the review queue on its pairs.
    b.goto(&format!("{}/ui/p/ife/report", server.base)).await;
    let cell = b.wait_for("table.confusion a", RUN).await;
    let count: usize = cell.text().await.unwrap().parse().unwrap();
    cell.click().await.unwrap();
    b.wait_for("#cell", WAIT).await;
    let shown = b.text("#position").await;
    assert!(if count == 0 { shown.starts_with("Nothing") } else { shown.starts_with(&format!("1 of {count}")) }, "{shown} for a cell of {count}");
    b.shot("confusion-cell").await;

    // An item, a version and a check page, each with its JSON twin.
    let (_, detail) = api(&server, "GET", "/v1/projects/ife", None);
    let dataset = detail["datasets"][0]["name"].as_str().unwrap().to_string();
    let (_, page1) = api(&server, "GET", &format!("/v1/projects/ife/datasets/{dataset}/items?per_page=2"), None);
    let key = page1["items"][0]["key"].as_str().unwrap().to_string();
    b.goto(&format!("{}/ui/p/ife/data/{dataset}/items/{key}", server.base)).await;
    b.wait_for_text("h1", &key, WAIT).await;
    b.goto(&format!("{}/ui/p/ife/sets/1", server.base)).await;
    b.wait_for_text("h1", "v1", WAIT).await;

    // A ruling previewed, then saved.
    let (_, open) = api(&server, "GET", "/v1/projects/ife/questions", None);
    let about_pair = open["questions"].as_array().unwrap().iter().find(|q| q["item_key"].is_string() && q["check"].is_string()).cloned().expect("an open question about one pair");
    b.goto(&format!("{}/ui/p/ife/questions/{}", server.base, about_pair["id"])).await;
    b.fill("#ruling", "Only the instruction's exact wording counts.").await;
    b.click("#label-fail").await;
    b.click("#preview-button").await;
    let summary = b.wait_for_text("#preview-summary", "This ruling flips", RUN).await;
    assert!(summary.contains("kappa"), "{summary}");
    assert_eq!(b.find("#ruling").await.prop("value").await.unwrap().unwrap(), "Only the instruction's exact wording counts.", "the draft is kept");
    b.shot("preview").await;
    b.click("#save").await;
    b.wait_for_gone("#preview-summary", WAIT).await;
    let (_, q) = api(&server, "GET", &format!("/v1/projects/ife/questions/{}", about_pair["id"]), None);
    assert_eq!(q["status"], "answered", "{q}");

    // Refine: the diff of v1 and v2 opens.
    b.goto(&format!("{}/ui/p/ife", server.base)).await;
    b.click("#refine").await;
    b.wait_for_text("h1", "v1 → v2", RUN).await;
    assert!(b.exists(".word-diff ins").await, "the rulings show as inserted words");
    b.shot("diff").await;

    // A check's page: where it comes from; "drop this check" goes through refine.
    let (_, v2) = api(&server, "GET", "/v1/projects/ife/sets/2", None);
    assert!(v2["set"]["checks"].as_array().unwrap().len() >= 2, "discovery wrote several checks: {v2}");
    let dropped = v2["set"]["checks"][0]["id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/ui/p/ife/sets/2/checks/{dropped}", server.base)).await;
    let (_, check) = api(&server, "GET", &format!("/v1/projects/ife/sets/2/checks/{dropped}"), None);
    let origin = b.text("#origin").await;
    assert_eq!(origin.starts_with("Written from error cluster"), check["origin"].is_object(), "{origin} / {}", check["origin"]);
    b.shot("check").await;
    b.fill("#check-why", "it repeats another check").await;
    b.click("#drop").await;
    b.wait_for_text("h1", "v2 → v3", RUN).await;
    assert!(b.text("main").await.contains(&format!("− {dropped}")), "the check is removed");

    // Optimise, then critique a gold output; a proposed check is adopted by answering its question.
    b.goto(&format!("{}/ui/p/ife", server.base)).await;
    b.execute("document.querySelector('details').open = true; return true;", vec![]).await;
    b.click("#optimise").await;
    b.wait_for("#run-done", RUN).await;
    b.shot("optimise-done").await;
    b.goto(&format!("{}/ui/p/ife/gold", server.base)).await;
    b.fill(".critique-note", "It restates the request instead of answering it.").await;
    b.click(".critique-button").await;
    let after = b.current_url().await;
    b.shot("critiqued").await;
    if after.contains("/questions/") {
        b.fill("#ruling", "add the check").await;
        b.click("#save").await;
        b.goto(&format!("{}/ui/p/ife", server.base)).await;
        b.click("#refine").await;
        b.wait_for_text("h1", "v3 → v4", RUN).await;
        assert!(b.text("main").await.contains("Added"), "the proposed check is in v3");
    } else {
        let (_, gold) = api(&server, "GET", "/v1/projects/ife/gold", None);
        assert!(gold["gold"].as_array().unwrap().iter().any(|g| g["status"] == "rejected"), "{gold}");
    }
    b.close().await;
}

/// The core of the journey with JavaScript off: forms and redirects alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_journey_without_javascript() {
    let Some(mut b) = Browser::start("no-javascript", false).await else { return };
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let items = ifeval_items(dir.path(), 3);
    log_in(&mut b, &server, "Dr Bo").await;
    create_project(&mut b, "nojs").await;
    upload(&mut b, &server, "nojs", &items, "ifeval").await;
    b.wait_for_text("#count", "3 item(s)", WAIT).await;
    // The checks IFEval's verifier defines, then a judge run started from the page.
    let checks: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("checks.json")).unwrap()).unwrap();
    assert_eq!(api(&server, "POST", "/v1/projects/nojs/sets", Some(json!({"checks": checks}))).0, 201);
    b.goto(&format!("{}/ui/p/nojs", server.base)).await;
    b.click("#next-step").await;
    // Without JavaScript the run page refreshes itself until the run is done.
    b.wait_for("#to-report", RUN).await;
    b.shot("judged").await;

    b.goto(&format!("{}/ui/p/nojs/review?filter=unlabelled", server.base)).await;
    for _ in 0..2 {
        let position = b.text("#position").await;
        b.click("#label-pass").await;
        b.wait_for_text_matching("#position", "the next pair", |t| t != position, WAIT).await;
    }
    assert_eq!(api(&server, "GET", "/v1/projects/nojs/labels", None).1["labels"].as_array().unwrap().len(), 2);

    b.goto(&format!("{}/ui/p/nojs/questions", server.base)).await;
    b.click("#first-question").await;
    b.fill("#ruling", "Read the instruction literally.").await;
    b.click("#save").await;
    // The page after saving has a `#ruling` too (the next question), so the ruling is read
    // back from the API until it lands rather than after the first match.
    let asked = std::time::Instant::now();
    loop {
        let (_, all) = api(&server, "GET", "/v1/projects/nojs/questions?all=true", None);
        let answered = all["questions"].as_array().unwrap().iter().filter(|q| q["status"] == "answered").count();
        if answered == 1 || asked.elapsed() > WAIT {
            assert_eq!(answered, 1, "{all}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    b.goto(&format!("{}/ui/p/nojs", server.base)).await;
    b.click("#refine").await;
    b.wait_for_text("h1", "v1 → v2", RUN).await;
    b.shot("refined").await;
    b.close().await;
}

/// The guards, over plain HTTP: no key or cookie, a cross-origin post, a bad CSV column.
#[test]
fn login_csrf_and_bad_uploads_are_refused() {
    let server = server();
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let status = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.header("Location").unwrap_or("").to_string(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    // A browser page without the cookie: to the login; the API: 401.
    let (code, location, _) = status(agent.get(&format!("{}/ui/p/x/review?filter=flips", server.base)).call());
    assert_eq!((code, location.as_str()), (303, "/ui/login?next=/ui/p/x/review%3Ffilter%3Dflips"));
    assert_eq!(status(agent.get(&format!("{}/v1/projects", server.base)).call()).0, 401);
    assert_eq!(status(agent.get(&format!("{}/ui/static/htmx-4.0.1.min.js", server.base)).call()).0, 200, "static files need no login");
    // A wrong key gives no cookie; the right one gives a session cookie that opens pages and the API.
    let (code, _, _) = status(agent.post(&format!("{}/ui/login", server.base)).send_form(&[("key", "nope"), ("reviewer", "x")]));
    assert_eq!(code, 401);
    let r = agent.post(&format!("{}/ui/login", server.base)).send_form(&[("key", KEY), ("reviewer", "x"), ("next", "https://evil.example/")]).unwrap();
    assert_eq!((r.status(), r.header("Location")), (303, Some("/ui")), "no redirect off the workbench");
    let cookie = r.all("Set-Cookie").into_iter().find(|c| c.starts_with("assay_session=")).unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains(KEY), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = agent.get(&format!("{}/ui", server.base)).set("Cookie", &session).call().unwrap();
    let csp = page.header("Content-Security-Policy").unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(status(agent.get(&format!("{}/v1/projects", server.base)).set("Cookie", &session).call()).0, 200);
    // A post from another origin is refused even with the cookie, and creates nothing.
    let (code, _, body) =
        status(agent.post(&format!("{}/ui/projects", server.base)).set("Cookie", &session).set("Origin", "http://evil.example").send_form(&[("name", "evil"), ("generation_prompt", "x")]));
    assert_eq!(code, 403, "{body}");
    let (code, _, _) = status(agent.post(&format!("{}/ui/projects", server.base)).set("Cookie", &session).set("Origin", &server.base).send_form(&[("name", "good"), ("generation_prompt", "x")]));
    assert_eq!(code, 303);
    let (_, projects) = api(&server, "GET", "/v1/projects", None);
    let names: Vec<&str> = projects["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["good"]);
    // A CSV without the input column: the upload page names it and nothing is stored.
    let boundary = "xyzBOUNDARY";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nd\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"items.csv\"\r\nContent-Type: text/csv\r\n\r\nid,question,output\r\n1,hi,there\r\n\r\n--{boundary}--\r\n"
    );
    let (code, _, page) =
        status(agent.post(&format!("{}/ui/p/good/data", server.base)).set("Cookie", &session).set("Content-Type", &format!("multipart/form-data; boundary={boundary}")).send_string(&body));
    assert_eq!(code, 422, "{page}");
    assert!(page.contains("upload-error") && page.contains("input"), "{page}");
    assert_eq!(api(&server, "GET", "/v1/projects/good", None).1["datasets"], json!([]));
}
