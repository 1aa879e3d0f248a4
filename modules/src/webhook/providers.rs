//! The provider table: one entry per provider whose signing scheme is
//! published. Adding a provider is adding a row, not a function.

use super::{Alg, Enc, KeyForm, Part, Provider, SigSource, TsSource, TsUnit};

use super::Part::{Body, Lit, Method, Ts, Url};

const fn hmac_body(
    id: &'static str,
    alg: Alg,
    header: &'static str,
    prefix: &'static str,
    enc: Enc,
) -> Provider {
    Provider {
        id,
        alg,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: header,
            prefix,
            list: None,
        },
        message: &[Body],
        enc,
        ts: None,
        window: 0,
    }
}

/// `t=<ts>,v1=<sig>` headers over `<ts>.<body>` (stripe and its imitators).
const fn ts_fields(
    id: &'static str,
    header: &'static str,
    ts_key: &'static str,
    sig_key: &'static str,
    window: u64,
) -> Provider {
    Provider {
        id,
        alg: Alg::HmacSha256,
        key: KeyForm::Raw,
        sig: SigSource::Fields {
            name: header,
            ts_key,
            sig_key,
        },
        message: &[Ts, Lit("."), Body],
        enc: Enc::Hex,
        ts: Some(TsSource::Fields(TsUnit::Seconds)),
        window,
    }
}

/// `v0=<hex>` over `v0:<ts>:<body>` with the timestamp in its own header.
const fn v0_ts_body(
    id: &'static str,
    header: &'static str,
    ts_header: &'static str,
    window: u64,
) -> Provider {
    Provider {
        id,
        alg: Alg::HmacSha256,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: header,
            prefix: "v0=",
            list: None,
        },
        message: &[Lit("v0:"), Ts, Lit(":"), Body],
        enc: Enc::Hex,
        ts: Some(TsSource::Header(ts_header, TsUnit::Seconds)),
        window,
    }
}

const fn svix(id: &'static str) -> Provider {
    Provider {
        id,
        alg: Alg::HmacSha256,
        key: KeyForm::SvixSecret,
        sig: SigSource::Svix,
        message: &[Part::Header("svix-id"), Lit("."), Ts, Lit("."), Body],
        enc: Enc::Base64,
        ts: Some(TsSource::Header("svix-timestamp", TsUnit::Seconds)),
        window: 300,
    }
}

use super::Alg::{HmacSha1 as SHA1, HmacSha256 as SHA256, HmacSha512 as SHA512};
use super::Enc::{Base64 as B64, Hex};

