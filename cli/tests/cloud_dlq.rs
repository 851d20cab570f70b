//! `dlq list|show|redrive` on dead-letter queues of a local AWS emulator.

#![allow(clippy::unwrap_used)]

mod cloud_support;

use cloud_support::*;
use feedstix::cursor::FeedState;
use feedstix::ports::StateStore;

fn job(feed: &str, page: u64) -> String {
    format!(r#"{{"feed":"{feed}","epoch":0,"page":{page},"first":false}}"#)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_show_and_redrive_fetch_jobs() {
    let d = Deployment::new().await;
    let mut state = FeedState::default();
    state.status.last_error = Some("feed alpha: HTTP 500 from the source".into());
    d.states().commit("alpha", 0, &state).await.unwrap();
    let first = d.send(&d.fetch_dlq, &job("alpha", 3), "alpha", None).await;
    let second = d.send(&d.fetch_dlq, &job("beta", 7), "beta", None).await;

    let pair = [
        "--dlq-url",
        d.fetch_dlq.as_str(),
        "--queue-url",
        d.fetch_queue.as_str(),
        "--state-table",
        d.state_table.as_str(),
    ];
    let args = |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .chain(pair.iter())
            .map(|s| s.to_string())
            .collect()
    };

    let rows = json(&run(&args(&["dlq", "list", "--json"])));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let alpha = rows
        .iter()
        .find(|r| r["message_id"] == first.as_str())
        .unwrap();
    assert_eq!(alpha["feed"], "alpha");
    assert_eq!(alpha["message_group"], "alpha");
    assert_eq!(
        alpha["last_error_of_feed"],
        "feed alpha: HTTP 500 from the source"
    );
    assert!(alpha["receive_count"].as_u64().unwrap() >= 1);
    let table = text(&run(&args(&["dlq", "list"])));
    assert!(
        table.contains(&second) && table.contains("2 message(s) in dlq"),
        "{table}"
    );

    let shown = json(&run(&args(&["dlq", "show", "--message-id", &first])));
    assert_eq!(shown["body"]["page"], 3);
    assert_eq!(shown["feed"], "alpha");
    let out = run(&args(&["dlq", "show", "--message-id", "nosuch"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(&format!("no message nosuch in {}", d.fetch_dlq)),
        "{}",
        text(&out)
    );

    // One message back, then the rest.
    let out = run(&args(&["dlq", "redrive", "--message-id", &first]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 message(s) sent back"),
        "{}",
        text(&out)
    );
    let back = d.drain(&d.fetch_queue).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, job("alpha", 3));
    assert_eq!(back[0].1.as_deref(), Some("alpha"), "FIFO group kept");

    let out = run(&args(&["dlq", "redrive"]));
    assert!(out.status.success(), "{}", text(&out));
    let back = d.drain(&d.fetch_queue).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, job("beta", 7));
    assert_eq!(back[0].1.as_deref(), Some("beta"));
    assert!(d.drain(&d.fetch_dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_lists_every_dead_letter_queue_and_redrives_one_feed() {
    let d = Deployment::new().await;
    let stack = format!("{}-stack", d.prefix);
    let template = serde_json::json!({
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
    d.send(&d.fetch_dlq, &job("alpha", 0), "alpha", None).await;
    d.send(&d.page_dlq, r#"{"feed":"beta"}"#, "beta", Some("beta"))
        .await;
    d.send(&d.page_dlq, r#"{"feed":"alpha"}"#, "alpha", Some("alpha"))
        .await;
    d.send(&d.worker_dlq, r#"{"type":"bundle"}"#, "", Some("beta"))
        .await;

    let rows = json(&run(&["dlq", "list", "--json", "--stack", &stack]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let queues: Vec<&str> = rows.iter().map(|r| r["queue"].as_str().unwrap()).collect();
    assert_eq!(queues.iter().filter(|q| **q == "page").count(), 2);
    assert!(queues.contains(&"fetch") && queues.contains(&"worker"));
    let only_page = json(&run(&[
        "dlq", "list", "--json", "--stack", &stack, "--queue", "page",
    ]));
    assert_eq!(only_page.as_array().unwrap().len(), 2);

    let out = run(&["dlq", "redrive", "--stack", &stack, "--feed", "beta"]);
    assert!(out.status.success(), "{}", text(&out));
    let pages = d.drain(&d.page_queue).await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].2.as_deref(), Some("beta"), "attributes kept");
    let bundles = d.drain(&d.worker_queue).await;
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0].0, r#"{"type":"bundle"}"#);
    // alpha's messages stay where they were, visible again.
    let left = json(&run(&["dlq", "list", "--json", "--stack", &stack]));
    let left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["feed"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec!["alpha", "alpha"]);
}
