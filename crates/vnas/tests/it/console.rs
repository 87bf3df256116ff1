//! The console in a real browser: headless Chromium (Debian's `chromium`)
//! driven over WebDriver (`chromedriver`, from `chromium-driver`) with
//! fantoccini, against two real nodes. Signs in (a wrong token refused),
//! creates a vserver and sees it run, moves it and sees the new node and
//! the history entry with its pause, sees the API's error next to a bad
//! address, has a POST without the CSRF token refused (nothing changes),
//! drains and undrains a node, reads the rebalance plan, signs out. Every door is also tried without a session, as an
//! unprivileged local user could. The README's screenshots come from here.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::support::*;

const IP: &str = "127.0.40.1";

fn which(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name)
}

/// chromedriver and the browser it starts (its process group), ended when
/// the test ends, however it ends: a failed assertion leaves no browser.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

/// A plain client that follows no redirect: what a script or another
/// local user sends.
fn plain() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[test]
fn the_console_in_a_browser_signs_in_creates_moves_and_refuses_what_it_should() {
    let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
        cannot_run(
            "the console test",
            "no chromedriver or chromium (Debian's chromium-driver, chromium)",
            true,
        );
        return;
    };
    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    let base = n1.api.clone();
    let data = top.path().join("web");
    std::fs::create_dir_all(&data).unwrap();

    let port = free_port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts"),
    );
    eventually(20, "chromedriver to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Every door without a session: sent to sign in, or refused.
        let anyone = plain();
        let to_login = anyone.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(to_login.status().as_u16(), 303);
        assert_eq!(to_login.headers()["location"], "/login");
        for path in ["/parts/overview", "/parts/vservers/web/counters"] {
            let status = anyone.get(format!("{base}{path}")).send().await.unwrap().status();
            assert_eq!(status.as_u16(), 401, "{path}");
        }
        for path in ["/vservers", "/vservers/web/stop", "/nodes/n1/drain", "/rebalance", "/logout"] {
            let status =
                anyone.post(format!("{base}{path}")).form(&[("csrf", "x")]).send().await.unwrap().status();
            assert_eq!(status.as_u16(), 401, "POST {path} without a session");
        }

        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1200,1400"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session of headless Chromium");
        // An element's text once the page shows it: a click that submits
        // a form returns before the next page is there.
        let text = |css: &'static str| {
            let c = c.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match c.find(Locator::Css(css)).await {
                        Ok(element) => match element.text().await {
                            Ok(text) => return text,
                            Err(e) if Instant::now() > deadline => panic!("{css}: {e}"),
                            Err(_) => {}
                        },
                        Err(e) if Instant::now() > deadline => panic!("{css}: {e}"),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        // Until `css` shows a text `done` accepts (the page after a click).
        let until = |css: &'static str, done: fn(&str) -> bool| async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let shown = text(css).await;
                if done(&shown) || Instant::now() > deadline {
                    return shown;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };

        // Sign in: a wrong token first.
        c.goto(&base).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/login"));
        c.find(Locator::Css("#token")).await.unwrap().send_keys("not-the-token").await.unwrap();
        c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        assert!(text("#err-token").await.contains("wrong token"));
        assert!(c.get_named_cookie("vnas_session").await.is_err(), "no session for a wrong token");
        c.find(Locator::Css("#token")).await.unwrap().send_keys(&admin_token()).await.unwrap();
        c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        let nodes = text("#nodes").await;
        assert!(nodes.contains("n1") && nodes.contains("n2"), "{nodes}");
        let cookie = c.get_named_cookie("vnas_session").await.expect("a session cookie");
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");

        // An invalid address: the API's error next to the field.
        c.goto(&format!("{base}/vservers/new")).await.unwrap();
        c.find(Locator::Css("#name")).await.unwrap().send_keys("bad").await.unwrap();
        c.find(Locator::Css("#addresses")).await.unwrap().send_keys("10.1.2.3").await.unwrap();
        let volume = format!("/data={}", data.display());
        c.find(Locator::Css("#volumes")).await.unwrap().send_keys(&volume).await.unwrap();
        c.find(Locator::Css("form.stack button[type=submit]")).await.unwrap().click().await.unwrap();
        let error = text("#err-addresses").await;
        let body = serde_json::json!({"name": "bad", "addresses": ["10.1.2.3"],
            "volumes": [{"mount": "/data", "path": data.display().to_string()}]});
        let answer = anyone
            .post(format!("{base}/api/vservers"))
            .bearer_auth(admin_token())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400);
        let api: serde_json::Value = answer.json().await.unwrap();
        let code = api["code"].as_str().unwrap();
        assert!(error.contains(api["message"].as_str().unwrap()) && error.contains(code), "{error} / {api}");

        // Create: it runs on n1.
        c.goto(&format!("{base}/vservers/new")).await.unwrap();
        c.find(Locator::Css("#name")).await.unwrap().send_keys("web").await.unwrap();
        c.find(Locator::Css("#addresses")).await.unwrap().send_keys(IP).await.unwrap();
        c.find(Locator::Css("#volumes")).await.unwrap().send_keys(&volume).await.unwrap();
        c.find(Locator::Css("#exports"))
            .await
            .unwrap()
            .send_keys("/data:rw:no_root_squash:insecure")
            .await
            .unwrap();
        c.find(Locator::Css("#node")).await.unwrap().select_by_value("n1").await.unwrap();
        c.find(Locator::Css("form.stack button[type=submit]")).await.unwrap().click().await.unwrap();
        assert_eq!(text("#state").await.split_whitespace().next(), Some("running"));
        assert!(c.current_url().await.unwrap().path().ends_with("/vservers/web"));
        assert_eq!(text("#node").await, "n1");
        // The overview lists it, and refreshes itself.
        c.goto(&base).await.unwrap();
        assert!(text("#vservers").await.contains("web"));
        std::fs::create_dir_all(screenshot_path("")).unwrap();
        std::fs::write(screenshot_path("console-overview.png"), c.screenshot().await.unwrap()).unwrap();

        // Move it to n2: the page shows the new node and the move with its
        // pause; n2 itself says it serves it.
        c.goto(&format!("{base}/vservers/web")).await.unwrap();
        c.find(Locator::Css("#move-to")).await.unwrap().select_by_value("n2").await.unwrap();
        c.find(Locator::Css("#move")).await.unwrap().click().await.unwrap();
        assert_eq!(until("#node", |n| n == "n2").await, "n2");
        let history = text("#history").await;
        let last = history.lines().find(|l| l.contains("move")).unwrap_or_default().to_string();
        assert!(last.contains("n1 → n2") && last.contains(" ms"), "{history}");
        let served =
            anyone.get(format!("{}/api/node", n2.api)).bearer_auth(admin_token()).send().await.unwrap();
        let served: serde_json::Value = served.json().await.unwrap();
        assert!(served["serving"].as_array().unwrap().iter().any(|s| s["name"] == "web"), "{served}");
        // Its charts are fed by n2's counters: a client's calls show.
        let url = format!("nfs://{IP}/data?nfsport=2049&mountport=2049");
        let mut probe =
            Command::new(nfsprobe()).args(["probe", &url, "8", "10"]).stdout(Stdio::null()).spawn().unwrap();
        let calls = || async {
            let shown = text("[data-series=calls] output").await;
            shown.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while (calls().await <= 0.0 || text(".served-by").await != "n2") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(text(".served-by").await, "n2");
        assert!(calls().await > 0.0, "the calls/s chart shows the client's calls");
        // A few points drawn before the picture is taken.
        let points = || async {
            let line = c.find(Locator::Css("[data-series=calls] polyline")).await.unwrap();
            line.attr("points").await.unwrap().unwrap_or_default().split_whitespace().count()
        };
        while points().await < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        std::fs::write(screenshot_path("console-vserver.png"), c.screenshot().await.unwrap()).unwrap();
        assert!(probe.wait().unwrap().success(), "the client saw errors");

        // A cross-site POST: the session cookie without the form's CSRF
        // token (or with a wrong one) is refused and changes nothing.
        let with_cookie = |csrf: Option<&'static str>| {
            let request = anyone
                .post(format!("{base}/vservers/web/stop"))
                .header("cookie", format!("vnas_session={}", cookie.value()));
            match csrf {
                Some(csrf) => request.form(&[("csrf", csrf)]),
                None => request.form(&[("x", "1")]),
            }
        };
        for csrf in [None, Some("0000")] {
            let status = with_cookie(csrf).send().await.unwrap().status();
            assert_eq!(status.as_u16(), 403, "a POST with csrf {csrf:?}");
        }
        let view =
            anyone.get(format!("{base}/api/vservers/web")).bearer_auth(admin_token()).send().await.unwrap();
        let view: serde_json::Value = view.json().await.unwrap();
        assert_eq!((view["state"].as_str(), view["node"].as_str()), (Some("running"), Some("n2")), "{view}");

        // Drain n2 from the overview: its row says so until its vserver
        // has moved off, then the vserver runs on n1; undrain it again.
        c.goto(&base).await.unwrap();
        c.find(Locator::Css("tr[data-node=n2] button")).await.unwrap().click().await.unwrap();
        let row = until("tr[data-node=n2]", |r| r.contains("drained")).await;
        assert!(row.contains("up, drained") && row.contains("Undrain"), "{row}");
        let view =
            anyone.get(format!("{base}/api/vservers/web")).bearer_auth(admin_token()).send().await.unwrap();
        let view: serde_json::Value = view.json().await.unwrap();
        assert_eq!(view["node"], "n1", "the drain moved it: {view}");
        c.find(Locator::Css("tr[data-node=n2] button")).await.unwrap().click().await.unwrap();
        let row = until("tr[data-node=n2]", |r| !r.contains("drain")).await;
        assert!(row.contains("Drain"), "{row}");

        // The rebalance plan, as the API gives it: an idle cluster needs
        // no move.
        c.goto(&format!("{base}/rebalance")).await.unwrap();
        let plan = anyone
            .get(format!("{base}/api/cluster/rebalance"))
            .bearer_auth(admin_token())
            .send()
            .await
            .unwrap();
        let plan: serde_json::Value = plan.json().await.unwrap();
        assert_eq!(plan["moves"], serde_json::json!([]), "{plan}");
        assert!(text("#no-moves").await.contains("No move"));
        assert!(text("main").await.contains(&format!("Evens out {}", plan["by"].as_str().unwrap())));

        // Sign out: back to sign in, and the old session opens nothing.
        c.find(Locator::Css("header button.link")).await.unwrap().click().await.unwrap();
        c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#token")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/login"));
        let old = anyone
            .get(format!("{base}/"))
            .header("cookie", format!("vnas_session={}", cookie.value()))
            .send()
            .await
            .unwrap();
        assert_eq!(old.status().as_u16(), 303, "the old session is over");
        c.close().await.unwrap();
    });
    n1.stop();
    n2.stop();
}
