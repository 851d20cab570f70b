//! `feeds sync`, `feeds add` and `feeds remove` with the real binary on tables of a local
//! AWS emulator (AWS_ENDPOINT_URL): adds, dry runs, changes that reset a feed, prune, and
//! files that must write nothing.

#![allow(clippy::unwrap_used)]

mod cloud_support;
mod common;

use cloud_support::*;
use feedstix::cursor::FeedState;
use feedstix::ports::StateStore;

#[tokio::test(flavor = "multi_thread")]
async fn sync_adds_shows_a_dry_run_resets_on_a_new_url_and_prunes() {
    let d = Deployment::new().await;
    let first = d.feeds_file("feeds.toml", THREE_FEEDS);
    let f = first.to_str().unwrap();

    let out = d.run_on_tables(&["feeds", "sync", "--config", f, "--no-verify"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for name in ["alpha", "beta", "gamma"] {
        assert!(t.contains(&format!("added      {name}")), "{t}");
    }
    assert!(
        t.contains("3 added, 0 changed, 0 removed, 0 unchanged"),
        "{t}"
    );
    assert_eq!(d.stored_count().await, 3);
    // The CSV mapper is stored inlined, not as a path.
    let gamma = d.stored("gamma").await.unwrap();
    assert!(gamma["mapper"].as_str().unwrap().contains('{'), "{gamma}");

    // Give beta a committed state, so its reset is visible as a new epoch.
    let states = d.states();
    let state = FeedState::default();
    states.commit("beta", 0, &state).await.unwrap();

    let changed = THREE_FEEDS
        .replace("https://beta.example.invalid/feed.xml", "https://beta.example.invalid/v2.xml")
        .replace("interval = \"15m\"", "interval = \"20m\"")
        + "\n[[feeds]]\nname = \"delta\"\nkind = \"rss\"\nurl = \"https://delta.example.invalid/\"\n";
    let second = d.feeds_file("feeds2.toml", &changed);
    let s = second.to_str().unwrap();

    let dry = d.run_on_tables(&["feeds", "sync", "--config", s, "--no-verify", "--dry-run"]);
    let t = text(&dry);
    assert!(dry.status.success(), "{t}");
    assert!(t.contains("unchanged  alpha"), "{t}");
    assert!(
        t.contains("would be changed    beta: url (its state would be reset to a new epoch)"),
        "{t}"
    );
    assert!(
        t.contains("would be changed    gamma: interval_secs"),
        "{t}"
    );
    assert!(t.contains("would be added      delta"), "{t}");
    assert!(t.contains("(dry run: nothing written)"), "{t}");
    assert_eq!(d.stored_count().await, 3);
    assert_eq!(
        d.stored("beta").await.unwrap()["url"],
        "https://beta.example.invalid/feed.xml"
    );
    assert_eq!(states.load("beta").await.unwrap().unwrap().epoch, 0);

    let real = d.run_on_tables(&["feeds", "sync", "--config", s, "--no-verify"]);
    let t = text(&real);
    assert!(real.status.success(), "{t}");
    assert!(
        t.contains("reset      beta: url changed; state reset to epoch 1"),
        "{t}"
    );
    assert!(
        !t.contains("reset      gamma"),
        "an interval change keeps the state: {t}"
    );
    assert!(
        t.contains("1 added, 2 changed, 0 removed, 1 unchanged"),
        "{t}"
    );
    assert_eq!(
        d.stored("beta").await.unwrap()["url"],
        "https://beta.example.invalid/v2.xml"
    );
    assert_eq!(d.stored("gamma").await.unwrap()["interval_secs"], 1200);
    assert_eq!(states.load("beta").await.unwrap().unwrap().epoch, 1);

    // A file without alpha: kept unless --prune.
    let third = d.feeds_file(
        "feeds3.toml",
        &changed.replace("name = \"alpha\"", "name = \"alpha2\""),
    );
    let th = third.to_str().unwrap();
    let keep = d.run_on_tables(&["feeds", "sync", "--config", th, "--no-verify"]);
    assert!(
        text(&keep).contains("kept       alpha (not in"),
        "{}",
        text(&keep)
    );
    assert!(d.stored("alpha").await.is_some());
    let dry = d.run_on_tables(&[
        "feeds",
        "sync",
        "--config",
        th,
        "--no-verify",
        "--prune",
        "--dry-run",
    ]);
    assert!(
        text(&dry).contains("would be removed    alpha"),
        "{}",
        text(&dry)
    );
    assert!(d.stored("alpha").await.is_some());
    let prune = d.run_on_tables(&["feeds", "sync", "--config", th, "--no-verify", "--prune"]);
    let t = text(&prune);
    assert!(prune.status.success(), "{t}");
    assert!(t.contains("removed    alpha"), "{t}");
    assert!(
        t.contains("0 added, 0 changed, 1 removed, 4 unchanged"),
        "{t}"
    );
    assert!(d.stored("alpha").await.is_none());
    assert_eq!(d.stored_count().await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_a_file_url_or_a_failing_feed_writes_nothing() {
    let d = Deployment::new().await;

    // Offline errors: the file does not load.
    let bad = d.feeds_file("bad.toml", &THREE_FEEDS.replace("\"30m\"", "\"banana\""));
    let out = d.run_on_tables(&[
        "feeds",
        "sync",
        "--config",
        bad.to_str().unwrap(),
        "--no-verify",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("interval"), "{}", text(&out));
    assert_eq!(d.stored_count().await, 0);

    // A file: URL cannot work in Lambda, even with --no-verify.
    let local = d.feeds_file(
        "local.toml",
        &format!("{THREE_FEEDS}\n[[feeds]]\nname = \"disk\"\nkind = \"rss\"\nurl = \"file:feeds/a.xml\"\n"),
    );
    let out = d.run_on_tables(&[
        "feeds",
        "sync",
        "--config",
        local.to_str().unwrap(),
        "--no-verify",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("feed disk") && t.contains("file: URL") && t.contains("Lambda"),
        "{t}"
    );
    assert!(
        t.contains(&format!("nothing was written to table {}", d.feeds_table)),
        "{t}"
    );
    assert_eq!(d.stored_count().await, 0);

    // Verification: one feed answers with RSS, the other with a 404; nothing is stored.
    let rss = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/feeds/cert-advisories.rss"),
    )
    .unwrap();
    let server = common::Server::start(move |head| {
        if head.starts_with("GET /good") {
            common::Canned::ok("application/rss+xml", rss.clone())
        } else {
            common::Canned {
                status: 404,
                headers: vec![],
                body: b"no".to_vec(),
            }
        }
    });
    let feeds = format!(
        "[[feeds]]\nname = \"good\"\nkind = \"rss\"\nurl = \"{0}/good\"\nallow_private_network = true\n\n\
         [[feeds]]\nname = \"broken\"\nkind = \"rss\"\nurl = \"{0}/missing\"\nallow_private_network = true\n",
        server.url
    );
    let both = d.feeds_file("verify.toml", &feeds);
    let out = d.run_on_tables(&["feeds", "sync", "--config", both.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("feed broken") && t.contains("404"), "{t}");
    assert!(!t.contains("feed good:"), "{t}");
    assert_eq!(d.stored_count().await, 0);

    // `add` verifies the one feed it stores.
    let out = d.run_on_tables(&[
        "feeds",
        "add",
        "--config",
        both.to_str().unwrap(),
        "--feed",
        "good",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(d.stored_count().await, 1);
    let out = d.run_on_tables(&[
        "feeds",
        "add",
        "--config",
        both.to_str().unwrap(),
        "--feed",
        "broken",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(d.stored_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn add_and_remove_one_feed() {
    let d = Deployment::new().await;
    let file = d.feeds_file("feeds.toml", THREE_FEEDS);
    let f = file.to_str().unwrap();

    let out = d.run_on_tables(&[
        "feeds",
        "add",
        "--config",
        f,
        "--feed",
        "beta",
        "--no-verify",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("added      beta"), "{}", text(&out));
    assert_eq!(d.stored_count().await, 1);

    let out = d.run_on_tables(&[
        "feeds",
        "add",
        "--config",
        f,
        "--feed",
        "omega",
        "--no-verify",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no feed named omega in"),
        "{}",
        text(&out)
    );

    let out = d.run_on_tables(&["feeds", "remove", "--feed", "beta"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("beta: removed from table {}", d.feeds_table)));
    assert_eq!(d.stored_count().await, 0);

    let out = d.run_on_tables(&["feeds", "remove", "--feed", "beta"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(&format!("no feed named beta in table {}", d.feeds_table)),
        "{}",
        text(&out)
    );

    // Sync needs a deployment; the local commands need a file.
    let out = run(&["feeds", "sync", "--config", f]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--stack NAME"), "{}", text(&out));
}
