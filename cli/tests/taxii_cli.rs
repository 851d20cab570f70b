//! `feedstix taxii collections` with the real binary against a loopback TAXII server:
//! discovery, API roots and collections listed, credentials sent, private addresses refused
//! without the flag.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const TAXII: &str = "application/taxii+json;version=2.1";

fn server() -> Server {
    Server::start(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        if !head
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-9")
        {
            return Canned {
                status: 401,
                headers: vec![],
                body: b"{}".to_vec(),
            };
        }
        match path.as_str() {
            "/taxii2/" => Canned::ok(
                TAXII,
                r#"{"title":"Example server","default":"/api1/","api_roots":["/api1/"]}"#,
            ),
            "/api1/" => Canned::ok(
                TAXII,
                r#"{"title":"Root one","versions":["application/taxii+json;version=2.1"],"max_content_length":1000000}"#,
            ),
            "/api1/collections/" => Canned::ok(
                TAXII,
                r#"{"collections":[{"id":"91a7b528-80eb-42ed-a74d-c6fbd5a26116","title":"High value indicators","can_read":true,"can_write":false},{"id":"52892447-4d7e-4f70-b94d-d7f22742ff63","title":"Write only","can_read":false,"can_write":true}]}"#,
            ),
            _ => Canned {
                status: 404,
                headers: vec![],
                body: b"{}".to_vec(),
            },
        }
    })
}

#[test]
fn collections_are_listed_from_the_discovery_url() {
    let server = server();
    let out = feedstix()
        .args([
            "taxii",
            "collections",
            &format!("{}/taxii2/", server.url),
            "--token-env",
            "FS_TAXII_TOKEN",
            "--allow-private-network",
        ])
        .env("FS_TAXII_TOKEN", "tok-9")
        .output()
        .unwrap();
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    let row = report
        .lines()
        .find(|l| l.contains("91a7b528-80eb-42ed-a74d-c6fbd5a26116"))
        .unwrap();
    assert!(
        row.contains("/api1/") && row.contains("true") && row.contains("High value indicators"),
        "{row}"
    );
    let other = report
        .lines()
        .find(|l| l.contains("52892447-4d7e-4f70-b94d-d7f22742ff63"))
        .unwrap();
    assert!(other.contains("false"), "{other}");
    assert!(!report.contains("tok-9"), "the token leaked:\n{report}");
}

#[test]
fn refused_credentials_and_private_addresses_are_clear_errors() {
    let server = server();
    let url = format!("{}/taxii2/", server.url);
    let refused = feedstix()
        .args([
            "taxii",
            "collections",
            &url,
            "--token-env",
            "FS_TAXII_TOKEN",
            "--allow-private-network",
        ])
        .env("FS_TAXII_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("401"), "{}", text(&refused));

    let before = server.count();
    let private = run(&["taxii", "collections", &url]);
    assert_ne!(private.status.code(), Some(0));
    assert!(
        text(&private).contains("--allow-private-network"),
        "{}",
        text(&private)
    );
    assert_eq!(
        server.count(),
        before,
        "a refused address must not be contacted"
    );
}
