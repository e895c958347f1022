//! AWS SNS Publish against a real local server: the form the Query API documents, and a
//! SigV4 signature rebuilt from the request as received, with nothing but hmac and sha2.

use std::collections::HashMap;

use crate::support::{alert, config, Receiver, Recorded, Reply};
use hmac::{Hmac, Mac};
use secpipe_sinks::notify::{IntegrationConfig, Notification, Notifier, Secret, SnsConfig};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Rebuilds the SigV4 signature from the request as received, with only hmac and sha2.
fn verify_sigv4(r: &Recorded, secret: &str, region: &str) {
    let auth = r.header("authorization");
    let fields: HashMap<&str, &str> = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .expect("a SigV4 Authorization header")
        .split(", ")
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let scope: Vec<&str> = fields["Credential"].split('/').collect();
    assert_eq!(scope[0], "AKIDEXAMPLE");
    assert_eq!(&scope[2..], [region, "sns", "aws4_request"]);
    let amz_date = r.header("x-amz-date");
    assert!(amz_date.starts_with(scope[1]));
    let signed_headers = fields["SignedHeaders"];
    assert!(signed_headers.contains("host") && signed_headers.contains("x-amz-date"));
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|h| format!("{h}:{}\n", r.header(h).trim()))
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        r.path,
        r.query.as_deref().unwrap_or(""),
        canonical_headers,
        signed_headers,
        hex(&Sha256::digest(&r.body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}/{region}/sns/aws4_request\n{}",
        scope[1],
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), scope[1].as_bytes());
    for part in [region, "sns", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    assert_eq!(
        fields["Signature"],
        hex(&hmac_sha256(&key, string_to_sign.as_bytes()))
    );
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn sns_publish_is_form_encoded_and_sigv4_signed_with_an_sms_form_for_phones() {
    let receiver = Receiver::start(Reply::status(200).body(
        "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult></PublishResponse>",
    ))
    .await;
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let topic = "arn:aws:sns:eu-west-1:123456789012:security-alerts";
    let mut notifier = Notifier::new(&config(vec![(
        "sns",
        IntegrationConfig::Sns(SnsConfig {
            endpoints: vec![topic.into(), "+15555550100".into()],
            region: "eu-west-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new(secret),
            session_token: Secret::new("SESSION/TOKEN+=="),
            endpoint_url: receiver.url("/"),
        }),
    )]))
    .unwrap();
    let mut a = alert("alert-1");
    a.title = "An alert whose title is much too long for a text message, ".repeat(4);
    let report = notifier.deliver(&Notification::Alert(a)).await;
    assert_eq!(report.delivered(), 2, "{report:#?}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
        assert_eq!(
            r.header("content-type"),
            "application/x-www-form-urlencoded; charset=utf-8"
        );
        assert_eq!(r.header("host"), receiver.addr.to_string());
        assert_eq!(r.header("x-amz-security-token"), "SESSION/TOKEN+==");
        assert!(r.header("authorization").contains("x-amz-security-token"));
        verify_sigv4(r, secret, "eu-west-1");
        let date = r.header("x-amz-date");
        assert_eq!(date.len(), 16, "{date}");
    }
    let by_target: HashMap<String, HashMap<String, String>> = requests
        .iter()
        .map(|r| {
            let f = form(&r.body);
            let target = f.get("TopicArn").or(f.get("PhoneNumber")).unwrap().clone();
            (target, f)
        })
        .collect();
    let to_topic = &by_target[topic];
    assert_eq!(to_topic["Action"], "Publish");
    assert_eq!(to_topic["Version"], "2010-03-31");
    assert!(to_topic["Subject"].chars().count() < 100);
    assert!(to_topic["Message"].contains("arn:aws:cloudfront::123456789012:distribution/E2"));
    let to_phone = &by_target["+15555550100"];
    assert_eq!(to_phone["Action"], "Publish");
    assert!(!to_phone.contains_key("Subject"));
    let sms = &to_phone["Message"];
    assert!(sms.chars().count() <= 140, "{} chars", sms.chars().count());
    assert!(sms.starts_with("secpipe FAIL high: An alert"), "{sms}");
}