pub static PROVIDERS: &[Provider] = &[
    // ngrok's documented core set.
    hmac_body("github", SHA256, "x-hub-signature-256", "sha256=", Hex),
    ts_fields("stripe", "stripe-signature", "t", "v1", 300),
    v0_ts_body(
        "slack",
        "x-slack-signature",
        "x-slack-request-timestamp",
        300,
    ),
    Provider {
        id: "twilio",
        alg: SHA1,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: "x-twilio-signature",
            prefix: "",
            list: None,
        },
        message: &[Url, Part::TwilioParams],
        enc: B64,
        ts: None,
        window: 0,
    },
    hmac_body("shopify", SHA256, "x-shopify-hmac-sha256", "", B64),
    Provider {
        id: "sendgrid",
        alg: Alg::EcdsaP256,
        key: KeyForm::EcdsaSpkiBase64,
        sig: SigSource::Header {
            name: "x-twilio-email-event-webhook-signature",
            prefix: "",
            list: None,
        },
        message: &[Ts, Body],
        enc: B64,
        ts: Some(TsSource::Header(
            "x-twilio-email-event-webhook-timestamp",
            TsUnit::Seconds,
        )),
        window: 180,
    },
    Provider {
        id: "mailgun",
        alg: SHA256,
        key: KeyForm::Raw,
        sig: SigSource::MailgunBody,
        message: &[Ts, Part::MailgunToken],
        enc: Hex,
        ts: Some(TsSource::MailgunBody),
        window: 180,
    },
    v0_ts_body("zoom", "x-zm-signature", "x-zm-request-timestamp", 300),
    hmac_body("intercom", SHA1, "x-hub-signature", "sha1=", Hex),
    Provider {
        id: "gitlab",
        alg: Alg::Equal,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: "x-gitlab-token",
            prefix: "",
            list: None,
        },
        message: &[],
        enc: Enc::Raw,
        ts: None,
        window: 0,
    },
    hmac_body("bitbucket", SHA256, "x-hub-signature", "sha256=", Hex),
    Provider {
        id: "square",
        alg: SHA256,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: "x-square-hmacsha256-signature",
            prefix: "",
            list: None,
        },
        message: &[Url, Body],
        enc: B64,
        ts: None,
        window: 0,
    },
    Provider {
        id: "hubspot",
        alg: SHA256,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: "x-hubspot-signature-v3",
            prefix: "",
            list: None,
        },
        message: &[Method, Url, Body, Ts],
        enc: B64,
        ts: Some(TsSource::Header(
            "x-hubspot-request-timestamp",
            TsUnit::Millis,
        )),
        window: 300,
    },
    Provider {
        id: "pagerduty",
        alg: SHA256,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: "x-pagerduty-signature",
            prefix: "v1=",
            list: Some(','),
        },
        message: &[Body],
        enc: Hex,
        ts: None,
        window: 0,
    },
    hmac_body(
        "twitter",
        SHA256,
        "x-twitter-webhooks-signature",
        "sha256=",
        B64,
    ),
    hmac_body("typeform", SHA256, "typeform-signature", "sha256=", B64),
    svix("svix"),
    svix("clerk"),
    svix("brex"),
    hmac_body("xero", SHA256, "x-xero-signature", "", B64),
    hmac_body("worldline", SHA256, "x-gcs-signature", "", B64),
    Provider {
        id: "discord",
        alg: Alg::Ed25519,
        key: KeyForm::Ed25519Hex,
        sig: SigSource::Header {
            name: "x-signature-ed25519",
            prefix: "",
            list: None,
        },
        message: &[Ts, Body],
        enc: Hex,
        ts: Some(TsSource::Header("x-signature-timestamp", TsUnit::Seconds)),
        window: 180,
    },
    // The rest of ngrok's list whose schemes are published.
    hmac_body("aftership", SHA256, "aftership-hmac-sha256", "", B64),
    hmac_body("alchemy", SHA256, "x-alchemy-signature", "", Hex),
    ts_fields(
        "buildkite",
        "x-buildkite-signature",
        "timestamp",
        "signature",
        180,
    ),
    ts_fields("calendly", "calendly-webhook-signature", "t", "v1", 180),
    hmac_body("castle", SHA256, "x-castle-signature", "", B64),
    hmac_body(
        "chargify",
        SHA256,
        "x-chargify-webhook-signature-hmac-sha-256",
        "",
        Hex,
    ),
    Provider {
        id: "circleci",
        alg: SHA256,
        key: KeyForm::Raw,
        sig: SigSource::Header {
            name: "circleci-signature",
            prefix: "v1=",
            list: Some(','),
        },
        message: &[Body],
        enc: Hex,
        ts: None,
        window: 0,
    },
    hmac_body("clearbit", SHA1, "x-request-signature", "sha1=", Hex),
    hmac_body("coinbase", SHA256, "x-cc-webhook-signature", "", Hex),
    hmac_body("docusign", SHA256, "x-docusign-signature-1", "", B64),
    hmac_body("dropbox", SHA256, "x-dropbox-signature", "", Hex),
    hmac_body(
        "facebook_graph_api",
        SHA256,
        "x-hub-signature-256",
        "sha256=",
        Hex,
    ),
    hmac_body(
        "facebook_messenger",
        SHA256,
        "x-hub-signature-256",
        "sha256=",
        Hex,
    ),
    hmac_body("instagram", SHA256, "x-hub-signature-256", "sha256=", Hex),
    hmac_body("whatsapp", SHA256, "x-hub-signature-256", "sha256=", Hex),
    v0_ts_body(
        "frameio",
        "x-frameio-signature",
        "x-frameio-request-timestamp",
        300,
    ),
    hmac_body("heroku", SHA256, "heroku-webhook-hmac-sha256", "", B64),
    hmac_body("jira", SHA256, "x-hub-signature", "sha256=", Hex),
    hmac_body("launch_darkly", SHA256, "x-ld-signature", "", Hex),
    hmac_body("linear", SHA256, "linear-signature", "", Hex),
    Provider {
        id: "microsoft_teams",
        alg: SHA256,
        key: KeyForm::Base64,
        sig: SigSource::Header {
            name: "authorization",
            prefix: "HMAC ",
            list: None,
        },
        message: &[Body],
        enc: B64,
        ts: None,
        window: 0,
    },
    hmac_body("modern_treasury", SHA256, "x-signature", "", Hex),
    hmac_body("mongodb", SHA1, "x-mms-signature", "", B64),
    ts_fields("mux", "mux-signature", "t", "v1", 180),
    hmac_body("sentry", SHA256, "sentry-hook-signature", "", Hex),
    hmac_body("sonatype", SHA1, "x-nexus-webhook-signature", "", Hex),
    hmac_body("terraform", SHA512, "x-tfe-notification-signature", "", Hex),
    ts_fields("tiktok", "tiktok-signature", "t", "s", 180),
    hmac_body("webex", SHA1, "x-spark-signature", "", Hex),
    // RSA over a canonical string, with AWS's published certificate (sns.rs).
    Provider {
        id: "sns",
        alg: Alg::SnsRsa,
        key: KeyForm::None,
        sig: SigSource::Header {
            name: super::sns::TYPE_HEADER,
            prefix: "",
            list: None,
        },
        message: &[Body],
        enc: B64,
        ts: None,
        window: 0,
    },
];
