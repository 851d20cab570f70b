//! `status` and `feeds list|show|start|stop|reset` against a deployment's tables on a
//! local AWS emulator, named explicitly and through a CloudFormation stack's outputs.

#![allow(clippy::unwrap_used)]

mod cloud_support;

use cloud_support::*;
use feedstix::cursor::FeedState;
use feedstix::ports::StateStore;

async fn synced() -> Deployment {
    let d = Deployment::new().await;
    let file = d.feeds_file("feeds.toml", THREE_FEEDS);
    let out = d.run_on_tables(&[
        "feeds",
        "sync",
        "--config",
        file.to_str().unwrap(),
        "--no-verify",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn status_list_show_stop_start_and_reset_work_on_the_tables() {
    let d = synced().await;
    let states = d.states();
    let mut state = FeedState::default();
    state.status.objects_total = 42;
    state.status.last_error = Some("source answered 503".into());
    state.status.consecutive_failures = 2;
    states.commit("alpha", 0, &state).await.unwrap();
    states.count_dropped("alpha", 3).await.unwrap();
    // Two fetch jobs and one page part waiting, of any feeds.
    d.send(
        &d.fetch_queue,
        r#"{"feed":"alpha","epoch":0,"page":1,"first":false}"#,
        "alpha",
        None,
    )
    .await;
    d.send(
        &d.fetch_queue,
        r#"{"feed":"beta","epoch":0,"page":0,"first":true}"#,
        "beta",
        None,
    )
    .await;
    d.send(&d.page_queue, "{}", "alpha", Some("alpha")).await;

    let out = d.run_on_tables(&["feeds", "stop", "--feed", "beta"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "beta: stopped");

    let rows = json(&d.run_on_tables(&["status", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let row = |name: &str| rows.iter().find(|r| r["feed"] == name).unwrap().clone();
    assert_eq!(row("beta")["state"], "stopped");
    assert_eq!(row("beta")["next_run"], serde_json::Value::Null);
    assert_eq!(row("alpha")["state"], "running");
    assert_eq!(row("alpha")["objects_total"], 42);
    assert_eq!(row("alpha")["consecutive_failures"], 2);
    assert_eq!(row("alpha")["last_error"], "source answered 503");
    assert_eq!(row("alpha")["dropped_stale"], 3);
    assert_eq!(row("gamma")["kind"], "csv");
    // SQS counts per queue: the per-feed figure is unknown, the total is beside it.
    assert_eq!(row("alpha")["pages_queued"], serde_json::Value::Null);
    assert_eq!(row("alpha")["queued_all_feeds"]["fetch_jobs"], 2);
    assert_eq!(row("alpha")["queued_all_feeds"]["page_parts"], 1);

    let table = text(&d.run_on_tables(&["status"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alpha") && l.contains("error: source answered 503")),
        "{table}"
    );
    assert!(table.contains("pages queued (all feeds; SQS does not count per feed; approximate): 2 fetch job(s), 1 page part(s)"), "{table}");

    let list = text(&d.run_on_tables(&["feeds", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("beta") && l.contains("stopped") && l.contains("30m")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("gamma") && l.contains("running")),
        "{list}"
    );

    let show = json(&d.run_on_tables(&["feeds", "show", "--feed", "gamma"]));
    assert_eq!(show["definition"]["name"], "gamma");
    assert_eq!(show["definition"]["mapper"], "(inlined; see mapper_path)");
    assert_eq!(show["status"]["kind"], "csv");

    let out = d.run_on_tables(&["feeds", "start", "--feed", "beta"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = json(&d.run_on_tables(&["status", "--json"]));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "running"),
        "{rows}"
    );

    let out = d.run_on_tables(&["feeds", "reset", "--feed", "alpha"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("alpha: reset to epoch 1"), "{t}");
    assert!(
        t.contains("alpha: 3 message(s) of older epochs dropped so far"),
        "{t}"
    );
    assert!(
        t.contains("still queued: about 3 message(s) (2 fetch job(s), 1 page part(s)"),
        "{t}"
    );
    let after = states.load("alpha").await.unwrap().unwrap();
    assert_eq!(after.epoch, 1);
    assert_eq!(after.status.last_error, None);

    // Unknown feeds are named with the table.
    let out = d.run_on_tables(&["feeds", "stop", "--feed", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(&format!("no feed named nosuch in table {}", d.feeds_table)),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_outputs_name_the_tables_and_queues() {
    let d = Deployment::new().await;
    let stack = format!("{}-stack", d.prefix);
    let template = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Placeholder": {
                "Type": "AWS::SQS::Queue",
                "Properties": { "QueueName": format!("{}-placeholder", d.prefix) }
            }
        },
        "Outputs": {
            "FeedsTableName": { "Value": d.feeds_table },
            "StateTableName": { "Value": d.state_table },
            "FetchQueueUrl": { "Value": d.fetch_queue },
            "FetchDeadLetterQueueUrl": { "Value": d.fetch_dlq },
            "PageQueueUrl": { "Value": d.page_queue },
            "PageDeadLetterQueueUrl": { "Value": d.page_dlq },
            "WorkerQueueUrl": { "Value": d.worker_queue },
            "WorkerDeadLetterQueueUrl": { "Value": d.worker_dlq },
        }
    });
    let sdk = feedstix::aws::load_sdk_config().await;
    aws_sdk_cloudformation::Client::new(&sdk)
        .create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();

    let file = d.feeds_file("feeds.toml", THREE_FEEDS);
    let out = run(&[
        "feeds",
        "sync",
        "--config",
        file.to_str().unwrap(),
        "--no-verify",
        "--stack",
        &stack,
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("stack {stack}: 3 added")), "{t}");
    assert_eq!(d.stored_count().await, 3);

    d.send(&d.page_queue, "{}", "beta", Some("beta")).await;
    let out = run(&["status", "--json", "--stack", &stack]);
    let rows = json(&out);
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["queued_all_feeds"]["page_parts"], 1, "{rows}");

    let out = run(&["feeds", "stop", "--feed", "gamma", "--stack", &stack]);
    assert!(out.status.success(), "{}", text(&out));
    let list = text(&run(&["feeds", "list", "--stack", &stack]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("gamma") && l.contains("stopped")),
        "{list}"
    );

    let out = run(&["status", "--stack", &format!("{}-missing", d.prefix)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(&format!("stack {}-missing", d.prefix)),
        "{}",
        text(&out)
    );
}
